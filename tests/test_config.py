"""The config schema: every profile validates; a bad key is named with the file that set it."""

import json
import re
from pathlib import Path

import pytest
import yaml

from llmblend.config import load_config
from llmblend.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PROFILES = [["params.yaml"]] + [["params.yaml", str(p.relative_to(ROOT))] for p in sorted((ROOT / "config").glob("*.yaml"))]


@pytest.mark.parametrize("files", PROFILES, ids=lambda f: f[-1])
def test_every_profile_validates_and_has_its_own_run(files, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(files)
    assert cfg["run"] == ("demo" if len(files) == 1 else Path(files[-1]).stem)


def test_profiles_have_distinct_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    runs = [load_config(f)["run"] for f in PROFILES]
    assert len(runs) == len(set(runs))


def overlay(tmp_path, doc):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(doc))
    return [str(ROOT / "params.yaml"), str(p)]


def test_unknown_key_is_named_with_its_file(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key data\.filterz \(set in .*bad\.yaml\)"):
        load_config(overlay(tmp_path, {"data": {"filterz": {}}}))


def test_wrong_type_is_named_with_its_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config key 'seed' \(set in .*bad\.yaml\): 'x' is not of type 'integer'"):
        load_config(overlay(tmp_path, {"seed": "x"}))


def test_nested_bad_value(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.split\.mode"):
        load_config(overlay(tmp_path, {"data": {"split": {"mode": "random"}}}))


def test_invalid_yaml_names_line(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("run: x\ndata: [\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: not valid YAML"):
        load_config([str(ROOT / "params.yaml"), str(p)])


def test_metric_splits_must_cover_what_reads_scores(tmp_path):
    """A ranker trained on a metric needs train/val scored; the tables need test. The error names the key."""
    bad = tmp_path / "p.yaml"
    bad.write_text("metrics: {splits: [test]}\n")  # the default ranker learns from clm_logprob
    with pytest.raises(ConfigError, match=r"metrics\.splits.*p\.yaml.*train \(needed by ranker\.signal\.type: metrics\)"):
        load_config([ROOT / "params.yaml", bad])
    bad.write_text("metrics: {splits: [train, val]}\n")
    with pytest.raises(ConfigError, match=r"test \(needed by the evaluation tables\)"):
        load_config([ROOT / "params.yaml", bad])
    ok = tmp_path / "ok.yaml"
    ok.write_text("metrics: {splits: [test]}\nranker: {signal: {type: judge}}\njudge: {splits: [train, val, test]}\n")
    assert load_config([ROOT / "params.yaml", ok])["metrics"]["splits"] == ["test"]


# --- issue 20: errors that name the file, and no input that can hurt ------------------------------


def _bomb(levels: int, key: str = "lol") -> str:
    """A "billion laughs" YAML: each level repeats the one before 9 times through aliases."""
    lines = [f'{key}0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"{key}{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_once_naming_the_file(tmp_path):
    import time

    bomb = tmp_path / "laughs.yaml"
    bomb.write_text("run: x\n" + _bomb(9))  # 9^10 strings once expanded
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"laughs\.yaml: refused: its aliases expand to more than") as e:
        load_config([ROOT / "params.yaml", bomb])
    assert time.monotonic() - t0 < 5 and len(str(e.value)) < 300


def test_a_deeply_nested_file_is_refused_naming_it(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("run: x\nseed: " + "[" * 20000 + "]" * 20000 + "\n")
    with pytest.raises(ConfigError, match=r"deep\.yaml: refused: nested too deeply"):
        load_config([ROOT / "params.yaml", deep])


def test_error_messages_are_cut_to_a_readable_length(tmp_path):
    # under the expansion limit, but the bad value is 66k strings: jsonschema quotes it whole
    p = tmp_path / "big.yaml"
    p.write_text("data:\n" + "".join(f"  {line}\n" for line in _bomb(4, "x").splitlines()) + "seed: *a4\n")
    with pytest.raises(ConfigError, match=r"config key 'seed' \(set in .*big\.yaml\).*more characters") as e:
        load_config([ROOT / "params.yaml", p])
    assert len(str(e.value)) < 1500


@pytest.mark.parametrize("doc, where", [
    ({"data": {"filtres": {"dedupe": True}}}, r"unknown config key data\.filtres \(set in .*bad\.yaml\)"),
    ({"data": {"sources": [{"type": "demo", "name": "demo", "n_items": "290"}]}},
     r"config key 'data\.sources\.0\.n_items' \(set in .*bad\.yaml\): '290' is not of type 'integer'"),
])
def test_a_misspelled_section_or_a_bad_list_item_names_its_file(tmp_path, doc, where):
    with pytest.raises(ConfigError, match=where):
        load_config(overlay(tmp_path, doc))


def test_an_empty_overlay_is_refused_naming_the_file(tmp_path):
    from llmblend.cli import main

    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"empty\.yaml: the config file is empty"):
        load_config([ROOT / "params.yaml", empty])
    assert main(["plan-cost", "--config", str(ROOT / "params.yaml"), "--config", str(empty)]) == 2


def test_an_overlay_alone_says_params_yaml_comes_first(monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(ConfigError, match=r"config/ci\.yaml is read first.*--config params\.yaml --config config/ci\.yaml"):
        load_config(["config/ci.yaml"])


@pytest.mark.parametrize("doc, key", [
    ({"models": {"x": {"spec": "hf:org/m; touch x #"}}}, "models.x.spec"),
    ({"models": {"x": {"spec": "dir:-rf"}}}, "models.x.spec"),
    ({"ranker": {"backbone": "minilm $(id)"}}, "ranker.backbone"),
    ({"fuser": {"model": "--help"}}, "fuser.model"),
    ({"models": {"a b": {"spec": "hf:org/m"}}}, "models.a b"),
])
def test_model_names_and_specs_have_a_safe_alphabet(tmp_path, doc, key):
    with pytest.raises(ConfigError, match=rf"config key '{re.escape(key)}' \(set in .*bad\.yaml\)"):
        load_config(overlay(tmp_path, doc))


@pytest.mark.parametrize("overlay_text, expected", [
    ("run: t\ndata:\n  filtres: {dedupe: true}\n", r"unknown config key data\.filtres \(set in [^)]*t\.yaml\)"),
    ("run: t\nmodels:\n  mine: {spec: 'hf:org/mymodel'}\ngenerate:\n  generators:\n"
     "    - {name: mine, backend: hf, model: mine, prompt: chat, decoding: {method: greedy, max_new_tokens: 8}}\n",
     r"resources\.model_params_b\.mine' is missing.*`resources: \{model_params_b: \{mine: 0\.5\}\}`"),
])
def test_snakemake_dry_run_names_the_file_and_what_to_add(tmp_path, overlay_text, expected):
    import subprocess

    from workflow_utils import env

    p = tmp_path / "t.yaml"
    p.write_text(overlay_text)
    r = subprocess.run(["snakemake", "-n", "--cores", "1", "--configfile", str(p)], cwd=ROOT, env=env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and re.search(expected, r.stdout + r.stderr), (r.stdout + r.stderr)[-2000:]


def test_a_stage_reads_only_the_keys_its_rule_declares():
    """llmblend.config.restrict (the CLI's --keys, which every rule passes with its declared keys):
    a declared key reads as before, a declared but absent key gives its default, and any other key
    raises naming it, however it is read ([], get, in, setdefault); copies and dumps keep the slice."""
    import copy
    import json

    from llmblend.config import UndeclaredKeyError, restrict

    full = {"run": "r", "seed": 3, "ranker": {"train": {"lr": 0.1}, "infer": {"autocast": None}, "checkpoint_seconds": 60},
            "models": {"a": {"spec": "x"}, "b": {"spec": "y"}}, "fuser": {"dtype": "float32"}}
    cfg = restrict(full, ["seed", "ranker.train", "ranker.select", "models.a"])
    assert cfg["seed"] == 3 and cfg["ranker"]["train"]["lr"] == 0.1 and cfg["models"]["a"] == {"spec": "x"}
    assert cfg["run"] == "r" and cfg["ranker"]["checkpoint_seconds"] == 60  # ambient: paths, resume cadence
    assert cfg["ranker"].get("select", "default") == "default"  # declared, left out of the profile
    for read, key in [(lambda: cfg["fuser"], "'fuser'"), (lambda: cfg.get("mirror"), "'mirror'"),
                      (lambda: "fuser" in cfg, "'fuser'"), (lambda: cfg["ranker"]["infer"], "'ranker.infer'"),
                      (lambda: cfg["ranker"].get("loss", "x"), "'ranker.loss'"),
                      (lambda: cfg["models"]["b"], "'models.b'"), (lambda: cfg.setdefault("data", {}), "'data'"),
                      (lambda: copy.deepcopy(cfg)["ranker"]["infer"], "'ranker.infer'")]:
        with pytest.raises(UndeclaredKeyError, match=re.escape(key)):
            read()
    assert json.loads(json.dumps(cfg)) == {"seed": 3, "ranker": {"train": {"lr": 0.1}, "checkpoint_seconds": 60},
                                           "models": {"a": {"spec": "x"}}, "run": "r"}
    assert yaml.safe_load(yaml.safe_dump(cfg)) == json.loads(json.dumps(cfg))
    assert isinstance(cfg, dict) and dict(restrict(full, ["fuser"]))["fuser"] == {"dtype": "float32"}


def test_the_cli_refuses_an_undeclared_read_naming_the_key(tmp_path, monkeypatch, capsys):
    """`--keys` reaches the stage: `random` reads the seed, so with no declared key it fails (exit 2,
    naming 'seed', no output); with the seed declared it runs; without --keys the whole config is read."""
    from llmblend.cli import main

    monkeypatch.chdir(ROOT)
    split = tmp_path / "test.jsonl"
    split.write_text(json.dumps({"id": "e0", "instruction": "q", "input": "",
                                 "candidates": [{"model": "m0", "text": "a"}, {"model": "m1", "text": "b c"}]}) + "\n")

    def rank(out, *keys):
        return main(["rank-candidates", "--config", "params.yaml", *keys, "--methods", "random", "--input", str(split),
                     "--split", "test", "--out-dir", str(tmp_path / out)])

    assert rank("a", "--keys", "") == 2 and not (tmp_path / "a").exists()
    assert "config key 'seed' is read by this stage" in capsys.readouterr().err
    assert rank("b", "--keys", "seed") == 0 and (tmp_path / "b" / "random" / "test.jsonl").exists()
    assert rank("c") == 0
    assert (tmp_path / "b" / "random" / "test.jsonl").read_bytes() == (tmp_path / "c" / "random" / "test.jsonl").read_bytes()


def test_the_rules_threads_reach_torch_through_the_command_line(tmp_path, monkeypatch):
    """A job's threads are no config key: the rule passes `--threads {threads}` and the command runs
    torch on that many (llmblend.cli.main), whatever the profile says."""
    import torch

    from llmblend.cli import main

    monkeypatch.chdir(ROOT)
    split = tmp_path / "test.jsonl"
    split.write_text(json.dumps({"id": "e0", "instruction": "q", "input": "",
                                 "candidates": [{"model": "m0", "text": "a"}, {"model": "m1", "text": "b c"}]}) + "\n")
    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            assert main(["rank-candidates", "--config", "params.yaml", "--keys", "seed", "--methods", "random",
                         "--input", str(split), "--split", "test", "--out-dir", str(tmp_path / f"t{n}"),
                         "--threads", str(n)]) == 0
            assert torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)
