"""The paper plan on SLURM: `snakemake -n --profile workflow/profiles/slurm --configfile config/paper.yaml`
plans the full reproduction (job count per rule) and asks for the resources the cost model computes."""

import re
from collections import Counter

import pytest

from llmblend.config import load_config
from llmblend.ranker.methods import method_kind, model_for
from llmblend.workflow.snake import job_resources, job_threads

from workflow_utils import ROOT, run

# rule -> the resources stage whose numbers it uses
HEAVY = {"generate_candidates": "generate_candidates", "score_candidates": "score_candidates",
         "score_fused": "score_candidates", "train_ranker": "train_ranker",
         "rank_with_pairranker": "rank_candidates", "rank_test_full": "rank_candidates",
         "rank_candidates": "rank_candidates", "train_fuser": "train_fuser", "fuse_candidates": "fuse_candidates",
         # CPU rules sized from the plan too (no rule reads its inputs' sizes: docs/scale-out.md)
         "judge_pairs": "judge", "judge_fused": "judge", "build_fuser_data": "build_fuser_data",
         "evaluate": "evaluate", "verify_fused": "rank_candidates"}
# wildcard values a rule passes to job_resources itself
FIXED = {"judge_fused": {"target": "fused"}, "verify_fused": {"target": "verify"}}


def _parse_jobs(text: str) -> list[dict]:
    """The jobs of a dry run: rule, wildcards, threads and resources of each."""
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", text):
        m = re.search(r"^(?:local)?rule (\w+):", block, flags=re.M)
        if not m:
            continue
        job = {"rule": m.group(1), "wildcards": {}, "threads": 1, "resources": {}}
        if w := re.search(r"^\s+wildcards: (.*)$", block, flags=re.M):
            job["wildcards"] = dict(kv.split("=", 1) for kv in w.group(1).split(", "))
        if t := re.search(r"^\s+threads: (\d+)$", block, flags=re.M):
            job["threads"] = int(t.group(1))
        if r := re.search(r"^\s+resources: (.*)$", block, flags=re.M):
            job["resources"] = dict(kv.split("=", 1) for kv in r.group(1).split(", "))
        jobs.append(job)
    return jobs


@pytest.fixture(scope="module")
def paper_plan():
    r = run(["snakemake", "-n", "--profile", "workflow/profiles/slurm", "--configfile", "config/paper.yaml"],
            cwd=ROOT, timeout=600)
    cfg = load_config([str(ROOT / "params.yaml"), str(ROOT / "config" / "paper.yaml")])
    return cfg, _parse_jobs(r.stdout + r.stderr)


def test_the_paper_plan_has_the_right_jobs(paper_plan):
    cfg, jobs = paper_plan
    count = Counter(j["rule"] for j in jobs)
    gens = [g for g in cfg["generate"]["generators"] if g["backend"] != "import"]
    assert len(gens) == 11, "the paper's 11 LLMs"
    methods = cfg["ranker"]["methods"]
    expect = {
        "prepare_data": 1,
        "generate_candidates": len(gens) * len(cfg["generate"]["splits"]) * cfg["generate"]["shards"],
        "gather_candidates": 1,
        "score_candidates": 3 * cfg["metrics"]["shards"],
        "gather_scores": 3,
        "score_fused": 2,  # the fused and the verified answers (llmblend.fuser.kinds)
        "judge_pairs": len(cfg["judge"]["splits"]),
        "judge_fused": 2,
        "verify_fused": 1,
        "train_ranker": len({"pairranker"} | {model_for(m) for m in methods if model_for(m)}),
        "rank_with_pairranker": len([s for s in cfg["ranker"]["rank_splits"] if s != "test"]),
        "rank_test_full": 1,
        "rank_candidates": len([m for m in methods if method_kind(m) != "pair_full"]),
        "build_fuser_data": 1,
        "train_fuser": 1,
        "fuse_candidates": 1,
        "evaluate": 1,
        "build_report": 1,
    }
    for rule, n in expect.items():
        assert count[rule] == n, f"{rule}: {count[rule]} jobs planned, {n} expected"
    # 11 LLMs x 3 splits x shards of generation: every one a job of its own
    assert len({tuple(sorted(j["wildcards"].items())) for j in jobs if j["rule"] == "generate_candidates"}) == \
        expect["generate_candidates"]


def test_every_heavy_job_asks_for_what_the_cost_model_computes(paper_plan):
    cfg, jobs = paper_plan
    heavy = [j for j in jobs if j["rule"] in HEAVY]
    assert heavy
    for job in heavy:
        stage = HEAVY[job["rule"]]
        st = cfg["resources"]["stages"][stage]
        res = job["resources"]
        where = f"{job['rule']} {job['wildcards']}"
        assert job["threads"] == job_threads(cfg, stage), where
        assert int(res.get("gpu", 0)) == st["gpus"], where
        assert res.get("slurm_partition") == cfg["resources"]["gpu_partition" if st["gpus"] else "cpu_partition"], where
        fixed = {"methods": [m for m in cfg["ranker"]["methods"] if method_kind(m) == "pair_full"]} \
            if job["rule"] == "rank_test_full" else FIXED.get(job["rule"], {})
        want = job_resources(cfg, stage, **fixed)
        assert int(res["runtime"]) == want["runtime"](job["wildcards"], 1), where
        assert int(res["mem_mb"]) == want["mem_mb"](job["wildcards"], 1), where


def test_runtime_scales_with_the_shard_size(paper_plan):
    cfg, jobs = paper_plan
    gen = {(j["wildcards"]["generator"], j["wildcards"]["split"]): int(j["resources"]["runtime"])
           for j in jobs if j["rule"] == "generate_candidates"}
    # train shards hold 20x the records of test shards; a 13B model decodes slower than a 7B one
    assert gen[("vicuna-13b-1.1", "train")] > gen[("vicuna-13b-1.1", "test")]
    assert gen[("vicuna-13b-1.1", "train")] > gen[("koala-7B-HF", "train")]
    train_fuser = next(j for j in jobs if j["rule"] == "train_fuser")
    assert int(train_fuser["resources"]["gpu"]) == cfg["resources"]["stages"]["train_fuser"]["gpus"] > 1


def test_every_heavy_rule_writes_a_benchmark_file():
    text = "\n".join(p.read_text() for p in sorted((ROOT / "workflow" / "rules").glob("*.smk")))
    rules = dict(zip(*[iter(re.split(r"^\s*rule (\w+):", text, flags=re.M)[1:])] * 2))
    for rule in HEAVY:
        assert rule in rules, f"rule {rule} is gone"
        body = rules[rule]
        assert "benchmark:" in body, f"rule {rule} has no benchmark: file"
        assert "job_resources(" in body and "job_threads(" in body, f"rule {rule} does not size its job"


def test_the_kubernetes_profile_plans_the_same_jobs_through_storage(paper_plan):
    _, jobs = paper_plan
    r = run(["snakemake", "-n", "--profile", "workflow/profiles/kubernetes", "--configfile", "config/paper.yaml"],
            cwd=ROOT, timeout=600)
    k8s = _parse_jobs(r.stdout + r.stderr)
    assert Counter(j["rule"] for j in k8s) == Counter(j["rule"] for j in jobs)
    assert "(in storage)" in r.stdout + r.stderr  # every artifact goes through the shared storage
    gpu_jobs = [j for j in k8s if int(j["resources"].get("gpu", 0))]
    assert gpu_jobs and all(j["resources"].get("gpu_manufacturer") == "nvidia" for j in gpu_jobs)
