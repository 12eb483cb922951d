"""Input helpers for workflow/rules/fuse.smk (kept out of the rule file, as snakemake --lint asks)."""

from __future__ import annotations

import os

from llmblend.fuser.data import data_ranker, parse_ranker
from llmblend.workflow.snake import q


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
    args = [f"--split {q(s + '=' + input[f'split_{s}'])}" for s in ("train", "val")]
    if parse_ranker(data_ranker(config["fuser"]))[0] != "oracle":
        args += [f"--rankings {q(s + '=' + input[f'rankings_{s}'])}" for s in ("train", "val")]
    return " ".join(args)


# The blended answers (llmblend.fuser.kinds): which kinds the profile makes, and the LLM aggregator's
# model, settings and command-line arguments.
def blend_kinds(config: dict) -> list[str]:
    from llmblend.fuser.kinds import enabled_kinds

    return enabled_kinds(config)


# what the GenFuser rules (build_fuser_data, train_fuser, fuse_candidates) read of the fuser section:
# the verifier and the aggregator settings rerun only their own rules
GENFUSER_KEYS = ["fuser.model", "fuser.pretrained", "fuser.ranker", "fuser.data_ranker", "fuser.prompt",
                 "fuser.train", "fuser.generate", "fuser.batch_size", "fuser.dtype", "fuser.reference_input"]


def genfuser_keys(config: dict) -> list[str]:
    """The config keys of the GenFuser rules (also the key of train_fuser's resume checkpoints)."""
    from llmblend.workflow.snake import model_keys

    return ["seed"] + GENFUSER_KEYS + model_keys(config, config["fuser"]["model"])


def fuse_keys(config: dict) -> list[str]:
    """Rule fuse_candidates': the GenFuser's keys and what decodes it (fuser.backend, read by that rule only)."""
    return genfuser_keys(config) + ["fuser.backend"]


def aggregator_model(config: dict, data: str) -> list[str]:
    from llmblend.generate.rules import model_files

    return model_files(config, data, config["fuser"]["aggregator"]["generator"])


def aggregator_model_arg(config: dict, data: str) -> str:
    from llmblend.generate.rules import model_option

    return model_option(config, data, config["fuser"]["aggregator"]["generator"])


def aggregator_keys(config: dict) -> list[str]:
    gen = config["fuser"]["aggregator"]["generator"]
    keys = ["seed", "fuser.ranker", "fuser.aggregator"]
    keys += [f"models.{gen['model']}"] if gen["backend"] in ("hf", "ctranslate2") else []
    return keys


def rankings_arg(input) -> str:
    return f"--rankings {q(input.rankings)}" if "rankings" in input.keys() else ""
