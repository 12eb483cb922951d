"""The README is right: every command in it is run (dry where it would compute or change state), the
stage table names real rules and subcommands, the YAML recipe validates and the library example runs
(against tiny stand-ins for the demo's trained ranker and fuser)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest

from test_ranker import tiny_backbone  # noqa: F401  (fixture)
from workflow_utils import ROOT, copy_repo, env

README = (ROOT / "README.md").read_text(encoding="utf-8")
PLACEHOLDER = re.compile(r"<[a-z_-]+>")


def readme_commands() -> list[str]:
    """Each command line of the ```bash blocks, comments cut, `a && b` split into two."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
            out += [c.strip() for c in line.split("&&") if c.strip()]
    return out


def check_of(command: str) -> tuple[str, dict, list[str]]:
    """(how, env additions, argv) to check one README command without computing anything."""
    words = shlex.split(PLACEHOLDER.sub("placeholder", command))
    extra = {}
    while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value prefixes
        k, v = words.pop(0).split("=", 1)
        extra[k] = str((ROOT / v).resolve()) if v.startswith("..") else v
    tool = words[0]
    if tool == "./setup.sh":
        return "exists", extra, words
    if tool in (".", "source"):
        return "exists", extra, words[1:]
    if tool == "pytest":
        return "skip", extra, words  # this very suite
    if tool == "snakemake":
        return "run", extra, words if "-n" in words else [words[0], "-n", *words[1:]]
    if tool == "llmblend":
        # plan-cost only reads the config; any other stage would compute: its options must parse
        return "run", extra, words if words[1] == "plan-cost" else words[:2] + ["--help"]
    if tool == "dvc":
        if words[1] in ("repro", "status"):  # repro --dry needs the inputs; status checks the same pipeline
            return "dvc", extra, ["dvc", "status", *[w for w in words[2:] if not w.startswith("-")]]
        return "run", extra, words[:2] + ["--help"]  # remote add, commit, push, pull change state
    raise AssertionError(f"README command {command!r}: the docs test does not know how to check it")


COMMANDS = sorted(set(readme_commands()))


def test_the_readme_has_the_commands_a_newcomer_needs():
    assert "./setup.sh" in COMMANDS and "snakemake --cores 2" in COMMANDS
    assert not any("build-report" in c for c in COMMANDS + [README]), "the subcommand is `report`"
    # a target after --configfile is read as one more config file
    for c in COMMANDS:
        words = shlex.split(PLACEHOLDER.sub("x", c))
        if "snakemake" in words and "--configfile" in words:
            after = words[words.index("--configfile") + 2:]
            assert not after or after[0].startswith("-"), f"{c}: a target after --configfile"


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    return copy_repo(tmp_path_factory.mktemp("repo"))


@pytest.mark.slow  # dry runs of whole profiles (5 min for all on a loaded 2-core machine)
@pytest.mark.parametrize("command", COMMANDS)
def test_each_readme_command_runs(command, request):
    how, extra, argv = check_of(command)
    if how == "skip":
        return
    if how == "exists":
        path = ROOT / argv[0]
        default_venv = re.search(r"^VENV=\$\{VENV:-([^}]+)\}", (ROOT / "setup.sh").read_text(), re.M)
        if argv[0].endswith("/bin/activate") and not path.exists():
            # CI installs into a fresh venv elsewhere (VENV=...): the README's path must be setup.sh's default
            assert default_venv and argv[0] == f"{default_venv.group(1)}/bin/activate", command
            return
        assert path.exists() and os.access(path, os.R_OK), command
        return
    cwd = request.getfixturevalue("repo_copy") if how == "dvc" else ROOT
    r = subprocess.run(argv, cwd=cwd, env={**env(), **extra}, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(argv)} (from the README's {command!r}):\n{(r.stdout + r.stderr)[-3000:]}"


def test_the_stage_table_names_real_rules_and_subcommands():
    from llmblend.cli import build_parser

    table = README.split("## The stages", 1)[1].split("\n\n", 2)[1]
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:]]
    named_rules = {r for row in rows for r in re.findall(r"`(\w+)`", row[0])}
    named_cmds = {c for row in rows for c in re.findall(r"`(?:llmblend )?([a-z][a-z0-9-]*)`", row[1])}
    text = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    rules = set(re.findall(r"^\s*rule (\w+):", text, re.M))
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert named_rules <= rules, f"not rules: {named_rules - rules}"
    assert rules - {"all"} <= named_rules, f"rules missing from the README's stage table: {rules - named_rules}"
    assert named_cmds <= set(sub.choices), f"not subcommands: {named_cmds - set(sub.choices)}"


def test_the_yaml_recipe_validates(tmp_path):
    from llmblend.config import load_config

    (recipe,) = re.findall(r"```yaml\n(.*?)```", README, re.S)
    p = tmp_path / "mine.yaml"
    p.write_text(recipe)
    cfg = load_config([ROOT / "params.yaml", p])
    assert cfg["judge"]["backend"] == "openai" and cfg["judge"]["max_usd"] > 0
    assert {g["backend"] for g in cfg["generate"]["generators"]} == {"hf", "openai"}
    e = {k: v for k, v in env().items() if k != "OPENAI_API_KEY"}
    r = subprocess.run(["snakemake", "-n", "--cores", "2", "--configfile", str(p)], cwd=ROOT, env=e,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "$OPENAI_API_KEY, which is not set" in r.stderr


def test_the_library_example_runs(tmp_path, monkeypatch, saved_pairranker):
    """The README's Python block, run as written, with the demo's two trained folders stood in for by
    a tiny PairRanker and a tiny causal LM (the run's folders need the 9-minute demo)."""
    from test_fuser import make_model_dir

    (code,) = re.findall(r"```python\n(.*?)```", README, re.S)
    (tmp_path / "data" / "demo" / "rankers" / "pairranker").mkdir(parents=True)
    (tmp_path / "data" / "demo" / "fuser").mkdir(parents=True)
    os.symlink(saved_pairranker, tmp_path / "data" / "demo" / "rankers" / "pairranker" / "model")
    os.symlink(make_model_dir(tmp_path, "causal_lm"), tmp_path / "data" / "demo" / "fuser" / "model")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    inputs, candidates = scope["inputs"], scope["candidates"]
    assert [len(r) for r in scope["ranks"]] == [len(c) for c in candidates] and all(1 in r for r in scope["ranks"])
    assert [b in c for b, c in zip(scope["best"], candidates)] == [True] * len(inputs)
    assert len(scope["a_better"]) == len(inputs) and len(scope["fused"]) == len(inputs)
    assert (tmp_path / "my_ranker" / "model.safetensors").is_file()


@pytest.fixture
def saved_pairranker(tiny_backbone, tmp_path_factory):  # noqa: F811
    import torch

    from llmblend.ranker.model import build_ranker

    torch.manual_seed(3)
    model, tok = build_ranker("pairranker", tiny_backbone, "test")
    d = tmp_path_factory.mktemp("pr")
    model.save_pretrained(d, tok)
    return d
