"""Helpers of workflow/rules/rank.smk (kept out of the rule file: Snakemake's linter wants rules only)."""

from __future__ import annotations

from llmblend.ranker.methods import method as _method


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


def part_input(method: str) -> str:
    """The rule input name of a combined method's part (input names are identifiers)."""
    return "part_" + method.replace("-", "_")


# the methods whose passes are entries of the full comparison matrix: with the matrices at hand
# (rule rank_test_full) they read them and run no model
MATRIX_PLAYED = ("bubble", "select")


def plays_on_matrices(name: str, methods: list[str]) -> bool:
    """Whether the workflow plays method `name` on the test matrices (kept when `methods` has a full one)."""
    return _method(name).kind in MATRIX_PLAYED and any(_method(m).kind == "pair_full" for m in methods)


def method_inputs(name: str, data: str, model_inputs: dict, matrices: str | None = None) -> dict:
    """Extra inputs of rank_candidates for one method: its trained model, judge labels, the rankings it
    combines, and the model of what it reads (`model_inputs`: reads -> rule input, e.g. "clm", "encoder").
    `matrices`: the test split's full comparison matrices, when the workflow computes them; bubble and
    the select schedules then read those instead of the model."""
    m, extra = _method(name), {}
    if matrices and m.kind in MATRIX_PLAYED:
        extra["matrices"] = matrices
    elif m.model:
        extra["model"] = f"{data}/rankers/{m.model}/model"
    if m.reads == "judge":
        extra["judge"] = f"{data}/judge/test.jsonl"
    if m.reads in ("clm", "encoder"):
        extra[m.reads] = model_inputs[m.reads]
    for part in m.parts:
        extra[part_input(part)] = f"{data}/rankings/{part}/test.jsonl"
    return extra


def method_args(name: str, inputs, model_args: dict) -> str:
    """The matching command-line arguments (`model_args`: reads -> the model's spec)."""
    from llmblend.workflow.snake import q

    m = _method(name)
    if "matrices" in inputs.keys():
        args = [f"--from-matrices {q(inputs.matrices)}"]
    else:
        args = [f"--model {q(f'{m.model}={inputs.model}')}"] if m.model else []
    if m.reads == "judge":
        args.append(f"--judge {q(inputs.judge)}")
    if m.reads in ("clm", "encoder"):
        # a converted model is a rule input: its path as the job sees it (a storage copy on Kubernetes)
        given = getattr(inputs, m.reads) if m.reads in inputs.keys() else []
        spec = f"dir:{given[0]}" if len(given) else model_args[m.reads]
        args.append(f"--{'clm-model' if m.reads == 'clm' else 'encoder'} {q(spec)}")
    for part in m.parts:
        args.append(f"--rankings {q(f'{part}={getattr(inputs, part_input(part))}')}")
    return " ".join(args)


# --- the config keys each ranker rule reads --------------------------------------------------------
# Per rule and per method, so that a setting reruns only the stages that read it: a new method in
# `ranker.methods` adds jobs without rerunning the others, `ranker.train.lr` retrains (and reranks)
# but leaves Random and the metric oracles alone, `ranker.clm_max_len` touches CLM-Scoring only.
# A key the profile leaves out is still declared: the stage reads its schema default, and setting it
# reruns the stage. A job's threads come on its command line (--threads {threads}), undeclared like
# Snakemake's resources (llmblend.cli.add_threads says what they can change).


def train_keys(ranker: str, backbone_keys: list[str]) -> list[str]:
    """train_ranker for one trained type (pairranker / simcls / summareranker)."""
    keys = ["seed", "ranker.backbone", "ranker.signal", "ranker.source_max_len", "ranker.candidate_max_len",
            "ranker.dropout", "ranker.train", "ranker.infer.max_tokens", "ranker.infer.max_batch",
            "ranker.train_generators", "ranker.length_sharing", "ranker.source_join"]
    # validation scoring reads the batch sizes; infer.autocast is for the ranking jobs only
    if ranker == "pairranker":  # the pairwise loss and its pair sampling
        keys += ["ranker.loss", "ranker.pairs_per_input", "ranker.tie_pairs_per_input", "ranker.select_by",
                 "ranker.pooling"]
    else:
        keys.append(f"ranker.baseline_train.{ranker}")
    return keys + backbone_keys


def import_keys(backbone_keys: list[str]) -> list[str]:
    return ["ranker.pretrained", "ranker.backbone"] + backbone_keys


def infer_keys() -> list[str]:
    """Inference with a trained ranker (full matrix, bubble's seeded order)."""
    return method_keys("pairranker", {})


def method_keys(name: str, model_keys: dict) -> list[str]:
    """The ranking job of one method: its keys in the method table, plus the `models` entry of the
    model it reads (`model_keys`: reads -> keys, e.g. "clm": the causal LM's)."""
    m = _method(name)
    return list(m.keys) + list(model_keys.get(m.reads, []))
