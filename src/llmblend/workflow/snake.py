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
