"""Input helpers for workflow/rules/fuse.smk (kept out of the rule file, as snakemake --lint asks)."""

from __future__ import annotations

import os

from llmblend.fuser.data import data_ranker, parse_ranker


def mb(path) -> float:
    return os.path.getsize(path) / 1e6 if os.path.exists(path) else 0.0


def split_inputs(config: dict, data: str, split: str) -> dict:
    """A split's files for the fuser: candidates + the ranker's rankings, or the scored file for an oracle."""
    fcfg = config["fuser"]
    kind, ranker = parse_ranker(fcfg["ranker"] if split == "test" else data_ranker(fcfg))
    if kind == "oracle":
        return {"split": f"{data}/scored/{split}.jsonl"}
    return {"split": f"{data}/candidates/{split}.jsonl", "rankings": f"{data}/rankings/{ranker}/{split}.jsonl"}


def data_inputs(config: dict, data: str, model_input: list) -> dict:
    files = {f"{k}_{s}": v for s in ("train", "val") for k, v in split_inputs(config, data, s).items()}
    return {**files, "model": model_input}


def data_args(config: dict, input) -> str:
    args = [f"--split {s}={input[f'split_{s}']}" for s in ("train", "val")]
    if parse_ranker(data_ranker(config["fuser"]))[0] != "oracle":
        args += [f"--rankings {s}={input[f'rankings_{s}']}" for s in ("train", "val")]
    return " ".join(args)
