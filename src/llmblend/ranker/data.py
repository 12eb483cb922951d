"""Ranker inputs: scored split records, judge labels, and the supervision signal per candidate.

The signal is one number per candidate, higher = better:
- `metrics`: a weighted sum of the candidate's metric scores (raw scales, as MixInstruct stores them:
  choose weights that put them on a common scale, e.g. bleu x 0.01 as the reference does);
- `judge`: the GPT-Rank score from the pairwise judge labels of that example (wins minus losses,
  computed by llmblend.judge.gpt_rank, the reference rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from llmblend.errors import InputError
from llmblend.io import iter_jsonl

@dataclass
class Example:
    id: str
    source: str
    texts: list[str]
    models: list[str]
    metric_scores: list[dict]  # per candidate {metric: value}
    signal: list[float] | None = None
    extra: dict = field(default_factory=dict)
    parts: tuple[str, str] = ("", "")  # (instruction, input): a ranker that joins them otherwise re-joins
    reference: str | None = None  # the record's reference answer (`output`), SimCLS's gold


def sources(examples: list[Example], join: str) -> list[str]:
    """Each example's source text joined as a ranker was trained to read it (its source_join)."""
    from llmblend.ranker.model import source_text

    return [source_text({"instruction": ex.parts[0], "input": ex.parts[1]}, join) for ex in examples]


def load_examples(path, need_metrics=(), source_join: str = "newline") -> list[Example]:
    """Read a scored (or candidates) split file; every candidate must carry `text` and the metrics named.
    `source` joins instruction and input as ranker.source_join says."""
    from llmblend.ranker.model import source_text

    out = []
    for lineno, rec in iter_jsonl(path, {"id": str, "instruction": str, "candidates": list}):
        cands = rec["candidates"]
        if not cands:
            raise InputError(path, lineno, "candidates", "empty list (nothing to rank)")
        texts, models, scores = [], [], []
        for k, c in enumerate(cands):
            if not isinstance(c, dict) or not isinstance(c.get("text"), str):
                raise InputError(path, lineno, f"candidates[{k}].text", "missing or not a string")
            s = c.get("scores", {})
            if not isinstance(s, dict):
                raise InputError(path, lineno, f"candidates[{k}].scores", "expected an object")
            for m in need_metrics:
                v = s.get(m)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise InputError(path, lineno, f"candidates[{k}].scores.{m}",
                                     f"missing or not a finite number (got {v!r})")
            texts.append(c["text"])
            models.append(str(c.get("model", f"cand{k}")))
            scores.append(s)
        parts = (rec["instruction"], rec.get("input") or "")
        if not isinstance(parts[1], str):
            raise InputError(path, lineno, "input", "not a string")
        out.append(Example(rec["id"], source_text(rec, source_join), texts, models, scores, parts=parts,
                           reference=rec.get("output") if isinstance(rec.get("output"), str) else None))
    return out


def metric_signal(ex: Example, weights: list[dict]) -> list[float]:
    return [sum(w["weight"] * float(s[w["metric"]]) for w in weights) for s in ex.metric_scores]


def judge_scores(cmp_results: dict, models: list[str], counts: dict | None = None) -> list[float]:
    """GPT-Rank score per candidate (llmblend.judge.gpt_rank: wins minus losses, ties cancel).
    Failed judgments (error, unparsable, inconsistent) add nothing and are counted."""
    from llmblend.judge.gpt_rank import scores
    from llmblend.judge.labels import ALL_LABELS, FAILED

    for key, label in cmp_results.items():
        if label not in ALL_LABELS:
            raise ValueError(f"cmp_results[{key!r}] = {label!r} is not a judge label")
        if label in FAILED and counts is not None:
            counts[label] = counts.get(label, 0) + 1
    return scores(cmp_results, models)


def load_judge(path, examples: list[Example], counts: dict | None = None) -> dict[str, list[float]]:
    """id -> GPT-Rank score per candidate, for the examples that have judge labels."""
    by_id = {ex.id: ex for ex in examples}
    out = {}
    for lineno, rec in iter_jsonl(path, {"id": str}):
        if rec["id"] not in by_id:
            continue
        cmp = rec.get("cmp_results")
        if cmp is None:  # not judged (MixInstruct has "null" for some test examples)
            if counts is not None:
                counts["unjudged"] = counts.get("unjudged", 0) + 1
            continue
        if isinstance(cmp, str):
            import json

            cmp = json.loads(cmp) if cmp != "null" else None
            if cmp is None:
                if counts is not None:
                    counts["unjudged"] = counts.get("unjudged", 0) + 1
                continue
        if not isinstance(cmp, dict):
            raise InputError(path, lineno, "cmp_results", "expected an object of 'modelA,modelB' -> label")
        try:
            out[rec["id"]] = judge_scores(cmp, by_id[rec["id"]].models, counts)
        except ValueError as e:
            raise InputError(path, lineno, "cmp_results", str(e)) from None
    return out


def attach_signal(examples: list[Example], signal_cfg: dict, judge_path=None, counts=None) -> list[Example]:
    """Set `signal` on each example; with the judge signal, examples without labels are dropped and
    counted (counts['no_label'])."""
    if signal_cfg["type"] == "judge":  # required by the schema
        if judge_path is None:
            raise InputError("<config>", None, "ranker.signal.type",
                             "is 'judge' but no judge labels were given for this split")
        scores = load_judge(judge_path, examples, counts)
        kept = []
        for ex in examples:
            if ex.id in scores:
                ex.signal = scores[ex.id]
                kept.append(ex)
            elif counts is not None:
                counts["no_label"] = counts.get("no_label", 0) + 1
        return kept
    weights = signal_cfg.get("weights") or []
    for ex in examples:
        ex.signal = metric_signal(ex, weights)
    return examples


def signal_metrics(signal_cfg: dict) -> list[str]:
    return [] if signal_cfg["type"] == "judge" else sorted({w["metric"] for w in signal_cfg["weights"]})
