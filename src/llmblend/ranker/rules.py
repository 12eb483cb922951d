"""Helpers of workflow/rules/rank.smk (kept out of the rule file: Snakemake's linter wants rules only)."""

from __future__ import annotations

from llmblend.ranker.stage import method_kind, model_for


def train_inputs(config: dict, data: str) -> dict:
    """What train_ranker reads: the train and val records (the training pool's when
    ranker.train_generators is set, else the profile's own candidates) and, with the judge's
    signal, their judge labels."""
    from llmblend.workflow.snake import split_records

    rcfg = config["ranker"]
    pool = bool(rcfg.get("train_generators"))
    out = {s: (f"{data}/ranker_pool/{s}.jsonl" if pool else split_records(config, data, s)) for s in ("train", "val")}
    if rcfg["signal"]["type"] == "judge":
        judged = f"{data}/ranker_pool/judge" if pool else f"{data}/judge"
        out.update(train_judge=f"{judged}/train.jsonl", val_judge=f"{judged}/val.jsonl")
    return out


def method_inputs(method: str, data: str, clm_input: list) -> dict:
    """Extra inputs of rank_candidates for one method: its trained model, judge labels, causal LM."""
    kind, need, extra = method_kind(method), model_for(method), {}
    if need:
        extra["model"] = f"{data}/rankers/{need}/model"
    if kind == "oracle_judge":
        extra["judge"] = f"{data}/judge/test.jsonl"
    if kind == "clm_scoring":
        extra["clm"] = clm_input
    return extra


def method_args(method: str, inputs, clm_arg: str) -> str:
    """The matching command-line arguments."""
    kind, need = method_kind(method), model_for(method)
    args = [f"--model {need}={inputs.model}"] if need else []
    if kind == "oracle_judge":
        args.append(f"--judge {inputs.judge}")
    if kind == "clm_scoring":
        args.append(f"--clm-model {clm_arg}")
    return " ".join(args)


# --- the config keys each ranker rule reads --------------------------------------------------------
# Per rule and per method, so that a setting reruns only the stages that read it: a new method in
# `ranker.methods` adds jobs without rerunning the others, `ranker.train.lr` retrains (and reranks)
# but leaves Random and the metric oracles alone, `ranker.clm_max_len` touches CLM-Scoring only.
# threads, device and mem_mb are left out: like Snakemake's resources they change speed, not results.


def _present(rcfg: dict, keys: list[str]) -> list[str]:
    return [k for k in keys if k.split(".", 1)[1].split(".")[0] in rcfg]


def train_keys(rcfg: dict, ranker: str, backbone_keys: list[str]) -> list[str]:
    """train_ranker for one trained type (pairranker / simcls / summareranker)."""
    keys = ["seed"] + _present(rcfg, [
        "ranker.backbone", "ranker.signal", "ranker.source_max_len", "ranker.candidate_max_len",
        "ranker.dropout", "ranker.train", "ranker.infer.max_tokens", "ranker.infer.max_batch",
        "ranker.train_generators"])
    # validation scoring reads the batch sizes; infer.autocast is for the ranking jobs only
    if ranker == "pairranker":  # the pairwise loss and its pair sampling
        keys += ["ranker.loss", "ranker.pairs_per_input"]
    elif ranker in (rcfg.get("baseline_train") or {}):
        keys.append(f"ranker.baseline_train.{ranker}")
    return keys + backbone_keys


def import_keys(backbone_keys: list[str]) -> list[str]:
    return ["ranker.pretrained", "ranker.backbone"] + backbone_keys


def infer_keys(rcfg: dict) -> list[str]:
    """Inference with a trained ranker (full matrix, bubble's seeded order)."""
    return ["seed"] + _present(rcfg, ["ranker.infer"])


def method_keys(method: str, rcfg: dict, clm_keys: list[str]) -> list[str]:
    """rank_candidates for one test-split method."""
    kind = method_kind(method)
    if kind == "random":
        return ["seed"]
    if kind in ("oracle_metric", "oracle_judge"):
        return []  # the metric scores or the judge labels decide, no ranker setting does
    if kind == "longest":
        return []  # the candidate texts alone decide
    if kind == "clm_scoring":
        return _present(rcfg, ["ranker.clm_scorer", "ranker.clm_max_len"]) + clm_keys
    if method == "pairranker-sampled":  # its opponents / refine_top; knockout has no setting
        return infer_keys(rcfg) + _present(rcfg, ["ranker.select"])
    return infer_keys(rcfg)
