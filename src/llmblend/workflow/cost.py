"""The cost model of a profile: GPU-hours per stage, judge calls and their price, and disk.

The jobs are the DAG's: Snakemake plans the profile (`dvcgen.dag_jobs`, the reading `llmblend
export-dvc` uses), and each job whose rule sizes itself (`resources: **job_resources(config,
"<stage>")`) is priced as that rule asks the cluster: its work from the config and the job's wildcards
(split sizes, shards, the method table's forward passes, fuser settings), in the stage's unit; time is
work / the throughput of one job (`resources.stages`, measured by the stage benchmarks or estimated,
with the source written beside each number). Nothing here reads data or runs a model.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field

from llmblend.config import setting
from llmblend.errors import ConfigError

# stage -> the unit its `per_s` counts
UNITS = {
    "generate_candidates": "new tokens",
    "score_candidates": "candidates",
    "train_ranker": "training comparisons",
    "rank_candidates": "ordered-pair comparisons",
    "train_fuser": "training examples",
    "fuse_candidates": "fused examples",
    # CPU stages sized the same way, so that no rule reads its inputs' sizes (on Kubernetes they are
    # in storage, and a rule that sizes itself from them reads 0 bytes)
    "judge": "pair labels",
    "build_fuser_data": "fuser examples",
    "evaluate": "resampled test examples",
}
SPLITS = ("train", "val", "test")


@dataclass
class Job:
    stage: str
    rule: str
    name: str          # the job's wildcard values, e.g. "vicuna/test/3"
    wildcards: dict    # with the values the rule passes to job_resources itself (e.g. target="fused")
    units: float
    seconds: float
    gpus: int
    threads: int


@dataclass
class StagePlan:
    stage: str
    unit: str
    jobs: int = 0
    units: float = 0.0
    job_hours: float = 0.0
    gpu_hours: float = 0.0
    cpu_core_hours: float = 0.0
    gpus_per_job: int = 0
    longest_job_h: float = 0.0
    source: str = ""


@dataclass
class Plan:
    run: str
    items: dict
    candidates_per_item: int
    rules: dict = field(default_factory=dict)  # jobs of the DAG per rule, priced or not
    stages: list = field(default_factory=list)
    judge: dict = field(default_factory=dict)
    disk: dict = field(default_factory=dict)
    totals: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _res(cfg: dict) -> dict:
    res = cfg.get("resources")
    if not res:
        raise ConfigError("config key 'resources' is missing: the cost model and the cluster requests need it")
    return res


def stage_settings(cfg: dict, stage: str) -> dict:
    st = _res(cfg)["stages"].get(stage)
    if st is None:
        raise ConfigError(f"config key 'resources.stages.{stage}' is missing")
    return st


def split_items(cfg: dict) -> dict:
    """Examples per split: resources.items wins, else numbers in data.split.sizes, `rest` from n_items."""
    override = _res(cfg).get("items") or {}
    sizes = (cfg.get("data", {}).get("split") or {}).get("sizes") or {}
    out = {}
    for s in SPLITS:
        if s in override:
            out[s] = override[s]
        elif isinstance(sizes.get(s), int):
            out[s] = sizes[s]
    rest = [s for s in SPLITS if s not in out]
    if len(rest) == 1 and sizes.get(rest[0]) == "rest":
        total = sum(src.get("n_items", 0) for src in cfg["data"]["sources"])
        if total:
            out[rest[0]] = max(total - sum(out.values()), 0)
    missing = [s for s in SPLITS if s not in out]
    if missing:
        raise ConfigError(f"config key 'resources.items.{missing[0]}' is missing: the split sizes of this "
                          "profile are not numbers in data.split.sizes, so the cost model needs them")
    return out


def generators(cfg: dict) -> list[dict]:
    """Every candidate source of the profile (imported ones included: they count as candidates)."""
    gen = cfg.get("generate") or {}
    return list(gen.get("generators") or [])


LOCAL_BACKENDS = ("hf", "ctranslate2")  # generation backends that run the model inside the job


def _generated(cfg: dict) -> list[dict]:
    # `import` generators read candidates from the data: no model runs for them
    return [g for g in generators(cfg) if g.get("backend", "hf") != "import"]


def candidates_per_item(cfg: dict) -> int:
    n = _res(cfg).get("candidates_per_item")
    gens = generators(cfg)
    if n:
        return n
    if not gens:
        raise ConfigError("config key 'resources.candidates_per_item' is missing: the profile generates "
                          "nothing (no generate.generators), so say how many candidates the data carries")
    return len(gens)


_SIZE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)([bm])(?![a-z])")


def _norm(ref: str) -> list[str]:
    spec = ref.split(":", 1)[1] if re.match(r"^[a-z]+:", ref) else ref
    spec = spec.split("@", 1)[0]
    return [ref, spec, spec.rstrip("/").split("/")[-1]]


def params_b(cfg: dict, ref: str) -> float:
    """A model's size in billions of parameters: resources.model_params_b by name, spec or basename,
    else a `7b` / `135m` in its spec."""
    sizes = _res(cfg).get("model_params_b") or {}
    models = cfg.get("models") or {}
    keys = [ref] + (_norm(models[ref]["spec"]) if ref in models else []) + _norm(ref)
    for k in keys:
        if k in sizes:
            return float(sizes[k])
    for k in keys:
        m = _SIZE.search(k.lower())
        if m:
            return float(m.group(1)) / (1000.0 if m.group(2) == "m" else 1.0)
    raise ConfigError(f"config key 'resources.model_params_b.{ref}' is missing: the size of model {ref!r} "
                      "cannot be read from its spec (no '7b' or '135m' in it). Add its size in billions of "
                      f"parameters to your profile: `resources: {{model_params_b: {{{ref}: 0.5}}}}` "
                      "(the jobs' memory and runtime, and `llmblend plan-cost`, scale with it)")


def _gen_max_new(gen: dict) -> int:
    from llmblend.generate.backend import decoding_of

    return int(decoding_of(gen)["max_new_tokens"])


def _shards(cfg: dict, section: str) -> int:
    return int((cfg.get(section) or {}).get("shards") or 1)


def job_minutes(cfg: dict, stage: str, units: float, gen_params_b: float | None = None) -> float:
    """Estimated minutes of one job of `stage` doing `units` of work (start-up included, no margin)."""
    st = stage_settings(cfg, stage)
    per_s = st["per_s"]
    if stage == "generate_candidates" and gen_params_b:
        per_s = per_s * st.get("ref_params_b", gen_params_b) / gen_params_b
    return setting(cfg, f"resources.stages.{stage}.overhead_min") + units / per_s / 60.0


def job_units(cfg: dict, stage: str, wildcards: dict) -> float:
    """Work of one job of `stage` (in UNITS[stage]) from the config and the job's wildcards; the
    rules use it to size runtime and memory before any input exists."""
    items = split_items(cfg)
    n = candidates_per_item(cfg)
    if stage == "generate_candidates":
        gen = next((g for g in generators(cfg) if g["name"] == wildcards.get("generator")), None)
        if gen is None:
            raise ConfigError(f"no generator {wildcards.get('generator')!r} in generate.generators")
        if gen.get("backend", "hf") == "import":
            return 0.0
        ratio = setting(cfg, "resources.mean_new_tokens_ratio")
        return math.ceil(items[wildcards["split"]] / _shards(cfg, "generate")) * _gen_max_new(gen) * ratio
    if stage == "score_candidates":
        if "split" not in wildcards:   # score_fused: one fused answer per test example
            return items["test"]
        return math.ceil(items[wildcards["split"]] / _shards(cfg, "metrics")) * n
    if stage == "train_ranker":
        rk = cfg["ranker"]
        return items["train"] * rk["pairs_per_input"] * rk["train"]["epochs"]
    if stage == "rank_candidates":
        from llmblend.ranker.methods import passes_per_prompt

        if wildcards.get("target") == "verify":  # verify_fused: fused vs top-1, both orders
            return items["test"] * 2
        from llmblend.ranker.rules import plays_on_matrices

        split = wildcards.get("split", "test")
        methods = wildcards.get("methods") or [wildcards.get("method", "pairranker")]
        if len(methods) == 1 and plays_on_matrices(methods[0], cfg["ranker"]["methods"]):
            return 0  # its passes are read from rank_test_full's matrices
        return items[split] * passes_per_prompt(methods, n, cfg["ranker"])
    if stage == "train_fuser":
        return items["train"] * cfg["fuser"]["train"]["epochs"]
    if stage == "fuse_candidates":
        return items["test"]
    if stage == "judge":
        return judge_labels(cfg, wildcards)
    if stage == "build_fuser_data":
        return items["train"] + items["val"]
    if stage == "evaluate":  # every ranking of the test split, resampled by the bootstrap
        samples = setting(cfg, "evaluate.bootstrap.samples")
        return items["test"] * len(cfg["ranker"]["methods"]) * samples
    raise ConfigError(f"no cost model for stage {stage!r}")


def _judged_pairs(jcfg: dict, n: int) -> int:
    """Labels of one example with n answers: all C(n,2) pairs or a knockout's n-1, x2 for both orders."""
    per_item = (n - 1) if jcfg.get("pairs", "all") == "knockout" else n * (n - 1) // 2
    return per_item * (2 if jcfg.get("both_orders") else 1)


def judge_labels(cfg: dict, wildcards: dict) -> int:
    """Labels one judge job asks for. wildcards: {"split": s} (judge_pairs), {"target": "fused"} (the
    fused answer against each test candidate, judge_fused), {"target": "pool", "split": s} (the ranker's
    training pool, judge_ranker_pool)."""
    jcfg, items = cfg["judge"], split_items(cfg)
    target = wildcards.get("target", "pairs")
    if target == "fused":  # one blended answer kind; on AlpacaEval only against the reference (docs/judge.md)
        per_item = 1 if _fused_vs_reference(cfg) else candidates_per_item(cfg)
        return items["test"] * per_item * (2 if jcfg.get("both_orders") else 1)
    if target == "pool":
        return items[wildcards["split"]] * _judged_pairs(jcfg, len(cfg["ranker"]["train_generators"]))
    return items[wildcards["split"]] * _judged_pairs(jcfg, candidates_per_item(cfg))


def dag_jobs(configfiles: list[str]) -> list[dict]:
    """The jobs of the profile's DAG (Snakemake's own planning, as `llmblend export-dvc` reads it)."""
    from llmblend.workflow.dvcgen import dag_jobs as _dag_jobs

    return _dag_jobs(list(configfiles))


def price_jobs(cfg: dict, dag: list[dict]) -> list[Job]:
    """Each DAG job whose rule sizes itself (job_resources), with its work and estimated seconds."""
    from llmblend.workflow.snake import job_model_size

    jobs = []
    for dj in dag:
        if not dj.get("sizing"):
            continue  # a light rule (gathering, a summary, the report): not sized, not priced
        stage, fixed = dj["sizing"]
        wc = {**dj["wildcards"], **fixed}
        st = stage_settings(cfg, stage)
        units = job_units(cfg, stage, wc)
        minutes = job_minutes(cfg, stage, units, job_model_size(cfg, stage, wc))
        name = "/".join(str(v) for v in dj["wildcards"].values()) or dj["rule"]
        jobs.append(Job(stage, dj["rule"], name, wc, units, minutes * 60.0, st["gpus"], st["threads"]))
    return jobs


def split_mb(cfg: dict, split: str) -> float:
    """Planned size (MB) of one split's candidates with their scores."""
    return split_items(cfg)[split] * candidates_per_item(cfg) * setting(cfg, "resources.disk.bytes_per_candidate") / 1e6


def job_disk_mb(cfg: dict, stage: str, wildcards: dict) -> int:
    """Local disk of one job where its inputs and outputs are copies of storage objects (Kubernetes):
    its split's candidates in and out, and for training the best and the last checkpoint."""
    train = stage in ("train_ranker", "train_fuser", "build_fuser_data")
    split = wildcards.get("split") or ("train" if train else "test")
    bpp = setting(cfg, "resources.disk.checkpoint_bytes_per_param")
    model = _trained_model(cfg, stage)
    ckpt_mb = 2 * params_b(cfg, model) * 1e9 * bpp / 1e6 if model else 0.0
    return int(1000 + 2 * split_mb(cfg, split) + ckpt_mb)


def _trained_model(cfg: dict, stage: str) -> str | None:
    """The model a training job of `stage` checkpoints (None: not a training stage)."""
    return {"train_ranker": (cfg.get("ranker") or {}).get("backbone"),
            "train_fuser": (cfg.get("fuser") or {}).get("model")}.get(stage)


def _fused_vs_reference(cfg: dict) -> bool:
    from llmblend.judge.run import vs_reference_mode

    jcfg = cfg["judge"]
    return vs_reference_mode(cfg, jcfg.get("fused_backend") or jcfg["backend"])


def _usd_per_call(o: dict, pt: float, ct: float) -> float:
    return (pt * o["prompt_usd_per_1m"] + ct * o["completion_usd_per_1m"]) / 1e6


def judge_plan(cfg: dict, jobs: list[Job]) -> dict:
    """Judge calls of the profile's judge jobs (the candidate pairs of each judged split and of the
    ranker's training pool, the blended answers) and their price."""
    from llmblend.judge.backends import OPENAI_DEFAULTS

    jcfg = cfg.get("judge")
    if not jcfg:
        return {"backend": None, "calls": 0, "usd": 0.0}
    backend = jcfg["backend"]
    fused_backend = jcfg.get("fused_backend") or backend
    judged = [j for j in jobs if j.stage == "judge"]
    fused_calls = int(sum(j.units for j in judged if j.wildcards.get("target") == "fused"))
    pair_calls = int(sum(j.units for j in judged)) - fused_calls
    paid_pairs = pair_calls if backend == "openai" else 0
    paid_fused = fused_calls if fused_backend == "openai" else 0
    paid = paid_pairs + paid_fused
    o = {**OPENAI_DEFAULTS, **(jcfg.get("openai") or {})}  # the prices the judge itself spends and caps by
    fo = {**o, **(jcfg.get("fused_openai") or {})}  # the blended answers' judge (judge.fused_openai)
    pt, ct = setting(cfg, "resources.judge.prompt_tokens"), setting(cfg, "resources.judge.completion_tokens")
    batch = setting(cfg, "resources.judge.batch_api")
    discount = o["batch_discount"] if batch else 1.0
    usd = paid_pairs * _usd_per_call(o, pt, ct) * discount + paid_fused * _usd_per_call(fo, pt, ct)
    return {"backend": backend, "fused_backend": fused_backend, "pair_calls": pair_calls,
            "fused_calls": fused_calls, "paid_calls": paid, "model": o.get("model"),
            "fused_model": fo.get("model") if paid_fused else None,
            "prompt_tokens": paid * pt, "completion_tokens": paid * ct, "batch_api": batch,
            "usd": round(usd, 2), "max_usd": jcfg.get("max_usd")}


def disk_plan(cfg: dict, jobs: list[Job], judge: dict) -> dict:
    """Bytes on disk: candidate copies, the judge cache, model weights and the checkpoints of the
    training jobs."""
    items, n = split_items(cfg), candidates_per_item(cfg)
    n_cand = sum(items.values()) * n
    cand_bytes = n_cand * setting(cfg, "resources.disk.bytes_per_candidate") * setting(cfg, "resources.disk.copies")
    judge_bytes = (judge.get("pair_calls", 0) + judge.get("fused_calls", 0)) * 1000  # one cached reply + key
    bpp = setting(cfg, "resources.disk.checkpoint_bytes_per_param")
    models = {g.get("model", g["name"]) for g in _generated(cfg) if g.get("backend", "hf") in LOCAL_BACKENDS}
    weights = sum(params_b(cfg, m) for m in models) * 1e9 * 2  # bf16 on disk, once per model
    ckpt = sum(params_b(cfg, _trained_model(cfg, j.stage)) * 1e9 * bpp for j in jobs if _trained_model(cfg, j.stage))
    total = cand_bytes + judge_bytes + weights + ckpt
    gb = lambda b: round(b / 1e9, 3)  # noqa: E731
    return {"candidates": n_cand, "candidates_gb": gb(cand_bytes), "judge_cache_gb": gb(judge_bytes),
            "generator_weights_gb": gb(weights), "checkpoints_gb": gb(ckpt), "total_gb": gb(total)}


def plan_profile(configfiles: list[str]) -> Plan:
    """The plan of a profile's config files: the validated config and the jobs of its DAG."""
    from llmblend.config import load_config

    return plan(load_config(configfiles), dag_jobs(configfiles))


def plan(cfg: dict, dag: list[dict]) -> Plan:
    """Price the jobs of a profile's DAG (`dag_jobs`) with its config."""
    res = _res(cfg)
    p = Plan(run=cfg["run"], items=split_items(cfg), candidates_per_item=candidates_per_item(cfg))
    p.rules = dict(Counter(j["rule"] for j in dag))
    jobs = price_jobs(cfg, dag)
    by_stage: dict[str, StagePlan] = {}
    for job in jobs:
        sp = by_stage.setdefault(job.stage, StagePlan(job.stage, UNITS[job.stage], gpus_per_job=job.gpus,
                                                      source=stage_settings(cfg, job.stage)["source"]))
        hours = job.seconds / 3600.0
        sp.jobs += 1
        sp.units += job.units
        sp.job_hours += hours
        sp.gpu_hours += hours * job.gpus
        sp.cpu_core_hours += hours * job.threads
        sp.longest_job_h = max(sp.longest_job_h, hours)
    for sp in by_stage.values():
        for k in ("units", "job_hours", "gpu_hours", "cpu_core_hours", "longest_job_h"):
            setattr(sp, k, round(getattr(sp, k), 3))
    p.stages = [by_stage[s] for s in UNITS if s in by_stage]
    p.judge = judge_plan(cfg, jobs)
    p.disk = disk_plan(cfg, jobs, p.judge)
    n_gen = len(generators(cfg))
    if res.get("candidates_per_item") and n_gen and n_gen != res["candidates_per_item"]:
        p.notes.append(f"resources.candidates_per_item is {res['candidates_per_item']} but generate.generators "
                       f"lists {n_gen}: the plan counts {res['candidates_per_item']} candidates per item and "
                       f"the generation of the {len(_generated(cfg))} non-import generators")
    gpu_h = sum(s.gpu_hours for s in p.stages)
    p.totals = {"jobs": sum(s.jobs for s in p.stages), "gpu_hours": round(gpu_h, 2),
                "cpu_core_hours": round(sum(s.cpu_core_hours for s in p.stages), 2),
                "gpu_usd": round(gpu_h * res["usd_per_gpu_hour"], 2), "judge_usd": p.judge["usd"],
                "usd": round(gpu_h * res["usd_per_gpu_hour"] + p.judge["usd"], 2), "disk_gb": p.disk["total_gb"]}
    return p


def format_plan(p: Plan) -> str:
    lines = [f"cost plan of profile {p.run!r}: items {p.items}, {p.candidates_per_item} candidates per item", ""]
    head = f"{'stage':<22}{'jobs':>6}{'work':>16}  {'unit':<26}{'GPUs/job':>9}{'job-h':>10}{'GPU-h':>10}{'core-h':>10}"
    lines += [head, "-" * len(head)]
    for s in p.stages:
        lines.append(f"{s.stage:<22}{s.jobs:>6}{s.units:>16,.0f}  {s.unit:<26}{s.gpus_per_job:>9}"
                     f"{s.job_hours:>10.2f}{s.gpu_hours:>10.2f}{s.cpu_core_hours:>10.2f}")
    t = p.totals
    lines += ["-" * len(head), f"{'total':<22}{t['jobs']:>6}{'':>16}  {'':<26}{'':>9}{'':>10}"
              f"{t['gpu_hours']:>10.2f}{t['cpu_core_hours']:>10.2f}", ""]
    j = p.judge
    if j.get("backend"):
        lines.append(f"judge: backend {j['backend']} (fused: {j['fused_backend']}), {j['pair_calls']:,} pair labels + "
                     f"{j['fused_calls']:,} fused labels; paid calls {j['paid_calls']:,} to {j['model']}"
                     f"{' / ' + j['fused_model'] + ' (blended answers)' if j.get('fused_model') else ''} "
                     f"({j['prompt_tokens']:,} prompt + {j['completion_tokens']:,} completion tokens"
                     f"{', Batch API' if j['batch_api'] else ''}): USD {j['usd']:,.2f} (cap judge.max_usd "
                     f"{j['max_usd']})")
    else:
        lines.append("judge: none in this profile")
    d = p.disk
    lines.append(f"disk: {d['total_gb']:,.2f} GB = candidates {d['candidates_gb']:,.2f} ({d['candidates']:,} "
                 f"candidates, all copies) + judge cache {d['judge_cache_gb']:,.2f} + generator weights "
                 f"{d['generator_weights_gb']:,.2f} + checkpoints {d['checkpoints_gb']:,.2f}")
    lines.append(f"total: GPU USD {t['gpu_usd']:,.2f} + judge USD {t['judge_usd']:,.2f} = USD {t['usd']:,.2f}")
    if p.notes:
        lines += [f"note: {n}" for n in p.notes]
    if not any(s.stage == "generate_candidates" and s.units for s in p.stages):
        lines.append("generation: none planned (no generate.generators in this profile; candidates come with the data)")
    lines.append("")
    lines.append("throughput sources:")
    for s in p.stages:
        lines.append(f"  {s.stage}: {s.source}")
    return "\n".join(lines)
