"""The one DAG: lint, dry-runs of every profile, dvc.yaml in sync, and Snakemake == DVC on the ci profile."""

import re

import pytest
import yaml

from workflow_utils import ROOT, copy_repo, run, tree_hashes

PROFILES = [None] + sorted(p.name for p in (ROOT / "config").glob("*.yaml"))


def test_dvc_yaml_is_in_sync_with_the_snakefile():
    # `llmblend export-dvc --check` regenerates every pipeline in memory and compares it to the committed files
    run(["llmblend", "export-dvc", "--check"], cwd=ROOT, timeout=600)


def test_snakemake_lint_is_clean():
    r = run(["snakemake", "--lint"], cwd=ROOT, timeout=300)
    assert "Congratulations, your workflow is in a good condition!" in r.stdout + r.stderr


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p or "default")
def test_dry_run_of_every_profile(profile):
    cmd = ["snakemake", "-n", "--cores", "2"] + (["--configfile", f"config/{profile}"] if profile else [])
    r = run(cmd, cwd=ROOT, timeout=300)
    assert "Building DAG of jobs" in r.stdout + r.stderr


def test_the_longest_chain_has_priority():
    """The jobs from the PairRanker's training to the fused answers' scoring start first when several are
    ready (workflow/rules/common.smk, ON_CHAIN); the other rankers' trainings and the aggregator's scoring
    do not, or they would take the cores the chain waits for."""
    r = run(["snakemake", "-n", "--forceall", "--cores", "2"], cwd=ROOT, timeout=300)
    jobs = re.split(r"^\s*(?:local)?rule (\w+):", r.stdout + r.stderr, flags=re.M)[1:]
    priority = {}
    for name, body in zip(jobs[::2], jobs[1::2]):
        wildcards = re.search(r"^\s*wildcards: (.*)$", body, re.M)
        key = name + (f"[{wildcards[1]}]" if wildcards else "")
        priority[key] = int(m[1]) if (m := re.search(r"^\s*priority: (\d+)$", body, re.M)) else 0
    assert {k for k, p in priority.items() if p} == {
        "train_ranker[ranker=pairranker]", "rank_with_pairranker[split=train]", "rank_with_pairranker[split=val]",
        "build_fuser_data", "train_fuser", "fuse_candidates", "verify_fused",
        "score_fused[kind=fused]", "score_fused[kind=verified]"}
    assert priority["train_ranker[ranker=simcls]"] == 0 and priority["score_fused[kind=aggregated]"] == 0


def test_every_rule_declares_config_keys_and_logs():
    """Each rule that runs a command declares the config keys it reads (`**rule_config(...)`: the `cfg`
    param and the command's --keys, so the command can read no other key) and logs."""
    text = "\n".join(p.read_text() for p in sorted((ROOT / "workflow" / "rules").glob("*.smk")))
    rules = re.split(r"^\s*rule (\w+):", text, flags=re.M)[1:]
    for name, body in zip(rules[::2], rules[1::2]):
        if "shell:" not in body:
            continue
        assert "**rule_config(" in body, f"rule {name} declares no config keys (params: **rule_config(...))"
        assert "{params.cfgargs}" in body, f"rule {name} does not pass its declared keys to its command"
        assert "log:" in body, f"rule {name} has no log:"
        assert "llmblend " in body, f"rule {name} does not call the llmblend CLI"


def test_a_rule_running_a_model_passes_its_threads_to_the_command():
    """A job's cores are one setting, `resources.stages.<stage>.threads`: the rule asks Snakemake for
    them (job_threads) and passes what it gets (`--threads {threads}`) to every command that runs a
    model (the commands with llmblend.cli.add_threads' option), so no config section holds a second copy."""
    from llmblend.cli import build_parser

    parser = build_parser()
    stages = parser._subparsers._group_actions[0].choices
    threaded = {n for n, p in stages.items() if any("--threads" in a.option_strings for a in p._actions)}
    assert {"generate-candidates", "score-candidates", "train-ranker", "rank-candidates", "train-fuser",
            "fuse-candidates", "verify-fused", "aggregate-candidates"} <= threaded
    text = "\n".join(p.read_text() for p in sorted((ROOT / "workflow" / "rules").glob("*.smk")))
    rules = re.split(r"^\s*rule (\w+):", text, flags=re.M)[1:]
    seen = set()
    for name, body in zip(rules[::2], rules[1::2]):
        stage = re.search(r'"llmblend ([\w-]+)', body)
        if not stage or stage.group(1) not in threaded:
            continue
        seen.add(stage.group(1))
        assert "--threads {threads}" in body, f"rule {name} runs {stage.group(1)} without passing its threads"
        assert "threads: job_threads(config," in body, f"rule {name} does not ask for resources.stages' threads"
    assert seen == threaded, threaded - seen


def test_profiles_write_under_their_own_roots():
    outs = {}
    for p in [ROOT / "dvc.yaml"] + sorted((ROOT / "dvc").glob("*/dvc.yaml")):
        stages = yaml.safe_load(p.read_text())["stages"]
        run_outs = {o for st in stages.values() for key in ("outs", "metrics", "plots") for o in st.get(key, [])
                    for o in ([o] if isinstance(o, str) else list(o))}
        roots = {"/".join(o.split("/")[:2]) for o in run_outs}
        run_name = "demo" if p == ROOT / "dvc.yaml" else p.parent.name
        assert roots <= {f"data/{run_name}", f"results/{run_name}"}, roots
        outs[p] = run_outs
    paths = list(outs)
    for i, a in enumerate(paths):
        for b in paths[i + 1:]:
            assert not (outs[a] & outs[b]), f"{a} and {b} share outputs"


@pytest.fixture(scope="module")
def ci_runs(tmp_path_factory):
    """The ci profile's data stage run once by Snakemake and once by DVC, in two fresh copies."""
    sm = copy_repo(tmp_path_factory.mktemp("snakemake"))
    run(["snakemake", "prepare_data", "--cores", "2", "--configfile", "config/ci.yaml"], cwd=sm)
    dv = copy_repo(tmp_path_factory.mktemp("dvc"))
    run(["dvc", "repro", "dvc/ci/dvc.yaml:prepare_data"], cwd=dv)
    return sm, dv


@pytest.mark.slow
def test_snakemake_and_dvc_give_byte_identical_data(ci_runs):
    sm, dv = ci_runs
    a, b = tree_hashes(sm / "data" / "ci" / "splits"), tree_hashes(dv / "data" / "ci" / "splits")
    assert a and a == b


@pytest.mark.slow
def test_dvc_status_is_clean_after_either_tool(ci_runs):
    sm, dv = ci_runs
    assert "up to date" in run(["dvc", "status", "dvc/ci/dvc.yaml:prepare_data"], cwd=dv).stdout
    # the Snakemake copy: give it DVC's lock file, then `dvc commit` its outputs into DVC's cache. The
    # outputs are byte-identical, so the lock file must not change, and DVC then sees nothing to do.
    lock = (dv / "dvc" / "ci" / "dvc.lock").read_text()
    (sm / "dvc" / "ci" / "dvc.lock").write_text(lock)
    run(["dvc", "commit", "-f", "dvc/ci/dvc.yaml:prepare_data"], cwd=sm)
    assert (sm / "dvc" / "ci" / "dvc.lock").read_text() == lock
    assert "up to date" in run(["dvc", "status", "dvc/ci/dvc.yaml:prepare_data"], cwd=sm).stdout


def _param_keys(stage: dict) -> set[str]:
    keys = set()
    for p in stage.get("params", []):
        keys |= {p} if isinstance(p, str) else {k for ks in p.values() for k in ks}
    return keys


def _stages_reading_results(pipeline) -> dict:
    """The stages of a dvc.yaml but build_report, which shows the whole configuration and so declares
    (and reruns on) every key of it, and asserts that it does."""
    stages = yaml.safe_load((ROOT / pipeline).read_text())["stages"]
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert {k for k in cfg if not k.startswith("_")} <= _param_keys(stages.pop("build_report"))
    return stages


UPSTREAM_OF_RANKER = ("prepare_data", "convert_model", "generate_candidates", "gather_candidates",
                      "score_candidates", "gather_scores", "summarize_scores", "judge_pairs")


@pytest.mark.parametrize("pipeline", ["dvc.yaml", "dvc/ci/dvc.yaml"])
def test_a_ranker_setting_reaches_the_ranker_and_what_follows_only(pipeline):
    """Both tools rerun a stage when one of its declared config keys changes (Snakemake: the rule's
    `cfg` params; DVC: the stage's params, generated from them) and then everything downstream of it
    through its files. So changing e.g. ranker.train.lr must reach only ranker stages (and the
    evaluation, which reads ranker.methods), never a stage upstream of the ranker; and the fuser and
    the evaluation must depend on the ranker's outputs."""
    stages = _stages_reading_results(pipeline)
    with_ranker = {n for n, st in stages.items() if any(k == "ranker" or k.startswith("ranker.") for k in _param_keys(st))}
    assert any(n.startswith("train_ranker") for n in with_ranker)
    for name in with_ranker:
        # verify_fused compares the fused answer with the PairRanker's top-1 by running the PairRanker
        assert name.startswith(("train_ranker", "import_ranker", "rank_", "evaluate", "verify_fused")), name
    for name, st in stages.items():
        if name.startswith(UPSTREAM_OF_RANKER):
            assert name not in with_ranker
    ranker_outs = {o for n in with_ranker if n.startswith(("train_ranker", "rank_"))
                   for o in stages[n].get("outs", []) if isinstance(o, str)}
    for name in ("build_fuser_data", "evaluate"):
        deps = set(stages[name]["deps"])
        assert deps & ranker_outs or any(d.startswith(tuple(o + "/" for o in ranker_outs)) for d in deps), name


@pytest.mark.parametrize("pipeline", ["dvc.yaml", "dvc/ci/dvc.yaml"])
def test_each_ranker_setting_reaches_only_the_stages_that_read_it(pipeline):
    """Per-setting slicing: a training setting reaches only train_ranker (and, through the model files,
    what ranks with it), a new method in ranker.methods reruns the evaluation only (plus its own new
    stage), the CLM-Scoring length only CLM-Scoring, and the oracles read no ranker setting at all."""
    stages = _stages_reading_results(pipeline)

    def with_key(key):
        return {n for n, st in stages.items() if any(k == key or key.startswith(k + ".") for k in _param_keys(st))}

    assert with_key("ranker.train.lr") and all(n.startswith("train_ranker") for n in with_key("ranker.train.lr"))
    assert with_key("ranker.methods") == {"evaluate"}
    clm = with_key("ranker.clm_max_len")
    assert clm <= {"rank_candidates_clm_scoring"}
    oracles = [n for n in stages if n.startswith("rank_candidates_oracle")]
    assert oracles
    for n in oracles:
        assert not any(k.startswith("ranker") for k in _param_keys(stages[n])), n
    pair_only = with_key("ranker.pairs_per_input")
    assert pair_only == {n for n in stages if n.startswith("train_ranker_pairranker")}
    # ranker.select (opponents, refine_top) reaches the pairranker-sampled ranking only
    assert with_key("ranker.select") == {n for n in stages if n == "rank_candidates_pairranker-sampled"}
    # and ranker.race (z, opponents) the pairranker-race ranking only
    assert with_key("ranker.race") == {"rank_candidates_pairranker-race"}
