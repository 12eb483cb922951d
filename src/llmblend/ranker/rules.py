"""Helpers of workflow/rules/rank.smk (kept out of the rule file: Snakemake's linter wants rules only)."""

from __future__ import annotations

from llmblend.ranker.stage import method_kind, model_for


def judge_inputs(rcfg: dict, data: str) -> dict:
    """The judge labels train_ranker reads when the signal is the judge's."""
    if rcfg["signal"]["type"] != "judge":
        return {}
    return {"train_judge": f"{data}/judge/train.jsonl", "val_judge": f"{data}/judge/val.jsonl"}


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
