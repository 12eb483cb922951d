"""The PairRanker study on real answers: train and evaluate over a grid of answer length, training
pool, epochs, precision and backbone, on the alpaca_eval profile's splits and GPT-4 labels.

Every cell goes through the product's own code: `llmblend.ranker.stage.train_ranker` on a pool file
(`llmblend.ranker.pool`), then `llmblend.ranker.select` at test. Prerequisite, the profile's data and
its training pool (imports and replayed labels, a few minutes):

    LLMBLEND_MIRROR=../shared/mirror snakemake data/alpaca_eval/ranker_pool/judge/train.jsonl \
        data/alpaca_eval/ranker_pool/judge/val.jsonl data/alpaca_eval/judge/test.jsonl \
        --configfile config/alpaca_eval.yaml --cores 2

    python benchmarks/study_ranker.py --cells len128-pool37-e1 len48-pool12-e2 --threads 1
    python benchmarks/study_ranker.py --table            # the markdown table of every finished cell
    python benchmarks/study_ranker.py --probe workflow   # a probe on frozen embeddings beside a ranker
    python benchmarks/study_ranker.py --ensemble-consensus workflow <cells>   # trainings averaged + consensus
    python benchmarks/study_ranker.py --judge-noise      # the labels' own noise: the judge asked again

A cell is named `len<C>-src<S>-pool<P>[-m<G>[d<D>]]-e<E>[-p<K>][-fp32][-headtail][-adrop0][-anchor][-lenbal][-modbal][-tie<T>][-mean][-refit][-lr<M>e<X>][-seed<N>][-<backbone>]`:
- C: candidate tokens (ranker.candidate_max_len); S: source tokens (default 128; the pair must fit
  the backbone's 512 positions, so C=240 goes with S=32 at most, C=192 with S=64);
- P: the training pool: `12` (the profile's ranked models), `37` (all of the mirror) or `holdout`
  (the 37 less 8 held-out models, drawn with the seed from the 25 that the profile does not rank;
  the test then ranks those 8, which the ranker never saw: the generalisation check);
- G: train on G of the pool's models (generators) only, the first G of the pool shuffled with the
  profile's seed (so the sub-pools are nested: m12 is inside m20, whatever the cell's -seed): a
  learning curve over judged models. The pairs per prompt and epoch stay at most K, but a prompt
  whose G answers all got one verdict gives none, so a small G also trains on fewer pairs (raise K
  to match); d<D> shuffles with seed D instead, another draw of the same size;
- E: epochs; K: pairs per prompt and epoch (default 5); fp32: training in fp32 (default bf16 autocast);
  headtail: each candidate longer than its budget keeps its first two thirds and its last third of
  tokens instead of its first tokens only (head + tail truncation, Sun et al. 2019; a study-only variant,
  patched into the product's encoder for the cell's training and test);
  adrop0: no dropout on the backbone's attention weights while training (ranker.train.attention_dropout
  0.0; default the backbone's own 0.1), which lets torch use its fused attention kernel on CPU;
  anchor: train on the judged pairs themselves: every training and validation pair is an answer
  against the prompt's reference answer (text-davinci-003, the text GPT-4 compared each answer with),
  labelled by that answer's GPT-4 verdict, instead of two pool answers labelled from their two verdicts
  (which says nothing when both beat the reference, or both lost); the test also ranks each answer
  by its logits against the reference (2N passes per prompt, `anchor` in the result) beside MaxLogits;
  lenbal: length-balanced training pairs (ranker.train.length_balanced_pairs): each pair's loss is
  weighted so that the longer answer is the better in half the weight of unequal pairs (in ~80% of
  an input's pool pairs unweighted);
  modbal: model-balanced training pairs (a study-only variant, ModelBalance below): each pair's loss
  is weighted d(better answer's model) / d(worse answer's model), with d balanced so that every
  model's answers carry as much weight on the better side of a pair as on the worse: the identity of
  the model that wrote an answer then says nothing of the label, which a ranker cannot use on LLMs
  it never saw anyway;
  tie<T>: T pairs of equal verdicts per prompt and epoch besides the K unequal ones, trained towards a
  logit of 0 (ranker.tie_pairs_per_input; the pool's pairs are mostly such ties, which the paper's
  sampling leaves out);
  mean: the head reads each part's mean hidden state instead of its prefix token's (ranker.pooling mean);
  refit: train on the train and the val prompts together (20% more judged prompts), for the cell's
  epochs: the epoch count is the one val chose before; the val accuracy printed is then in-sample,
  so the epoch kept is the last in practice (every mean-pooling training so far had val pick its last);
  lr<M>e<X>: learning rate M x 10^-X (lr2e5 = 2e-5) instead of the profile's ranker.train.lr;
  seed<N>: the training's seed (initialisation, pair draws, dropout) instead of the profile's, to see
  how far two trainings of the same cell differ; the held-out models, the test and its bootstrap keep
  the profile's seed;
  backbone: `minilm` (default) or a models.<name> of the profile.
Each finished cell is `<out>/<cell>/result.json` and is skipped on a rerun.

Test: each prompt's answers are ranked by the `sampled` selection schedule (ranker.select) and the
pick is scored by GPT-Rank over the ranked models (95% bootstrap CI), its AlpacaEval win rate
against text-davinci-003 (GPT-4's verdict: win 1, tie 0.5) and its length in words, beside the best
single model, a random pick (its expectation), the longest answer and the oracle.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import logging
import os
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CELL = re.compile(r"^len(?P<len>\d+)(?:-src(?P<src>\d+))?-pool(?P<pool>12|37|holdout)(?:-m(?P<models>\d+)(?:d(?P<draw>\d+))?)?-e(?P<epochs>\d+)"
                  r"(?:-p(?P<pairs>\d+))?(?P<fp32>-fp32)?(?P<headtail>-headtail)?(?P<adrop0>-adrop0)?(?P<anchor>-anchor)?"
                  r"(?P<lenbal>-lenbal)?(?P<modbal>-modbal)?(?:-tie(?P<ties>\d+))?(?P<mean>-mean)?(?P<refit>-refit)?(?:-lr(?P<lr>\d+)e(?P<lr_exp>\d+))?(?:-seed(?P<seed>\d+))?"
                  r"(?:-(?P<backbone>[a-z0-9_]+))?$")
HELD_OUT = 8


def parse_cell(name: str) -> dict:
    m = CELL.match(name)
    if not m:
        raise SystemExit(f"cell {name!r}: expected len<C>[-src<S>]-pool<12|37|holdout>[-m<G>[d<D>]]-e<E>[-p<K>][-fp32][-headtail]"
                         "[-adrop0][-anchor][-lenbal][-modbal][-tie<T>][-mean][-refit][-lr<M>e<X>][-seed<N>][-<backbone>]")
    if m["lenbal"] and m["modbal"]:
        raise SystemExit(f"cell {name!r}: -lenbal and -modbal weigh the same pairs; choose one")
    return {"name": name, "candidate_max_len": int(m["len"]), "source_max_len": int(m["src"] or 128),
            "pool": m["pool"], "train_models": None if m["models"] is None else int(m["models"]),
            "draw": None if m["draw"] is None else int(m["draw"]),
            "epochs": int(m["epochs"]), "pairs_per_input": int(m["pairs"] or 5),
            "autocast": None if m["fp32"] else "bfloat16", "backbone": m["backbone"] or "minilm",
            "headtail": bool(m["headtail"]), "anchor": bool(m["anchor"]), "length_balanced": bool(m["lenbal"]),
            "model_balanced": bool(m["modbal"]),
            "attention_dropout": 0.0 if m["adrop0"] else None, "pooling": "mean" if m["mean"] else None,
            "refit": bool(m["refit"]), "tie_pairs": int(m["ties"] or 0),
            "lr": None if m["lr"] is None else float(f"{m['lr']}e-{m['lr_exp']}"), "seed": None if m["seed"] is None else int(m["seed"])}


def head_tail_candidates(self, texts, src_len, share=2):
    """PairEncoder.candidates with head + tail truncation: the budget as the product computes it, then
    [CLS] + the first tokens + the last third of the budget + [SEP] for a candidate that does not fit."""
    from llmblend.ranker.model import CAND

    budget = self.cfg.candidate_max_len
    if self.cfg.length_sharing == "per_example":
        budget += max(self.cfg.source_max_len - src_len, 0) // share
    out = []
    for ids in self.tok([CAND + self._clean(t) for t in texts], truncation=False)["input_ids"]:
        if len(ids) > budget:
            tail, body = budget // 3, ids[1:-1]
            ids = [ids[0]] + body[:budget - tail - 2] + body[len(body) - tail:] + [ids[-1]]
        out.append(ids)
    return out


def cpu_flags() -> str:
    from hwpeak import cpu_info

    return " ".join(f for f, present in cpu_info()["flags"].items() if present)


def load_profile(args) -> dict:
    """The profile the study runs on: params.yaml with --config over it."""
    from llmblend.config import load_config

    return load_config([ROOT / "params.yaml", ROOT / args.config])


def held_out_models(cfg: dict) -> list[str]:
    ranked = {g["name"] for g in cfg["generate"]["generators"]}
    extra = sorted(m for m in cfg["ranker"]["train_generators"] if m not in ranked)
    return sorted(random.Random(int(cfg["seed"])).sample(extra, HELD_OUT))


def sub_pool(pool: set[str], m: int, seed: int) -> set[str]:
    """The first m models of the pool in a seeded shuffle: nested over m for one pool and seed."""
    if not 2 <= m <= len(pool):
        raise SystemExit(f"-m{m}: a sub-pool needs 2 to {len(pool)} models (the pool has {len(pool)})")
    order = sorted(pool)
    random.Random(seed).shuffle(order)
    return set(order[:m])


def filter_records(src: Path, dst: Path, keep: set[str], limit: int | None = None) -> int:
    n = 0
    with open(src, encoding="utf-8") as fin, open(dst, "w", encoding="utf-8") as fout:
        for line in itertools.islice(fin, limit):
            rec = json.loads(line)
            rec["candidates"] = [c for c in rec["candidates"] if c["model"] in keep]
            if len(rec["candidates"]) >= 2:
                fout.write(json.dumps(rec) + "\n")
                n += 1
    return n


REFERENCE = "reference"  # the name of the reference answer as a candidate of `-anchor` cells


def add_reference(cfg: dict, split: str, records_path: Path, judge_src: Path, judge_dst: Path) -> None:
    """`-anchor` cells: the prompt's reference answer (the record's `output`, the text GPT-4 compared
    every answer with) becomes the last candidate of each pool record, and each answer's pair with it is
    labelled by that answer's GPT-4 verdict (alpaca_pair_label against the reference's own level, 1.5)."""
    from llmblend.data.sources.alpaca_eval import norm_instruction
    from llmblend.judge.backends import ReplayJudge, alpaca_pair_label
    from llmblend.judge.labels import pair_key

    records = [json.loads(line) for line in open(records_path, encoding="utf-8")]
    judge = ReplayJudge(cfg, split, records)
    extra = {}
    for rec in records:
        prefs = judge.prefs.get(norm_instruction(rec["instruction"]), {})
        extra[rec["id"]] = {pair_key(c["model"], REFERENCE): alpaca_pair_label(prefs[c["model"]], 1.5)
                            for c in rec["candidates"] if prefs.get(c["model"]) is not None}
        rec["candidates"].append({"model": REFERENCE, "text": rec["output"]})
    with open(records_path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(rec) + "\n" for rec in records)
    with open(judge_src, encoding="utf-8") as fin, open(judge_dst, "w", encoding="utf-8") as fout:
        for line in fin:
            rec = json.loads(line)
            if rec["id"] in extra:
                rec["cmp_results"] = {**rec["cmp_results"], **extra[rec["id"]]}
                fout.write(json.dumps(rec) + "\n")


def better_worse_pairs(signal) -> list[tuple[int, int]]:
    """An input's pairs of different signal as (better, worse) candidate indices."""
    n = len(signal)
    return [(i, j) if signal[i] > signal[j] else (j, i) for i in range(n) for j in range(i + 1, n)
            if signal[i] != signal[j]]


def balancing_factors(counts: np.ndarray, iterations: int = 2000) -> np.ndarray:
    """d with d_m * sum_k counts[m, k] / d_k == sum_k counts[k, m] * d_k / d_m for every m (Osborne's
    matrix balancing, in logs): weighting each (better m, worse k) pair by d_m / d_k makes every row
    sum (weight on the better side) equal its column sum (weight on the worse side). Needs every model
    on both sides of some pair."""
    better, worse = counts.sum(1), counts.sum(0)
    if (better <= 0).any() or (worse <= 0).any():
        raise ValueError("model balance: every model needs a pair where it is the better and one where it is the worse")
    log_d = np.zeros(len(counts))
    for _ in range(iterations):
        for m in range(len(counts)):
            d = np.exp(log_d)
            log_d[m] = 0.5 * (np.log(counts[:, m] @ d) - np.log(counts[m] @ (1 / d)))
        log_d -= log_d.mean()
    return np.exp(log_d)


class ModelBalance:
    """Model-balanced training pairs (cells `-modbal`; patched in for the product's LengthBalance,
    whose interface it has). Among a 37-model pool's pairs of different verdict, a strong model's
    answer is the better one in up to 98% of its pairs, so a ranker can lower its loss by
    recognising the model (its style) rather than judging the answer, which does not carry to LLMs it
    never saw. Each pair (better answer by model m, worse by model k) weighs d_m / d_k
    (balancing_factors over the expected draws: each input spreads one unit over its pairs, as every
    input draws the same number), normalised to a mean of 1 over those draws: every model then
    carries as much weight as the better answer as the worse, and a ranker that knew only the model
    would learn nothing (the Bradley-Terry fit on model identity alone is flat). What is left to
    learn is when a model's answer wins and when it loses."""

    def __init__(self, examples):
        self.models = sorted({m for ex in examples for m in ex.models})
        index = {m: k for k, m in enumerate(self.models)}
        counts = np.zeros((len(self.models), len(self.models)))
        for ex in examples:
            pairs = better_worse_pairs(ex.signal)
            for b, w in pairs:
                counts[index[ex.models[b]], index[ex.models[w]]] += 1 / len(pairs)
        d = balancing_factors(counts)
        ratio = d[:, None] / d[None, :]
        self.norm = float((counts * ratio).sum() / counts.sum())
        self.d = dict(zip(self.models, d))
        weights, share = ratio[counts > 0] / self.norm, counts[counts > 0] / counts.sum()
        self.effective = float((share @ weights) ** 2 / (share @ weights ** 2))
        self.better_share = {m: float(counts[k].sum() / (counts[k].sum() + counts[:, k].sum()))
                             for k, m in enumerate(self.models)}
        self.drawn = 0

    def weight(self, ex, i: int, j: int) -> float:
        b, w = (i, j) if ex.signal[i] > ex.signal[j] else (j, i)
        return self.d[ex.models[b]] / self.d[ex.models[w]] / self.norm

    def weigh(self, ex, pairs) -> list[float]:
        self.drawn += len(pairs)
        return [self.weight(ex, i, j) for i, j in pairs]

    def describe(self) -> str:
        ends = sorted(self.models, key=self.d.get)
        return (f"model-balanced pairs over {len(self.models)} models: effective share of the draws (Kish) "
                f"{self.effective:.3f}; d from {ends[0]} {self.d[ends[0]]:.3f} (the better answer in "
                f"{self.better_share[ends[0]]:.3f} of its pairs) to {ends[-1]} {self.d[ends[-1]]:.3f} "
                f"({self.better_share[ends[-1]]:.3f})")

    def drawn_report(self) -> str:
        return f"model-balanced pairs drawn so far: {self.drawn}"


def anchor_pairs(signal, k: int, rng: random.Random, ties: bool = False):
    """`-anchor` cells' train.sample_pairs: k answers whose verdict differs from the reference's (the last
    candidate), each paired with it in a random order."""
    if ties:
        raise SystemExit("an -anchor cell trains on answers against the reference: no -tie<T> with it")
    ref = len(signal) - 1
    cands = [i for i in range(ref) if signal[i] != signal[ref]]
    rng.shuffle(cands)
    return [(i, ref) if rng.random() < 0.5 else (ref, i) for i in cands[:k]]


class TokenCounter:
    """Counts the tokens every forward pass of the backbone sees (useful and padded)."""

    def __init__(self, backbone):
        self.useful = self.padded = 0
        self.handle = backbone.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if mask is not None:
            self.useful += int(mask.sum())
            self.padded += int(mask.numel())


def test_set(cfg: dict, data: Path, cell: dict, work: Path):
    """(examples, preferences per example and candidate) of the test prompts the cell ranks."""
    from llmblend.judge.backends import ReplayJudge
    from llmblend.ranker.data import load_examples
    from llmblend.ranker.pool import build_pool

    if cell["pool"] == "holdout":
        path = work / "test_heldout.jsonl"
        held = {**cfg, "ranker": {**cfg["ranker"], "train_generators": held_out_models(cfg)}}
        build_pool(held, "test", data / "splits" / "test.jsonl", path)
    else:
        path = data / "candidates" / "test.jsonl"
    examples = load_examples(path)
    records = [json.loads(line) for line in open(path, encoding="utf-8")]
    judge = ReplayJudge(cfg, "test", records)
    from llmblend.data.sources.alpaca_eval import norm_instruction

    prefs = []
    for rec, ex in zip(records, examples):
        p = judge.prefs.get(norm_instruction(rec["instruction"]), {})
        prefs.append([p.get(m) for m in ex.models])
    return examples, prefs


def verdict_labels(prefs: list) -> dict[str, str]:
    """Every pair of one example's answers (named by position) labelled from their verdicts against
    the reference as the replay judge labels it (llmblend.judge.backends.alpaca_pair_label); a
    missing verdict leaves its pairs out."""
    from llmblend.judge.backends import alpaca_pair_label
    from llmblend.judge.labels import pair_key

    return {pair_key(str(i), str(j)): alpaca_pair_label(prefs[i], prefs[j])
            for i, j in itertools.combinations(range(len(prefs)), 2)
            if prefs[i] is not None and prefs[j] is not None}


def gpt_rank_scores(prefs: list) -> list[float]:
    """GPT-Rank scores (wins minus losses) of one example's answers from their verdicts (verdict_labels)."""
    from llmblend.judge.gpt_rank import scores

    return scores(verdict_labels(prefs), [str(i) for i in range(len(prefs))])


WIN_VALUE = {2.0: 1.0, 1.5: 0.5, 1.0: 0.0}  # AlpacaEval's win rate: GPT-4's verdict -> a win, half, none


def evaluate_picks(picks: list[int], examples, prefs, seed: int) -> dict:
    from llmblend.analysis.stats import bootstrap_indices, mean_ci
    from llmblend.ranker.baselines import word_count

    gr, win, length = [], [], []
    for e, (ex, p) in enumerate(zip(examples, prefs)):
        s = gpt_rank_scores(p)
        k = picks[e]
        gr.append(1 + sum(1 for v in s if v > s[k]))
        win.append(np.nan if p[k] is None else WIN_VALUE[p[k]])
        length.append(word_count(ex.texts[k]))
    gr, win = np.asarray(gr, float), np.asarray(win, float)
    idx = bootstrap_indices(len(gr), 1000, seed)
    lo, hi = mean_ci(gr, idx, 0.95)
    return {"gpt_rank": float(gr.mean()), "gpt_rank_ci": [lo, hi], "win_rate": float(np.nanmean(win) * 100),
            "pick_len_words": float(np.mean(length))}


def reference_rows(examples, prefs, seed: int) -> dict:
    """Best single model (by test GPT-Rank), random pick (expectation over answers), longest, oracle."""
    from llmblend.ranker.baselines import longest_scores

    rows = {}
    models = examples[0].models
    per_model = {m: evaluate_picks([ex.models.index(m) for ex in examples], examples, prefs, seed)
                 for m in models if all(m in ex.models for ex in examples)}
    best = min(per_model, key=lambda m: per_model[m]["gpt_rank"])
    rows[f"best single ({best})"] = per_model[best]
    best_win = max(per_model, key=lambda m: per_model[m]["win_rate"])
    rows[f"best single by win rate ({best_win})"] = per_model[best_win]
    per_rand = [evaluate_picks([i % len(ex.texts) for ex in examples], examples, prefs, seed)
                for i in range(max(len(ex.texts) for ex in examples))]
    rows["random (expectation)"] = {k: float(np.mean([r[k] for r in per_rand])) for k in
                                    ("gpt_rank", "win_rate", "pick_len_words")}
    rows["longest"] = evaluate_picks([int(np.argmax(s)) for s in longest_scores(examples)], examples, prefs, seed)
    rows["oracle"] = evaluate_picks([int(np.argmax(gpt_rank_scores(p))) for p in prefs], examples, prefs, seed)
    return rows


def run_cell(cell: dict, args) -> dict:
    import torch

    from llmblend.models.resolve import resolve
    from llmblend.ranker.stage import train_ranker

    cfg = load_profile(args)
    data = ROOT / "data" / cfg["run"]
    work = Path(args.out) / cell["name"]
    work.mkdir(parents=True, exist_ok=True)
    rc = cfg["ranker"]
    rc.update(source_max_len=cell["source_max_len"], candidate_max_len=cell["candidate_max_len"],
              pairs_per_input=cell["pairs_per_input"], tie_pairs_per_input=cell.get("tie_pairs", 0),
              threads=args.threads)
    rc["train"] = {**rc["train"], "epochs": cell["epochs"], "autocast": cell["autocast"],
                   "attention_dropout": cell.get("attention_dropout"),
                   "length_balanced_pairs": bool(cell.get("length_balanced") or cell.get("model_balanced"))}
    if cell.get("lr") is not None:
        rc["train"]["lr"] = cell["lr"]
    if cell.get("pooling"):
        rc["pooling"] = cell["pooling"]
    if args.step_tokens:  # the same loss (gradients summed over the chunks), other batch shapes
        rc["train"]["step_tokens"] = args.step_tokens
    ranked = [g["name"] for g in cfg["generate"]["generators"]]
    pool = {"12": set(ranked), "37": set(rc["train_generators"]),
            "holdout": set(rc["train_generators"]) - set(held_out_models(cfg))}[cell["pool"]]
    if cell.get("train_models") is not None:
        pool = sub_pool(pool, cell["train_models"], int(cfg["seed"]) if cell.get("draw") is None else cell["draw"])
    judges = {split: data / "ranker_pool" / "judge" / f"{split}.jsonl" for split in ("train", "val")}
    for split in ("train", "val"):
        filter_records(data / "ranker_pool" / f"{split}.jsonl", work / f"{split}.jsonl", pool,
                       args.train_limit if split == "train" else args.test_limit)
        if cell["anchor"]:
            add_reference(cfg, split, work / f"{split}.jsonl", judges[split], work / f"judge_{split}.jsonl")
            judges[split] = work / f"judge_{split}.jsonl"
    if cell.get("refit"):  # the val prompts join the training set (appended; val stays as it is)
        joined = [(work / "train.jsonl", work / "train.jsonl", work / "val.jsonl"),
                  (work / "judge_train.jsonl", judges["train"], judges["val"])]
        for dst, *parts in joined:
            text = "".join(part.read_text(encoding="utf-8") for part in parts)  # read before dst is written
            dst.write_text(text, encoding="utf-8")
        judges["train"] = work / "judge_train.jsonl"
    backbone_spec = cfg["models"][cell["backbone"]]["spec"]
    torch.set_num_threads(args.threads)

    import llmblend.ranker.stage as stage_mod

    counter, build = {}, stage_mod.build_ranker

    def counted_build(*a, **kw):  # count the tokens the training's forward passes see
        m, t = build(*a, **kw)
        counter["c"] = TokenCounter(m.backbone)
        return m, t

    stage_mod.build_ranker = counted_build
    import llmblend.ranker.train as train_mod

    own_sample_pairs, own_balance = train_mod.sample_pairs, train_mod.LengthBalance
    if cell["anchor"]:
        train_mod.sample_pairs = anchor_pairs
    if cell.get("model_balanced"):  # the product builds its pair weights from train.length_balanced_pairs
        train_mod.LengthBalance = ModelBalance
    t0 = time.time()
    try:
        train_cfg = cfg if cell.get("seed") is None else {**cfg, "seed": cell["seed"]}
        report = train_ranker(train_cfg, "pairranker", work / "train.jsonl", work / "val.jsonl", resolve(backbone_spec),
                              work / "model", work / "curve.csv",
                              train_judge=judges["train"], val_judge=judges["val"], backbone_spec=backbone_spec)
    finally:
        stage_mod.build_ranker, train_mod.sample_pairs, train_mod.LengthBalance = build, own_sample_pairs, own_balance
    train_s = time.time() - t0
    c = counter["c"]
    c.handle.remove()

    result = {"cell": cell, "train_models": sorted(pool), "cpu_flags": cpu_flags(), "threads": args.threads,
              "step_tokens": rc["train"].get("step_tokens"),
              "train": {"seconds": round(train_s, 1), "examples": report["train_examples"],
                        "best_epoch": report["best_epoch"], "history": report["history"],
                        "tokens_useful": c.useful, "tokens_padded": c.padded,
                        "tokens_per_s_padded": round(c.padded / train_s, 1)}}
    result.update(rank_test(cfg, data, cell, work, args))
    if cell["pool"] == "holdout":
        result["held_out"] = held_out_models(cfg)
    (work / "result.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def rank_test(cfg: dict, data: Path, cell: dict, work: Path, args) -> dict:
    """The test: the trained PairRanker's full matrix of every prompt (bf16 autocast), its MaxLogits
    pick, and every best-of-N schedule replayed on those matrices (llmblend.ranker.select, no model
    call); the matrices are kept in <cell>/test.matrices.npz."""
    import torch

    from llmblend.ranker import aggregate, infer, select
    from llmblend.ranker.model import load_ranker

    torch.set_num_threads(args.threads)
    rc = cfg["ranker"]
    examples, prefs = test_set(cfg, data, cell, work)
    if args.test_limit:
        examples, prefs = examples[: args.test_limit], prefs[: args.test_limit]
    model, tok = load_ranker(work / "model")
    t0 = time.time()
    mats = infer.full_matrices(model, tok, [ex.source for ex in examples], [ex.texts for ex in examples],
                               max_tokens=rc["infer"]["max_tokens"], max_batch=rc["infer"]["max_batch"],
                               autocast=None if args.test_autocast == "none" else args.test_autocast)
    test_s = time.time() - t0
    aggregate.write_matrices(work / "test.matrices.npz", [ex.id for ex in examples], mats)
    seed = int(cfg["seed"])
    maxlogits = [int(np.argmax(aggregate.max_logits(m))) for m in mats]
    sel = rc.get("select") or {}
    schedules = {}
    for row in select.simulate_grid(mats, seed):
        key = row["schedule"] + ("" if row["opponents"] is None else f"-o{row['opponents']}-k{row['refine_top']}")
        key += "" if row["z"] is None else f"-z{row['z']:g}"  # race-z1
        schedules[key] = {"passes_per_prompt": row["passes_per_prompt"], "passes_pct": row["passes_pct"],
                          "top1_agreement": row["top1_agreement"],
                          **evaluate_picks(row["picks"], examples, prefs, seed)}
    n_pairs = sum(len(ex.texts) * (len(ex.texts) - 1) for ex in examples)
    anchor = {}
    if cell.get("anchor"):  # each answer by its logits against the reference, both orders: 2N passes
        t0 = time.time()
        pairs = [[p for i in range(len(ex.texts)) for p in ((i, len(ex.texts)), (len(ex.texts), i))]
                 for ex in examples]
        logits = infer.pair_logits(model, tok, [ex.source for ex in examples],
                                   [ex.texts + [ex.reference] for ex in examples], pairs,
                                   max_tokens=rc["infer"]["max_tokens"], max_batch=rc["infer"]["max_batch"],
                                   autocast="bfloat16")
        picks = [int(np.argmax(np.asarray(v[0::2]) - np.asarray(v[1::2]))) for v in logits]
        anchor = {"anchor": {"seconds": round(time.time() - t0, 1),
                             "passes_per_prompt": float(np.mean([len(p) for p in pairs])),
                             "top1_agreement": float(np.mean([a == b for a, b in zip(picks, maxlogits)])),
                             **evaluate_picks(picks, examples, prefs, seed), "picks": picks}}
    return {**anchor,"test": {"examples": len(examples), "models": len(examples[0].models), "seconds": round(test_s, 1),
                     "autocast": args.test_autocast,
                     "pairs": n_pairs, "pairs_per_s": round(n_pairs / test_s, 1),
                     "profile_schedule": f"sampled-o{sel.get('opponents', 2)}-k{sel.get('refine_top', 3)}"},
            "pairranker": evaluate_picks(maxlogits, examples, prefs, seed),
            "schedules": schedules,
            "reference_rows": reference_rows(examples, prefs, seed),
            "picks": maxlogits}


def rescore(name: str, args) -> None:
    """Rank the test again with a cell's saved model (after a change of the test procedure)."""

    cfg = load_profile(args)
    work = Path(args.out) / name
    path = work / "result.json"
    result = json.loads(path.read_text())
    old = {k: result.pop(k) for k in ("pairranker", "picks") if k in result}
    result["sampled_only_before"] = old  # the first procedure: the sampled schedule alone, no full matrix
    result.update(rank_test(cfg, ROOT / "data" / cfg["run"], parse_cell(name), work, args))
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


def precision_check(name: str, args) -> dict:
    """A finished cell's test ranked again in fp32 (no autocast) by its saved model, against the bf16
    autocast matrices of its test: MaxLogits top-1 agreement over the prompts, sign agreement over
    every ordered pair, the largest logit difference, and both times (the machine's CPU flags with
    them). Written to <cell>/fp32_check.json."""
    import torch

    from llmblend.ranker import aggregate, infer
    from llmblend.ranker.model import load_ranker

    cfg = load_profile(args)
    work = Path(args.out) / name
    torch.set_num_threads(args.threads)
    examples, _ = test_set(cfg, ROOT / "data" / cfg["run"], parse_cell(name), work)
    ids, bf16 = aggregate.read_matrices(work / "test.matrices.npz")
    if ids != [ex.id for ex in examples]:
        raise SystemExit(f"{name}: its test matrices are not of this test's prompts")
    model, tok = load_ranker(work / "model")
    rc = cfg["ranker"]["infer"]
    t0 = time.time()
    fp32 = infer.full_matrices(model, tok, [ex.source for ex in examples], [ex.texts for ex in examples],
                               max_tokens=rc["max_tokens"], max_batch=rc["max_batch"], autocast=None)
    seconds = time.time() - t0
    off = [~np.eye(len(m), dtype=bool) for m in fp32]
    same_top1 = [np.argmax(aggregate.max_logits(a)) == np.argmax(aggregate.max_logits(b)) for a, b in zip(fp32, bf16)]
    signs = np.concatenate([(np.sign(a) == np.sign(b))[o] for a, b, o in zip(fp32, bf16, off)])
    diff = max(float(np.abs(a - b)[o].max()) for a, b, o in zip(fp32, bf16, off))
    result = json.loads((work / "result.json").read_text())
    out = {"cell": name, "cpu_flags": cpu_flags(), "threads": args.threads, "prompts": len(examples),
           "pairs": int(signs.size), "fp32_seconds": round(seconds, 1), "fp32_pairs_per_s": round(signs.size / seconds, 1),
           "bf16_seconds": result["test"]["seconds"], "bf16_threads": result["threads"],
           "maxlogits_top1_agreement": float(np.mean(same_top1)), "pair_sign_agreement": float(signs.mean()),
           "max_abs_logit_diff": diff}
    (work / "fp32_check.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return out


def table(out: Path) -> str:
    from llmblend.ranker.select import DEFAULT_OPPONENTS, DEFAULT_REFINE_TOP

    sampled = f"sampled-o{DEFAULT_OPPONENTS}-k{DEFAULT_REFINE_TOP}"  # the profiles' ranker.select
    rows = ["| cell | pool | cand+src tokens | epochs | train prec. | train s | train tok/s (padded) | test | "
            f"MaxLogits GPT-Rank [95% CI] | win % | pick words | {sampled} GPT-Rank / win % / agree % | "
            "best single GPT-Rank / win % | longest | random | oracle win % |",
            "|" + "---|" * 16]
    results = sorted((json.loads(p.read_text()) for p in out.glob("*/result.json")), key=lambda r: r["cell"]["name"])
    for r in results:
        if "schedules" not in r:
            continue  # not yet ranked with the full matrix
        c, p, ref = r["cell"], r["pairranker"], r["reference_rows"]
        best_key = next(k for k in ref if k.startswith("best single ("))
        best = ref[best_key]
        smp = r["schedules"][sampled]
        pool = c["pool"] if c.get("train_models") is None else f"{c['pool']}, {c['train_models']} models"
        rows.append(
            f"| {c['name']} | {pool} | {c['candidate_max_len']}+{c['source_max_len']} | {c['epochs']} | "
            f"{c['autocast'] or 'fp32'} | {r['train']['seconds']:.0f} | {r['train']['tokens_per_s_padded']:.0f} | "
            f"{r['test']['examples']}x{r['test']['models']} | {p['gpt_rank']:.2f} [{p['gpt_rank_ci'][0]:.2f}, "
            f"{p['gpt_rank_ci'][1]:.2f}] | {p['win_rate']:.1f} | {p['pick_len_words']:.0f} | "
            f"{smp['gpt_rank']:.2f} / {smp['win_rate']:.1f} / {100 * smp['top1_agreement']:.1f} | "
            f"{best['gpt_rank']:.2f} / {best['win_rate']:.1f} ({best_key[13:-1]}) | "
            f"{ref['longest']['gpt_rank']:.2f} / {ref['longest']['win_rate']:.1f} | "
            f"{ref['random (expectation)']['gpt_rank']:.2f} / {ref['random (expectation)']['win_rate']:.1f} | "
            f"{ref['oracle']['win_rate']:.1f} |")
    anchored = [r for r in results if "anchor" in r]
    if anchored:  # `-anchor` cells: each answer ranked by its logits against the reference
        rows += ["", "| cell | against the reference: GPT-Rank [95% CI] | win % | pick words | passes per prompt | "
                 "same top-1 as MaxLogits % | test s |", "|" + "---|" * 7]
        for r in anchored:
            a = r["anchor"]
            rows.append(f"| {r['cell']['name']} | {a['gpt_rank']:.2f} [{a['gpt_rank_ci'][0]:.2f}, "
                        f"{a['gpt_rank_ci'][1]:.2f}] | {a['win_rate']:.1f} | {a['pick_len_words']:.0f} | "
                        f"{a['passes_per_prompt']:.0f} | {100 * a['top1_agreement']:.1f} | {a['seconds']:.0f} |")
    return "\n".join(rows)


def ensemble(names: list[str], args) -> str:
    """Top-1 agreement between finished cells' MaxLogits picks (and the workflow's own PairRanker,
    named `workflow`), and the pick of their average z-scored MaxLogits scores, on the test the cells
    share: the 12 ranked models, or the 8 held-out ones for `poolholdout` cells."""
    from llmblend.ranker.aggregate import max_logits, read_matrices

    cfg = load_profile(args)
    data = ROOT / "data" / cfg["run"]
    paths = {n: (data / "rankings" / "pairranker" / "test.matrices.npz" if n == "workflow"
                 else Path(args.out) / n / "test.matrices.npz") for n in names}
    mats = {n: dict(zip(*read_matrices(p))) for n, p in paths.items()}
    pools = {"holdout" if n != "workflow" and parse_cell(n)["pool"] == "holdout" else "ranked" for n in names}
    if len(pools) != 1:
        raise SystemExit(f"--ensemble: {names} rank different tests (held-out and ranked models)")
    examples, prefs = test_set(cfg, data, {"pool": "holdout" if pools == {"holdout"} else "37"}, Path(args.out))
    picks = {n: [int(np.argmax(max_logits(m[ex.id]))) for ex in examples] for n, m in mats.items()}
    lines = []
    for a_, b_ in itertools.combinations(names, 2):
        same = np.mean([x == y for x, y in zip(picks[a_], picks[b_])])
        lines.append(f"same top-1, {a_} vs {b_}: {100 * same:.1f}%")

    def z(v):
        return (v - v.mean()) / (v.std() + 1e-9)

    avg = [int(np.argmax(sum(z(max_logits(mats[n][ex.id])) for n in names))) for ex in examples]
    for n, pk in [*picks.items(), ("average of z-scored MaxLogits", avg)]:
        r = evaluate_picks(pk, examples, prefs, cfg["seed"])
        lines.append(f"{n}: GPT-Rank {r['gpt_rank']:.2f} [{r['gpt_rank_ci'][0]:.2f}, {r['gpt_rank_ci'][1]:.2f}], "
                     f"win {r['win_rate']:.1f}%, pick words {r['pick_len_words']:.0f}")
    return "\n".join(lines)


def consensus_encoder(cfg: dict, args, folder: str) -> tuple[dict, Path, Path]:
    """The consensus settings the study reads (the profile's ranker.consensus, with --consensus-encoder
    and --consensus-max-len over it), the encoder's directory, and <out>/<folder>/<encoder>-<max_len>:
    one cache folder per encoder and length, so scores of two encoders never mix."""
    from llmblend.models.resolve import resolve

    cc = dict(cfg["ranker"]["consensus"])
    cc["encoder"] = args.consensus_encoder or cc["encoder"]
    cc["max_len"] = int(args.consensus_max_len or cc["max_len"])
    encoder = resolve(cfg["models"][cc["encoder"]]["spec"] if cc["encoder"] in cfg["models"] else cc["encoder"])
    cache = Path(args.out) / folder / f"{Path(str(cc['encoder'])).name}-{cc['max_len']}"
    cache.mkdir(parents=True, exist_ok=True)
    return cc, encoder, cache


def cached_consensus(path: Path, examples, compute) -> list:
    """A split's consensus scores (`compute()` on first use), cached in `path` with the prompt ids and
    the seconds they took; a cache of other prompts is an error, not a reading."""
    ids = [ex.id for ex in examples]
    if not path.exists():
        t0 = time.time()
        scores = compute()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"seconds": round(time.time() - t0, 1), "ids": ids, "scores": scores}) + "\n")
        os.replace(tmp, path)
    cons = json.loads(path.read_text())
    if cons["ids"] != ids:
        raise SystemExit(f"{path} is not of these prompts")
    return cons["scores"]


def ensemble_consensus(names: list[str], args) -> str:
    """Several trainings' MaxLogits averaged (each z-scored per prompt), with and without the consensus
    at the profile's weight (ranker.consensus.weight), against each member alone and each member plus
    the consensus, on the splits of --consensus-splits (val and test of the 12 ranked models by
    default). These rows choose nothing: the average and the weight are fixed before the numbers are
    read. With both splits, the average + consensus is also read over --consensus's grid of weights,
    one is chosen on val by --consensus's rule (the lowest GPT-Rank, ties to the smaller weight) and
    its test row is reported: a selection and its check."""
    import torch

    from llmblend.ranker.aggregate import max_logits
    from llmblend.ranker.consensus import combined_scores, consensus_scores

    cfg = load_profile(args)
    data, out = ROOT / "data" / cfg["run"], Path(args.out)
    torch.set_num_threads(args.threads)
    cc, encoder, cache = consensus_encoder(cfg, args, "consensus")
    w = float(cc["weight"])
    lines = [f"consensus weight {w:g}; cpu flags: {cpu_flags()}",
             "| split | method | GPT-Rank [95% CI] | win % | pick words |", "|" + "---|" * 5]
    grid = {}  # split -> weight -> the average + consensus at that weight
    for split in args.consensus_splits:
        examples, prefs = split_set(cfg, data, {"pool": "37", "headtail": False}, split, cache)
        cons = cached_consensus(cache / f"ranked_{split}.json", examples, lambda: consensus_scores(
            encoder, [ex.texts for ex in examples], int(cc["max_len"])))
        ml = {n: [max_logits(m).tolist() for m in split_matrices(cfg, n, split, examples, out)] for n in names}
        rows = {}
        for n in names:
            rows[f"{n}: MaxLogits"] = ml[n]
            rows[f"{n}: + consensus"] = combined_scores([ml[n], cons], [1.0, w])
        avg = combined_scores([ml[n] for n in names], [1.0 / len(names)] * len(names))
        rows[f"average of the {len(names)}"] = avg
        rows[f"average of the {len(names)} + consensus"] = combined_scores([avg, cons], [1.0, w])
        seed = int(cfg["seed"])
        if {"val", "test"} <= set(args.consensus_splits):
            grid[split] = {v: evaluate_picks([int(np.argmax(x)) for x in combined_scores([avg, cons], [1.0, v])],
                                             examples, prefs, seed) for v in WEIGHT_GRID}
        for label, sc in rows.items():
            r = evaluate_picks([int(np.argmax(x)) for x in sc], examples, prefs, seed)
            lines.append(f"| {split} ({len(examples)}) | {label} | {r['gpt_rank']:.2f} [{r['gpt_rank_ci'][0]:.2f}, "
                         f"{r['gpt_rank_ci'][1]:.2f}] | {r['win_rate']:.1f} | {r['pick_len_words']:.0f} |")
    if {"val", "test"} <= set(grid):
        lines.append("")
        lines.append("| weight | val GPT-Rank | test GPT-Rank [95% CI] | test win % | test pick words |")
        lines.append("|" + "---|" * 5)
        for v in WEIGHT_GRID:
            t = grid["test"][v]
            lines.append(f"| {v:g} | {grid['val'][v]['gpt_rank']:.2f} | {t['gpt_rank']:.2f} [{t['gpt_rank_ci'][0]:.2f}, "
                         f"{t['gpt_rank_ci'][1]:.2f}] | {t['win_rate']:.1f} | {t['pick_len_words']:.0f} |")
        best = chosen_on_val(grid["val"])
        t = grid["test"][best]
        lines.append(f"\nthe weight val picks for the average of the {len(names)} + consensus: {best:g}; test "
                     f"{t['gpt_rank']:.2f} [{t['gpt_rank_ci'][0]:.2f}, {t['gpt_rank_ci'][1]:.2f}] / {t['win_rate']:.1f}%")
    return "\n".join(lines)


# the weights a second score is added with (the consensus's, the model prior's), read on val and test
WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


def chosen_on_val(val_rows: dict[float, dict]) -> float:
    """The study's one rule for a weight read on val: the lowest GPT-Rank, ties to the smaller weight."""
    return min(val_rows, key=lambda w: (val_rows[w]["gpt_rank"], w))


CONSENSUS_TOP_K = (2, 3, 4, 6)


def split_set(cfg: dict, data: Path, cell: dict, split: str, work: Path):
    """(examples, preferences) of a split's prompts over the models the cell ranks at test: the
    profile's 12 (`test`: their candidates; `val`: their answers in the training pool's records), or
    the 8 held-out ones for `poolholdout` cells."""
    from llmblend.data.sources.alpaca_eval import norm_instruction
    from llmblend.judge.backends import ReplayJudge
    from llmblend.ranker.data import load_examples

    if split == "test":
        return test_set(cfg, data, cell, work)
    ranked = ({g["name"] for g in cfg["generate"]["generators"]} if cell["pool"] != "holdout"
              else set(held_out_models(cfg)))
    path = work / f"{split}_{'heldout' if cell['pool'] == 'holdout' else 'ranked'}.jsonl"
    filter_records(data / "ranker_pool" / f"{split}.jsonl", path, ranked)
    examples = load_examples(path)
    records = [json.loads(line) for line in open(path, encoding="utf-8")]
    judge = ReplayJudge(cfg, split, records)
    prefs = [[judge.prefs.get(norm_instruction(r["instruction"]), {}).get(m) for m in ex.models]
             for r, ex in zip(records, examples)]
    return examples, prefs


def consensus_study(names: list[str], args) -> str:
    """Finished cells' MaxLogits + consensus (the product's pairranker-consensus: z-scored MaxLogits
    plus weight x z-scored consensus, llmblend.ranker.consensus) over a grid of weights, on the val
    prompts (the cell's model ranks them here, kept in <cell>/val.matrices.npz) and on the test: a
    weight is chosen on val, never on test. The consensus alone is the weight-infinity row. The
    consensus scores (the profile's ranker.consensus encoder and length, or --consensus-encoder and
    --consensus-max-len) are cached in <out>/consensus/<encoder>-<max_len>/."""
    import torch

    from llmblend.ranker import aggregate
    from llmblend.ranker.consensus import combined_scores, consensus_scores

    cfg = load_profile(args)
    data = ROOT / "data" / cfg["run"]
    torch.set_num_threads(args.threads)
    cc, encoder, cache = consensus_encoder(cfg, args, "consensus")
    lines = [f"consensus encoder {cc['encoder']}, {cc['max_len']} tokens per answer; cpu flags: {cpu_flags()}",
             "| cell | split | weight | GPT-Rank [95% CI] | win % | pick words |", "|" + "---|" * 6]
    seed = int(cfg["seed"])
    for name in names:
        cell, work = parse_cell(name), Path(args.out) / name
        out = {}
        for split in args.consensus_splits:
            examples, prefs = split_set(cfg, data, cell, split, cache)
            tag = f"{'heldout' if cell['pool'] == 'holdout' else 'ranked'}_{split}"
            cons = cached_consensus(cache / f"{tag}.json", examples, lambda: consensus_scores(
                encoder, [ex.texts for ex in examples], int(cc["max_len"])))
            mats = split_matrices(cfg, name, split, examples, Path(args.out))
            ml = [aggregate.max_logits(m).tolist() for m in mats]
            rows = {}
            for w in WEIGHT_GRID:
                picks = [int(np.argmax(s)) for s in combined_scores([ml, cons], [1.0, w])]
                rows[str(w)] = evaluate_picks(picks, examples, prefs, seed)
            rows["consensus alone"] = evaluate_picks([int(np.argmax(s)) for s in cons], examples, prefs, seed)
            # the hard variant of the sum: the best consensus among MaxLogits' top k
            for k in CONSENSUS_TOP_K:
                picks = []
                for m, c in zip(ml, cons):
                    top = np.argsort(-np.asarray(m), kind="stable")[:k]
                    picks.append(int(top[np.argmax(np.asarray(c)[top])]))
                rows[f"consensus among MaxLogits' top {k}"] = evaluate_picks(picks, examples, prefs, seed)
            refs = reference_rows(examples, prefs, seed)
            out[split] = {"prompts": len(examples), "weights": rows, "reference": refs}
            for label, r in refs.items():
                ci = f" [{r['gpt_rank_ci'][0]:.2f}, {r['gpt_rank_ci'][1]:.2f}]" if "gpt_rank_ci" in r else ""
                lines.append(f"| {name} | {split} ({len(examples)}) | {label} | {r['gpt_rank']:.2f}{ci} | "
                             f"{r['win_rate']:.1f} | {r['pick_len_words']:.0f} |")
            for w, r in rows.items():
                lines.append(f"| {name} | {split} ({len(examples)}) | {w} | {r['gpt_rank']:.2f} [{r['gpt_rank_ci'][0]:.2f}, "
                             f"{r['gpt_rank_ci'][1]:.2f}] | {r['win_rate']:.1f} | {r['pick_len_words']:.0f} |")
        if "val" in out and "test" in out:
            best = chosen_on_val({w: out["val"]["weights"][str(w)] for w in WEIGHT_GRID})
            out["weight_by_val"] = best
            lines.append(f"| {name} | the weight val picks: {best} | | test {out['test']['weights'][str(best)]['gpt_rank']:.2f} | "
                         f"{out['test']['weights'][str(best)]['win_rate']:.1f} | |")
        out["encoder"], out["max_len"] = cc["encoder"], cc["max_len"]
        # one split: a file apart from the full study's
        suffix = "" if {"val", "test"} <= set(args.consensus_splits) else "-" + args.consensus_splits[0]
        (work / f"consensus-{cache.name}{suffix}.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return "\n".join(lines)


def model_prior(examples, scores) -> dict[str, float]:
    """Each model's mean z-scored score over the prompts that have its answer: the ranker's own view of
    which LLM is better overall, from no label (what a user ranking new LLMs on many prompts has)."""
    from llmblend.ranker.consensus import zscore

    per_model: dict[str, list[float]] = {}
    for ex, s in zip(examples, scores):
        for m, v in zip(ex.models, zscore(s)):
            per_model.setdefault(m, []).append(float(v))
    return {m: float(np.mean(v)) for m, v in per_model.items()}


def prior_picks(examples, scores, prior: dict[str, float], weight: float | None) -> list[int]:
    """The pick of z-scored scores + weight x the answer's model's prior (model_prior of these scores);
    weight None: the prior alone (every prompt gets the answer of the model with the best mean, ties to
    the first)."""
    from llmblend.ranker.consensus import zscore

    picks = []
    for ex, s in zip(examples, scores):
        p = np.array([prior[m] for m in ex.models])
        picks.append(int(np.argmax(p if weight is None else zscore(s) + weight * p)))
    return picks


def model_prior_study(names: list[str], args) -> str:
    """Finished cells' MaxLogits + weight x the model prior (model_prior, computed on the split's own
    prompts) over WEIGHT_GRID and the prior alone (weight infinity), on --consensus-splits (val: the
    cell's model ranks val here, kept in <cell>/val.matrices.npz); with val and test, a weight is
    chosen on val (lowest GPT-Rank, ties to the smaller) and read on test. Also the Spearman
    correlation, over the ranked models, of the prior with each model's win rate against
    text-davinci-003 on that split: whether the ranker knows which LLM is better overall."""
    import pandas as pd
    import torch

    from llmblend.ranker import aggregate

    cfg = load_profile(args)
    data = ROOT / "data" / cfg["run"]
    torch.set_num_threads(args.threads)
    cache = Path(args.out) / "model-prior"  # the splits' candidate files, shared by the cells
    cache.mkdir(parents=True, exist_ok=True)
    seed = int(cfg["seed"])
    lines = [f"cpu flags: {cpu_flags()}",
             "| cell | split | weight | GPT-Rank [95% CI] | win % | pick words |", "|" + "---|" * 6]
    for name in names:
        cell, work = parse_cell(name), Path(args.out) / name
        out = {}
        for split in args.consensus_splits:
            examples, prefs = split_set(cfg, data, cell, split, cache)
            ml = [aggregate.max_logits(m) for m in split_matrices(cfg, name, split, examples, Path(args.out))]
            prior = model_prior(examples, ml)
            rows = {str(w): evaluate_picks(prior_picks(examples, ml, prior, w), examples, prefs, seed)
                    for w in WEIGHT_GRID}
            rows["prior alone"] = evaluate_picks(prior_picks(examples, ml, prior, None), examples, prefs, seed)
            win = {m: float(np.nanmean([np.nan if p[ex.models.index(m)] is None else WIN_VALUE[p[ex.models.index(m)]]
                                        for ex, p in zip(examples, prefs) if m in ex.models])) for m in prior}
            models = sorted(prior)
            rho = float(pd.Series([prior[m] for m in models]).corr(pd.Series([win[m] for m in models]),
                                                                   method="spearman"))
            out[split] = {"prompts": len(examples), "weights": rows, "prior": prior, "win_rate": win,
                          "spearman_prior_win": rho}
            for w, r in rows.items():
                lines.append(f"| {name} | {split} ({len(examples)}) | {w} | {r['gpt_rank']:.2f} [{r['gpt_rank_ci'][0]:.2f}, "
                             f"{r['gpt_rank_ci'][1]:.2f}] | {r['win_rate']:.1f} | {r['pick_len_words']:.0f} |")
            top = max(prior, key=prior.get)
            lines.append(f"| {name} | {split} ({len(examples)}) | Spearman(prior, win rate) over {len(models)} models: "
                         f"{rho:.2f}; the prior's best model {top} (win {100 * win[top]:.1f}%), the best by win rate "
                         f"{max(win, key=win.get)} ({100 * max(win.values()):.1f}%) | | | |")
        if "val" in out and "test" in out:
            best = chosen_on_val({w: out["val"]["weights"][str(w)] for w in WEIGHT_GRID})
            out["weight_by_val"] = best
            t = out["test"]["weights"][str(best)]
            lines.append(f"| {name} | the weight val picks: {best:g} | | test {t['gpt_rank']:.2f} | {t['win_rate']:.1f} | |")
        suffix = "" if {"val", "test"} <= set(args.consensus_splits) else "-" + args.consensus_splits[0]
        (work / f"model-prior{suffix}.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return "\n".join(lines)


VERDICT_LEVELS = (1.0, 1.5, 2.0)  # GPT-4's preference against the reference: lost, tied, won
# the pairs a reading counts: all, or those whose better answer is the longer / the shorter in words
LENGTH_SIDES = ("all", "longer", "shorter")


def verdict_outcomes(prefs: list) -> np.ndarray:
    """One prompt's judge outcomes (1, k, k; llmblend.analysis.judged's codes) from its answers' GPT-4
    verdicts against the reference, every pair labelled as the replay judge labels it
    (alpaca_pair_label: won > tied > lost); a missing verdict leaves its pairs unjudged."""
    from llmblend.analysis.judged import fill_outcomes

    out = np.zeros((1, len(prefs), len(prefs)), dtype=np.int8)
    fill_outcomes(out[0], verdict_labels(prefs), {str(i): i for i in range(len(prefs))}, {})
    return out


def pairs_right(outcomes: list[np.ndarray], words: list, scores: list) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per prompt, how many of the pairs GPT-4 orders the scores (higher is better) put the same way
    round, and how many there are: all, and split by the better answer's length (the evaluate stage's
    judged.ordered_pairs, one prompt at a time)."""
    from llmblend.analysis.judged import ordered_pairs, ranks_from_scores

    per = [ordered_pairs(o, ranks_from_scores(np.asarray(s, float))[None], np.ones(len(s), bool),
                         np.asarray(w, float)[None]) for o, w, s in zip(outcomes, words, scores)]
    return {side: (np.array([p[side][0][0] for p in per]), np.array([p[side][1][0] for p in per]))
            for side in LENGTH_SIDES}


def pair_accuracy(right: np.ndarray, n: np.ndarray, idx: np.ndarray) -> tuple[float, list[float]]:
    """The share of all judged pairs ordered right, with a 95% CI from resampling whole prompts
    (idx: bootstrap_indices over the prompts)."""
    from llmblend.analysis.stats import ratio_ci

    return float(right.sum() / n.sum()), list(ratio_ci(right, n, idx, 0.95))


def paired_difference(right: np.ndarray, base: np.ndarray, n: np.ndarray, idx: np.ndarray) -> tuple[float, list[float]]:
    """The pair accuracy of one reading minus another's on the same pairs, with a 95% CI from the same
    prompt resamples for both (paired: what the two share cancels)."""
    from llmblend.analysis.stats import ratio_ci

    return float((right.sum() - base.sum()) / n.sum()), list(ratio_ci(right, n, idx, 0.95, base=base))


def pair_accuracy_study(names: list[str], args) -> str:
    """How often each finished cell's scores order two answers of a test prompt as GPT-4's verdicts
    against the reference do, over every such pair (verdict_outcomes): a reading of the whole ranking,
    not of its top-1 alone, so it moves less with the 200 prompts' luck than the pick's GPT-Rank does.
    Per cell: MaxLogits' scores, and MaxLogits + consensus at the profile's weight; per ranked set (the
    12, or the 8 held-out models): the consensus alone, the longer answer, and each answer's model
    ordered by its win rate on these prompts (it reads the test labels: what knowing which LLM is
    better would give). Each reading is also given on the pairs whose better answer is the longer and
    on those where it is the shorter: a ranker that learned only length is right on the first and
    wrong on the second. The counting is the evaluate stage's (tables/pair_order). CIs resample
    prompts; each cell after the first of its ranked set also gets its difference from that first
    cell on all pairs, on the same resamples (paired)."""
    from llmblend.analysis.stats import bootstrap_indices
    from llmblend.ranker import aggregate
    from llmblend.ranker.baselines import word_count
    from llmblend.ranker.consensus import combined_scores, consensus_scores

    cfg = load_profile(args)
    data = ROOT / "data" / cfg["run"]
    cc, encoder, cache = consensus_encoder(cfg, args, "consensus")
    w = float(cc["weight"])
    seed = int(cfg["seed"])
    sets: dict[str, dict] = {}  # "ranked" / "heldout" -> outcomes, words, pair counts, bootstrap draws, first cell, rows

    def read(st: dict, scores: list) -> dict:
        """Per side: (accuracy, CI, per-prompt rights) of one reading (per-prompt scores)."""
        counts = pairs_right(st["outcomes"], st["words"], scores)
        return {side: (*pair_accuracy(right, n, st["idx"]), right) for side, (right, n) in counts.items()}

    def cells_line(label: str, name: str, what: str, r: dict, against: str = "") -> str:
        return (f"| {label} | {name} | {what} | " + " | ".join(
            f"{100 * r[s][0]:.1f} [{100 * r[s][1][0]:.1f}, {100 * r[s][1][1]:.1f}]" for s in LENGTH_SIDES) + f" | {against} |")

    lines = [f"pairs whose GPT-4 verdicts differ, test prompts; consensus weight {w:g}; 95% CIs resample prompts",
             "| ranked models | cell | scores | all pairs, % right [95% CI] | the better answer is the longer | "
             "the better answer is the shorter | all pairs against the set's first cell, points [95% CI] |",
             "|" + "---|" * 7]
    for name in names:
        cell = {"pool": "37", "headtail": False} if name == "workflow" else parse_cell(name)
        kind = "heldout" if cell["pool"] == "holdout" else "ranked"
        if kind not in sets:
            examples, prefs = split_set(cfg, data, cell, "test", cache)
            words = [[word_count(t) for t in ex.texts] for ex in examples]
            outcomes = [verdict_outcomes(p) for p in prefs]
            n = {side: c[1] for side, c in pairs_right(outcomes, words, words).items()}
            cons = cached_consensus(cache / f"{kind}_test.json", examples, lambda: consensus_scores(
                encoder, [ex.texts for ex in examples], int(cc["max_len"])))
            win: dict[str, list[float]] = {}
            for ex, p in zip(examples, prefs):
                for m, v in zip(ex.models, p):
                    win.setdefault(m, []).append(np.nan if v is None else WIN_VALUE[v])
            rate = {m: float(np.nanmean(v)) for m, v in win.items()}
            label = (f"{'the 12' if kind == 'ranked' else f'held-out {len(rate)}'} ({len(examples)} prompts, "
                     f"{int(n['all'].sum())} pairs: {int(n['longer'].sum())} longer better, "
                     f"{int(n['shorter'].sum())} shorter better)")
            st = sets[kind] = {"examples": examples, "outcomes": outcomes, "words": words, "label": label,
                               "n": n, "first": None, "idx": bootstrap_indices(len(examples), 1000, seed),
                               "cons": cons, "rows": {}}
            refs = {"consensus alone": cons, "the longer answer": words,
                    "the model's win rate on these prompts (reads the labels)": [[rate[m] for m in ex.models]
                                                                                 for ex in examples]}
            for ref, sc in refs.items():
                r = read(st, sc)
                st["rows"][ref] = {side: {"accuracy": r[side][0], "ci": r[side][1]} for side in LENGTH_SIDES}
                lines.append(cells_line(label, "-", ref, r))
        st = sets[kind]
        ml = [aggregate.max_logits(m).tolist()
              for m in split_matrices(cfg, name, "test", st["examples"], Path(args.out))]
        out, rights = {}, {}
        for what, scores in {"MaxLogits": ml, "MaxLogits + consensus": combined_scores([ml, st["cons"]], [1.0, w])}.items():
            r = read(st, scores)
            rights[what] = r["all"][2]
            out[what] = {side: {"accuracy": r[side][0], "ci": r[side][1]} for side in LENGTH_SIDES}
            against = ""
            if st["first"] is not None:
                first = st["first"][0]
                delta, (lo, hi) = paired_difference(r["all"][2], st["first"][1][what], st["n"]["all"], st["idx"])
                out[what]["against"] = {"cell": first, "points": 100 * delta, "ci": [100 * lo, 100 * hi]}
                against = f"{100 * delta:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] vs {first}"
            lines.append(cells_line(st["label"], name, what, r, against))
        if st["first"] is None:
            st["first"] = (name, rights)
        st["rows"][name] = out
    for kind, st in sets.items():
        path = Path(args.out) / f"pair-accuracy-{kind}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"label": st["label"], "rows": st["rows"]}, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    return "\n".join(lines)


NOISE_SCALES = (0.0, 0.25, 0.5, 0.75, 1.0)
NOISE_SIMS = 400
NOISE_BOOT = 200


def pool_verdicts(cfg: dict) -> dict[str, list[tuple[str, float]]]:
    """Every judged answer of the training pool's models (ranker.train_generators) to every prompt
    of the mirror's annotation files: prompt -> [(answer text, GPT-4's verdict)]."""
    from llmblend.data.fetch import fetch
    from llmblend.data.sources.alpaca_eval import annotation_url, norm_instruction
    from llmblend.io import read_json

    spec = next(s for s in cfg["data"]["sources"] if s["type"] == "alpaca_eval")
    mirror = os.environ.get("LLMBLEND_MIRROR") or cfg.get("mirror")
    prompts: dict[str, list[tuple[str, float]]] = {}
    for model in cfg["ranker"]["train_generators"]:
        for row in read_json(fetch(annotation_url(spec, model), mirror)):
            if row.get("preference") in VERDICT_LEVELS:
                prompts.setdefault(norm_instruction(row["instruction"]), []).append(
                    (row["output_2"].strip(), float(row["preference"])))
    return prompts


def identical_answer_verdicts(prompts: dict) -> dict[tuple[str, str], list[float]]:
    """(prompt, text) -> GPT-4's verdicts, for each answer text judged two or more times on a prompt."""
    groups: dict[tuple[str, str], list[float]] = {}
    for prompt, answers in prompts.items():
        for text, verdict in answers:
            groups.setdefault((prompt, text), []).append(verdict)
    return {k: v for k, v in groups.items() if len(v) > 1}


def near_identical_agreement(prompts: dict, min_jaccard: float = 0.8, min_words: int = 100) -> tuple[int, int]:
    """(pairs with the same verdict, pairs) over two different answer texts to one prompt that are nearly
    the same (Jaccard of their lower-cased word 3-grams >= min_jaccard), the first of min_words or more."""
    from llmblend.ranker.baselines import word_count

    same = n = 0
    for answers in prompts.values():
        grams = []
        for text, _ in answers:
            w = text.lower().split()
            grams.append(set(zip(w, w[1:], w[2:])))
        for (i, (ti, vi)), (j, (tj, vj)) in itertools.combinations(enumerate(answers), 2):
            a, b = grams[i], grams[j]
            if ti != tj and a and b and word_count(ti) >= min_words and len(a & b) >= min_jaccard * len(a | b):
                n += 1
                same += vi == vj
    return same, n


def rejudge_matrix(groups: list[list[float]]) -> np.ndarray:
    """P[a, b]: the chance that a text judged at level a is judged b when judged again, from every
    ordered pair of judgments of one text (symmetric counts; a level never seen keeps itself)."""
    n = len(VERDICT_LEVELS)
    counts = np.zeros((n, n))
    for v in groups:
        idx = [VERDICT_LEVELS.index(x) for x in v]
        for i, a in enumerate(idx):
            for j, b in enumerate(idx):
                if i != j:
                    counts[a, b] += 1
    rows = counts.sum(1, keepdims=True)
    return np.where(rows > 0, counts / np.maximum(rows, 1), np.eye(n))


def judge_again(prefs, P: np.ndarray, sims: int, rng) -> tuple[float, float]:
    """Mean GPT-Rank and win rate (against the recorded verdicts) of a pick made by the judge asked
    once more: each answer's recorded verdict redrawn through P, one of the answers at the best
    redrawn level picked at random (GPT-Rank's scores order answers by level), `sims` draws."""
    gr, win = [], []
    for p in prefs:
        known = [v for v in p if v is not None]
        lv = np.array([VERDICT_LEVELS.index(v) for v in known])
        scores = np.array(gpt_rank_scores(known))
        ranks = np.array([1 + np.sum(scores > x) for x in scores], float)
        wins = np.array([WIN_VALUE[v] for v in known])
        u = rng.random((sims, len(lv)))
        cdf = np.cumsum(P[lv], axis=1)[None]
        redrawn = np.minimum((u[..., None] > cdf).sum(-1), len(VERDICT_LEVELS) - 1)  # inverse-CDF draw
        top = redrawn == redrawn.max(1, keepdims=True)
        share = top / top.sum(1, keepdims=True)  # a uniform pick among the best: its expectation
        gr.append(share @ ranks)
        win.append(share @ wins)
    return float(np.mean(gr)), float(np.mean(win) * 100)


def judge_noise_study(args) -> str:
    """How far do the labels' own noise limit a ranker? GPT-4 judged some answer texts more than once
    (models whose answers coincide on a prompt); how often it repeats its verdict measures that noise,
    overall and by the text's length (most such texts are short). A pick made by the judge itself
    asked again (each recorded verdict redrawn through the measured matrix) is then scored against
    the recorded verdicts, on the test prompts, for the profile's 12 and for the held-out 8. `scale`
    s blends the measured redraw matrix with no noise ((1 - s) I + s P), so the agreement at which a
    target comes within the judge's reach can be read off; the 95% interval at s = 1 bootstraps the
    texts judged again."""
    from scipy.stats import binomtest

    from llmblend.ranker.baselines import word_count

    cfg = load_profile(args)
    data = ROOT / "data" / cfg["run"]
    (Path(args.out) / "judge_noise").mkdir(parents=True, exist_ok=True)
    prompts = pool_verdicts(cfg)
    texts = identical_answer_verdicts(prompts)  # (prompt, text) -> verdicts
    groups = list(texts.values())
    P = rejudge_matrix(groups)

    def agreement(vs):  # (pairs of judgments of one text with the same verdict, pairs)
        return (sum(a == b for v in vs for i, a in enumerate(v) for j, b in enumerate(v) if i < j),
                sum(len(v) * (len(v) - 1) // 2 for v in vs))

    same, pairs = agreement(groups)
    lines = [f"{len(groups)} answer texts judged more than once ({sum(map(len, groups))} judgments, median "
             f"{np.median([word_count(t) for _, t in texts]):.0f} words); the same verdict in {same / pairs:.1%} "
             f"of {pairs} pairs of judgments"]
    out = {"texts": len(groups), "agreement": same / pairs, "redraw": P.tolist(), "by_length": {}, "rows": []}
    for band, keep in (("under 100 words", lambda n: n < 100), ("100 words or more", lambda n: n >= 100)):
        k, n = agreement([v for (_, t), v in texts.items() if keep(word_count(t))])
        if n:
            ci = binomtest(k, n).proportion_ci()  # Clopper-Pearson
            out["by_length"][band] = {"same": k, "pairs": n, "ci": [ci.low, ci.high]}
            lines.append(f"  {band}: {k} of {n} pairs the same ({k / n:.1%}, 95% CI [{ci.low:.1%}, {ci.high:.1%}])")
    k, n = near_identical_agreement(prompts)
    ci = binomtest(k, n).proportion_ci() if n else None
    out["near_identical_100_words"] = {"same": k, "pairs": n, "ci": [ci.low, ci.high] if ci else None}
    lines.append(f"  nearly the same texts (word 3-gram Jaccard >= 0.8), 100 words or more: {k} of {n} pairs the same"
                 + (f" (95% CI [{ci.low:.1%}, {ci.high:.1%}])" if ci else ""))
    lines += ["redraw matrix (rows: recorded lost / tied / won; columns: judged again): "
              + "; ".join(" ".join(f"{x:.3f}" for x in row) for row in P),
              "| models at test | scale | agreement | judge-again pick: GPT-Rank | win % |", "|" + "---|" * 5]
    for cellname in ("len48-src32-pool37-e2", "len48-src32-poolholdout-e2"):
        cell = parse_cell(cellname)
        examples, prefs = split_set(cfg, data, cell, "test", Path(args.out) / "judge_noise")
        label = "held-out 8" if cell["pool"] == "holdout" else f"the {len(examples[0].models)}"
        for s in NOISE_SCALES:
            Ps = (1 - s) * np.eye(len(VERDICT_LEVELS)) + s * P
            gr, win = judge_again(prefs, Ps, NOISE_SIMS, np.random.default_rng(int(cfg["seed"])))
            agree = 1 - s * (1 - same / pairs)
            row = {"models": label, "scale": s, "agreement": agree, "gpt_rank": gr, "win_rate": win}
            if s == 1.0:  # bootstrap the texts judged again: the redraw matrix's own uncertainty
                rng = np.random.default_rng(int(cfg["seed"]))
                boot = [judge_again(prefs, rejudge_matrix([groups[i] for i in rng.integers(0, len(groups),
                                                                                             len(groups))]),
                                    20, rng) for _ in range(NOISE_BOOT)]
                row["gpt_rank_ci"] = np.percentile([b[0] for b in boot], [2.5, 97.5]).tolist()
                row["win_rate_ci"] = np.percentile([b[1] for b in boot], [2.5, 97.5]).tolist()
            out["rows"].append(row)
            ci = (f" [{row['gpt_rank_ci'][0]:.2f}, {row['gpt_rank_ci'][1]:.2f}]" if "gpt_rank_ci" in row else "")
            wci = (f" [{row['win_rate_ci'][0]:.1f}, {row['win_rate_ci'][1]:.1f}]" if "win_rate_ci" in row else "")
            lines.append(f"| {label} | {s:g} | {agree:.1%} | {gr:.2f}{ci} | {win:.1f}{wci} |")
    path = Path(args.out) / "judge_noise" / "result.json"
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return "\n".join(lines)


PROBE_C = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.1, 1.0)
PROBE_WEIGHTS = (0.0, 0.5, 1.0, 2.0)
PROBE_PAIRS = 100


def ranker_dir(cfg: dict, name: str, out: Path) -> Path:
    """The trained PairRanker of a finished cell, or the workflow's own (`workflow`)."""
    if name == "workflow":
        return ROOT / "data" / cfg["run"] / "rankers" / "pairranker" / "model"
    return out / name / "model"


def split_matrices(cfg: dict, name: str, split: str, examples, out: Path) -> list:
    """A ranker's full comparison matrices of a split's prompts (MaxLogits needs all of them): the
    workflow's own test matrices, else <out>/<name>/<split>.matrices.npz (<out>/workflow/ for the
    workflow's PairRanker on val), computed with the ranker on first use (bf16 autocast)."""
    from llmblend.ranker import aggregate, infer
    from llmblend.ranker.model import load_ranker

    if name == "workflow" and split == "test":
        path = ROOT / "data" / cfg["run"] / "rankings" / "pairranker" / "test.matrices.npz"
    else:
        path = out / name / f"{split}.matrices.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        model, tok = load_ranker(ranker_dir(cfg, name, out))
        rc = cfg["ranker"]["infer"]
        cell = {"headtail": False} if name == "workflow" else parse_cell(name)
        mats = with_cut(cell, lambda: infer.full_matrices(
            model, tok, [ex.source for ex in examples], [ex.texts for ex in examples],
            max_tokens=rc["max_tokens"], max_batch=rc["max_batch"], autocast="bfloat16"))
        aggregate.write_matrices(path, [ex.id for ex in examples], mats)
    ids, mats = aggregate.read_matrices(path)
    if ids != [ex.id for ex in examples]:
        raise SystemExit(f"{name}: {path} is not of this {split} split's prompts")
    return mats


def embed_cached(load_encoder, texts: list[str], path: Path) -> np.ndarray:
    """Unit-norm sentence embeddings of `texts` by `load_encoder()` (a SentenceTransformer with its
    max_seq_length set), cached in `path` with a digest of the texts, so a cache of other texts is
    never read."""
    import hashlib

    digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()
    if path.exists():
        z = np.load(path)
        if str(z["digest"]) == digest:
            return z["emb"]
    emb = load_encoder().encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=True).astype(np.float32)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, emb=emb, digest=np.array(digest))
    os.replace(tmp, path)
    return emb


def probe_features(src_emb: np.ndarray, ans_emb: np.ndarray, words: np.ndarray) -> np.ndarray:
    """One row per (prompt, answer): the answer's embedding, its elementwise product with the prompt's
    (what of the answer matches what was asked) and log(1 + words)."""
    return np.hstack([ans_emb, src_emb * ans_emb, np.log1p(words)[:, None]])


def probe_study(names: list[str], args) -> str:
    """A pointwise probe beside the PairRanker: logistic regression on frozen sentence embeddings of
    (prompt, answer) predicting the answer's GPT-4 verdict against the reference, trained on every
    judged answer of the training pool's train prompts (37 models x 505 prompts; the `holdout` variant
    on the 29 models left after holding out 8), its regularisation C chosen by log loss on the val
    prompts' judged answers. It reads each answer's first ranker.consensus.max_len tokens with the
    consensus's encoder, and learns from all ~18,700 verdicts where the PairRanker reads 5-10 sampled
    pairs per prompt and epoch. Then, on val (weights chosen) and test (reported): the probe alone, the
    probe + consensus, and z(MaxLogits) + a x z(consensus) + b x z(probe) for each named ranker cell
    (`workflow`: the workflow's own PairRanker); on the 8 held-out models the probe of the `holdout`
    variant, alone and with the consensus (no ranker trained without them is named here)."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    from llmblend.data.sources.alpaca_eval import norm_instruction
    from llmblend.judge.backends import ReplayJudge
    from llmblend.ranker import aggregate
    from llmblend.ranker.baselines import word_count
    from llmblend.ranker.consensus import combined_scores, mean_similarity
    from llmblend.ranker.data import load_examples

    cfg = load_profile(args)
    data = ROOT / "data" / cfg["run"]
    torch.set_num_threads(args.threads)
    cc, encoder, cache = consensus_encoder(cfg, args, "probe")
    max_len, seed = cc["max_len"], int(cfg["seed"])
    held = set(held_out_models(cfg))

    @functools.cache
    def load_encoder():  # once per study, and only when an embedding is not cached
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(encoder), device="cpu")
        model.max_seq_length = max_len
        return model

    @functools.cache
    def pool_rows(split: str):
        """Features, verdict targets (win 1, tie 0.5, loss 0), prompt index and model of every judged
        answer of the pool's split (read and embedded once per study), and the count without a verdict."""
        path = cache / f"pool_{split}.jsonl"
        filter_records(data / "ranker_pool" / f"{split}.jsonl", path, set(cfg["ranker"]["train_generators"]))
        examples = load_examples(path)
        records = [json.loads(line) for line in open(path, encoding="utf-8")]
        judge = ReplayJudge(cfg, split, records)
        src = embed_cached(load_encoder, [ex.source for ex in examples], cache / f"pool_{split}_src.npz")
        ans = embed_cached(load_encoder, [t for ex in examples for t in ex.texts],
                           cache / f"pool_{split}_ans.npz")
        rows, unjudged, start = [], Counter(), 0
        for e, (rec, ex) in enumerate(zip(records, examples)):
            p = judge.prefs.get(norm_instruction(rec["instruction"]), {})
            for k, (m, t) in enumerate(zip(ex.models, ex.texts)):
                if p.get(m) is None:
                    unjudged[m] += 1
                else:
                    rows.append((e, start + k, word_count(t), p[m] - 1.0, m))
            start += len(ex.texts)
        e_idx, a_idx, words, ys, models = (np.asarray(c) for c in zip(*rows))
        return (probe_features(src[e_idx], ans[a_idx], words.astype(float)), ys.astype(float), e_idx, models,
                unjudged)

    def judged_rows(split: str, keep: set[str]):
        """pool_rows of the models in `keep`: features, targets, prompt index, answers left out."""
        x, y, prompt, models, unjudged = pool_rows(split)
        mask = np.isin(models, sorted(keep))
        return x[mask], y[mask], prompt[mask], sum(n for m, n in unjudged.items() if m in keep)

    def pair_rows(x: np.ndarray, y: np.ndarray, prompt: np.ndarray, per_prompt: int, rng: np.random.Generator):
        """Differences of two answers' features of the same prompt whose verdicts differ (at most
        per_prompt pairs per prompt, drawn with the seed), both orders: label 1 when the first is better."""
        d = []
        for e in np.unique(prompt):
            idx = np.flatnonzero(prompt == e)
            pairs = [(i, j) for i, j in itertools.combinations(idx, 2) if y[i] != y[j]]
            for k in rng.permutation(len(pairs))[:per_prompt]:
                i, j = pairs[k]
                d.append((i, j) if y[i] > y[j] else (j, i))
        win, lose = (np.asarray(c) for c in zip(*d))
        xd = x[win] - x[lose]
        return np.vstack([xd, -xd]), np.concatenate([np.ones(len(xd)), np.zeros(len(xd))])

    def fit(keep: set[str], tag: str, target: str):
        xtr, ytr, ptr, dropped_tr = judged_rows("train", keep)
        xva, yva, pva, dropped_va = judged_rows("val", keep)
        scaler = StandardScaler().fit(xtr)
        xtr_s, xva_s = scaler.transform(xtr), scaler.transform(xva)
        if target == "pairs":  # the order within a prompt, not the verdict: what picking the best needs
            rng = np.random.default_rng(seed)
            xp, yp = pair_rows(xtr_s, ytr, ptr, PROBE_PAIRS, rng)
            xpv, ypv = pair_rows(xva_s, yva, pva, PROBE_PAIRS, rng)
            losses = {c: log_loss(ypv, LogisticRegression(C=c, fit_intercept=False, max_iter=3000)
                                  .fit(xp, yp).predict_proba(xpv)[:, 1]) for c in PROBE_C}
            best_c = min(PROBE_C, key=lambda c: (losses[c], c))
            clf = LogisticRegression(C=best_c, fit_intercept=False, max_iter=3000).fit(xp, yp)
            line = (f"probe `{tag}`, pairs: {len(yp) // 2} train pairs of answers with different verdicts (at most "
                    f"{PROBE_PAIRS} per prompt), {len(ypv) // 2} val pairs; val log loss by C " +
                    ", ".join(f"{c:g}: {v:.4f}" for c, v in losses.items()) + f"; C = {best_c:g}")
            return (lambda x: clf.decision_function(scaler.transform(x))), line
        # a tie (0.5) counts half a win and half a loss: each row twice, weighted
        x2 = np.vstack([xtr_s, xtr_s])
        y2 = np.concatenate([np.ones(len(ytr)), np.zeros(len(ytr))])
        w2 = np.concatenate([ytr, 1.0 - ytr])
        losses = {}
        for c in PROBE_C:
            clf = LogisticRegression(C=c, max_iter=3000).fit(x2, y2, sample_weight=w2)
            pv = clf.predict_proba(xva_s)[:, 1]
            losses[c] = log_loss(np.concatenate([np.ones(len(yva)), np.zeros(len(yva))]), np.concatenate([pv, pv]),
                                 sample_weight=np.concatenate([yva, 1.0 - yva]))
        best_c = min(PROBE_C, key=lambda c: (losses[c], c))
        clf = LogisticRegression(C=best_c, max_iter=3000).fit(x2, y2, sample_weight=w2)
        line = (f"probe `{tag}`, verdicts: {len(ytr)} train answers ({dropped_tr} without a verdict, left out), {len(yva)} val "
                f"answers ({dropped_va} left out); val log loss by C " +
                ", ".join(f"{c:g}: {v:.4f}" for c, v in losses.items()) + f"; C = {best_c:g}")
        return (lambda x: clf.decision_function(scaler.transform(x))), line

    def split_scores(probe, cell: dict, split: str, tag: str):
        examples, prefs = split_set(cfg, data, cell, split, cache)
        src = embed_cached(load_encoder, [ex.source for ex in examples], cache / f"{tag}_{split}_src.npz")
        ans = embed_cached(load_encoder, [t for ex in examples for t in ex.texts],
                           cache / f"{tag}_{split}_ans.npz")
        e_idx = np.repeat(np.arange(len(examples)), [len(ex.texts) for ex in examples])
        words = np.asarray([word_count(t) for ex in examples for t in ex.texts], float)
        flat = probe(probe_features(src[e_idx], ans, words))
        bounds = np.cumsum([0] + [len(ex.texts) for ex in examples])
        pscores = [flat[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:])]
        # the consensus from the same embeddings (the product's formula, llmblend.ranker.consensus)
        cons = cached_consensus(cache / f"{tag}_{split}_consensus.json", examples,
                                lambda: mean_similarity(ans, [len(ex.texts) for ex in examples]))
        return examples, prefs, pscores, cons

    lines = [f"probe encoder {cc['encoder']}, {max_len} tokens per answer and prompt; cpu flags: {cpu_flags()}; "
             f"{args.threads} thread(s)", "| ranker | rankers' models | split | method | GPT-Rank [95% CI] | win % | pick words |",
             "|" + "---|" * 7]

    def row(who, models, split, n, label, r):
        ci = f" [{r['gpt_rank_ci'][0]:.2f}, {r['gpt_rank_ci'][1]:.2f}]" if "gpt_rank_ci" in r else ""
        lines.append(f"| {who} | {models} | {split} ({n}) | {label} | {r['gpt_rank']:.2f}{ci} | {r['win_rate']:.1f} | "
                     f"{r['pick_len_words']:.0f} |")

    results = {}
    t0 = time.time()
    for (variant, keep, cell), target in itertools.product(
            (("pool37", set(cfg["ranker"]["train_generators"]), {"pool": "37", "headtail": False}),
             ("holdout", set(cfg["ranker"]["train_generators"]) - held, {"pool": "holdout", "headtail": False})),
            args.probe_targets):
        probe, fit_line = fit(keep, variant, target)
        lines.insert(1, fit_line)
        ranked = ("the 12" if variant == "pool37" else "8 held-out") + f", probe on {target}"
        per_split = {}
        for split in ("val", "test"):
            examples, prefs, pscores, cons = split_scores(probe, cell, split, "ranked" if variant == "pool37" else "heldout")
            n = len(examples)
            for label, r in reference_rows(examples, prefs, seed).items():
                row("-", ranked, split, n, label, r)
            combos = {f"probe + {a:g} x consensus": combined_scores([pscores, cons], [1.0, a]) for a in PROBE_WEIGHTS}
            combos["consensus alone"] = cons
            for label, sc in combos.items():
                r = evaluate_picks([int(np.argmax(s)) for s in sc], examples, prefs, seed)
                per_split.setdefault(split, {})[label] = r
                row("-", ranked, split, n, label, r)
            if variant != "pool37":
                continue
            for name in names:
                mats = split_matrices(cfg, name, split, examples, Path(args.out))
                ml = [aggregate.max_logits(m).tolist() for m in mats]
                for a in PROBE_WEIGHTS:
                    for b in PROBE_WEIGHTS:
                        r = evaluate_picks([int(np.argmax(s)) for s in combined_scores([ml, cons, pscores], [1.0, a, b])],
                                           examples, prefs, seed)
                        per_split[split][f"{name}: MaxLogits + {a:g} x consensus + {b:g} x probe"] = r
                        row(name, ranked, split, n, f"MaxLogits + {a:g} x consensus + {b:g} x probe", r)
        # choices on val only: the best probe + consensus weight, and per ranker the best (a, b)
        for prefix in ["probe + "] + [f"{n}: " for n in names] if variant == "pool37" else ["probe + "]:
            keys = [k for k in per_split["val"] if k.startswith(prefix)]
            best = min(keys, key=lambda k: (per_split["val"][k]["gpt_rank"], k))
            r = per_split["test"][best]
            lines.append(f"| val picks | {ranked} | test | {best} | {r['gpt_rank']:.2f} [{r['gpt_rank_ci'][0]:.2f}, "
                         f"{r['gpt_rank_ci'][1]:.2f}] | {r['win_rate']:.1f} | {r['pick_len_words']:.0f} |")
        results[f"{variant}-{target}"] = per_split
    lines.append(f"({time.time() - t0:.0f} s)")
    # not result.json: <out>/*/result.json are the cells' (--table reads them all)
    (Path(args.out) / "probe" / "probe.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return "\n".join(lines)


def with_cut(cell: dict, fn, *a):
    """Run fn with the cell's candidate truncation in the product's encoder (head + tail for
    `-headtail` cells), restoring the product's own afterwards."""
    from llmblend.ranker.model import PairEncoder

    own = PairEncoder.candidates
    if cell["headtail"]:
        PairEncoder.candidates = head_tail_candidates
    try:
        return fn(*a)
    finally:
        PairEncoder.candidates = own


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", nargs="*", default=[])
    ap.add_argument("--config", default="config/alpaca_eval.yaml")
    ap.add_argument("--out", default=str(ROOT / "results" / "alpaca_eval" / "study"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--test-autocast", choices=["bfloat16", "none"], default="bfloat16",
                    help="precision of the test matrices (none: fp32, for CPUs without bf16 instructions)")
    ap.add_argument("--step-tokens", type=int, default=None,
                    help="train in chunks of this many padded tokens per forward pass (ranker.train.step_tokens; "
                         "default: the profile's)")
    ap.add_argument("--test-limit", type=int, default=None, help="only the first N test (and val) prompts")
    ap.add_argument("--train-limit", type=int, default=None, help="only the first N train prompts (smoke runs)")
    ap.add_argument("--precision-check", nargs="*", default=[],
                    help="finished cells: rank their test again in fp32 and compare with their bf16 matrices")
    ap.add_argument("--table", action="store_true", help="print the table of every finished cell")
    ap.add_argument("--rescore", nargs="*", default=[], help="cells to rank the test again with their saved model")
    ap.add_argument("--ensemble", nargs="*", default=[],
                    help="finished cells (or `workflow`, the profile's own PairRanker): top-1 agreement and the pick "
                         "of their averaged z-scored MaxLogits")
    ap.add_argument("--consensus", nargs="*", default=[],
                    help="finished cells: MaxLogits + consensus over a grid of weights, on val (a weight chosen "
                         "there) and test")
    ap.add_argument("--probe", nargs="*", default=None,
                    help="the pointwise probe on frozen embeddings (probe_study), alone, with the consensus, and "
                         "with the MaxLogits of these finished cells (`workflow`: the workflow's PairRanker)")
    ap.add_argument("--probe-targets", nargs="+", default=["verdicts", "pairs"], choices=["verdicts", "pairs"],
                    help="--probe learns each answer's verdict (pointwise) and/or the order of two answers of a prompt")
    ap.add_argument("--ensemble-consensus", nargs="*", default=[],
                    help="finished cells (`workflow`: the workflow's PairRanker): their average z-scored MaxLogits, "
                         "alone and + consensus at the profile's weight, on --consensus-splits; with val and test, "
                         "also + consensus at the weight val picks, read on test")
    ap.add_argument("--model-prior", nargs="*", default=[],
                    help="finished cells: MaxLogits + weight x each model's mean score over the split (a prior from "
                         "no label), on --consensus-splits (val picks the weight), and how that mean orders the models")
    ap.add_argument("--consensus-splits", nargs="+", default=["val", "test"], choices=["val", "test"],
                    help="--consensus, --ensemble-consensus and --model-prior on these splits (test alone: no weight is chosen, "
                         "read the profile's 1.0; spares ranking val's prompts with a slow ranker)")
    ap.add_argument("--pair-accuracy", nargs="*", default=[],
                    help="finished cells (`workflow`: the workflow's PairRanker): the share of the test's judged pairs "
                         "their scores order as GPT-4 does, with CIs and paired differences from the first cell of each "
                         "ranked set (pair_accuracy_study)")
    ap.add_argument("--judge-noise", action="store_true",
                    help="the labels' own noise: GPT-4's verdicts on texts it judged twice, and the test pick of "
                         "the judge asked again (judge_noise_study)")
    ap.add_argument("--consensus-encoder", default=None,
                    help="--consensus with this encoder (a model of the profile, e.g. mpnet, or a spec) instead of "
                         "the profile's ranker.consensus.encoder")
    ap.add_argument("--consensus-max-len", type=int, default=None,
                    help="--consensus with this many tokens per answer instead of ranker.consensus.max_len")
    args = ap.parse_args(argv)
    os.chdir(ROOT)
    # the training's own log lines (epochs, validation, the length balance) on stderr beside the tables
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("llmblend.ranker").setLevel(logging.INFO)
    for name in args.cells:
        cell = parse_cell(name)
        if (Path(args.out) / name / "result.json").exists():
            print(f"{name}: done before, skipped", flush=True)
            continue
        r = with_cut(cell, run_cell, cell, args)
        print(json.dumps({"cell": name, "pairranker": r["pairranker"], "train_s": r["train"]["seconds"],
                          "test_s": r["test"]["seconds"]}), flush=True)
    for name in args.rescore:
        with_cut(parse_cell(name), rescore, name, args)
        print(f"{name}: rescored", flush=True)
    for name in args.precision_check:
        print(json.dumps(precision_check(name, args)), flush=True)
    if args.ensemble:
        print(ensemble(args.ensemble, args))
    if args.consensus:
        print(consensus_study(args.consensus, args))
    if args.ensemble_consensus:
        print(ensemble_consensus(args.ensemble_consensus, args))
    if args.model_prior:
        print(model_prior_study(args.model_prior, args))
    if args.pair_accuracy:
        print(pair_accuracy_study(args.pair_accuracy, args))
    if args.probe is not None:
        print(probe_study(args.probe, args))
    if args.judge_noise:
        print(judge_noise_study(args))
    if args.table:
        print(table(Path(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
