"""The fuser's training data (the builder the reference code never released: its issue #24).

For each train/val record: its candidates ranked by a ranker's rankings file (or, as an oracle, by a
metric in the candidates' `scores`), the top K formatted with the instruction and input under the
per-candidate token budget (llmblend.fuser.prompt), and the reference answer as the target.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from llmblend.errors import InputError, LLMBlendError
from llmblend.fuser.prompt import PromptSpec, format_prompt, ranks_from_scores, top_k_indices
from llmblend.io import iter_jsonl, write_json, write_jsonl
from llmblend.runlog import progress

log = logging.getLogger("llmblend.fuser")

SPLIT_FIELDS = {"id": str, "instruction": str, "input": str, "output": str, "candidates": list}
RANKING_FIELDS = {"id": str, "ranks": list}


def parse_ranker(ranker: str) -> tuple[str, str]:
    """`pairranker` -> ("rankings", "pairranker"); `oracle:bartscore` -> ("oracle", "bartscore")."""
    if ranker.startswith("oracle:"):
        metric = ranker.split(":", 1)[1]
        if not metric:
            raise LLMBlendError("fuser.ranker 'oracle:' needs a metric name, e.g. oracle:bartscore")
        return "oracle", metric
    return "rankings", ranker


def data_ranker(fcfg: dict) -> str:
    """The ranker whose top K makes the train/val training data (fuser.data_ranker, else fuser.ranker)."""
    return fcfg.get("data_ranker") or fcfg["ranker"]


# rankings that may not cover every record: the judge labels only the records it was asked about
PARTIAL_RANKERS = ("oracle-gpt_rank",)


def read_rankings(path) -> dict[str, tuple[int, list]]:
    """id -> (line, ranks) from a rankings file; a repeated id or a bad rank is an error."""
    out: dict[str, tuple[int, list]] = {}
    for line, rec in iter_jsonl(path, RANKING_FIELDS):
        if rec["id"] in out:
            raise InputError(path, line, "id", f"{rec['id']!r} repeats line {out[rec['id']][0]}")
        if not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in rec["ranks"]):
            raise InputError(path, line, "ranks", "expected a list of numbers (1 = best)")
        out[rec["id"]] = (line, rec["ranks"])
    return out


def iter_ranked(split_path, ranker: str, rankings_path=None, counts: Counter | None = None):
    """Yield (line, record, candidate indices best first) for every record of a split file. A record
    without a ranking is an error, except for the PARTIAL_RANKERS: then it is left out and counted
    (counts["no_ranking"])."""
    kind, name = parse_ranker(ranker)
    rankings = read_rankings(rankings_path) if kind == "rankings" else None
    seen = set()
    for line, rec in iter_jsonl(split_path, SPLIT_FIELDS):
        cands = rec["candidates"]
        if kind == "oracle":
            scores = []
            for j, c in enumerate(cands):
                value = (c.get("scores") or {}).get(name) if isinstance(c, dict) else None
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise InputError(split_path, line, f"candidates[{j}].scores.{name}",
                                     "missing or not a number (the oracle ranker needs it)")
                scores.append(float(value))
            ranks = ranks_from_scores(scores)
        else:
            if rec["id"] not in rankings and ranker in PARTIAL_RANKERS:
                if counts is not None:
                    counts["no_ranking"] += 1
                continue
            if rec["id"] not in rankings:
                raise InputError(rankings_path, None, "id", f"no ranking for record {rec['id']!r} "
                                 f"({split_path}:{line})")
            rline, ranks = rankings[rec["id"]]
            if len(ranks) != len(cands):
                raise InputError(rankings_path, rline, "ranks", f"{len(ranks)} ranks for {len(cands)} candidates "
                                 f"of {rec['id']!r} ({split_path}:{line})")
        seen.add(rec["id"])
        yield line, rec, top_k_indices(ranks, len(ranks))
    if rankings is not None and set(rankings) - seen:
        extra = sorted(set(rankings) - seen)
        raise InputError(rankings_path, rankings[extra[0]][0], "id",
                         f"{len(extra)} rankings name no record of {split_path} (first: {extra[0]!r})")


def build_examples(split_path, spec: PromptSpec, tokenizer, ranker: str, rankings_path=None):
    """Fuser examples of one split plus the counts of what the budget and the data did."""
    counts = Counter()
    rows = []
    for _, rec, order in progress(iter_ranked(split_path, ranker, rankings_path, counts), desc=f"fuser data {Path(split_path).stem}", unit="rec"):
        top = order[: spec.top_k]
        texts = [rec["candidates"][j].get("text", "") for j in top]
        prompt, info = format_prompt(spec, rec["instruction"], rec["input"], texts, tokenizer)
        flags = []
        if len(top) < spec.top_k:
            flags.append("fewer_than_k")
            counts["fewer_than_k"] += 1
        if not top:
            flags.append("no_candidates")
            counts["no_candidates"] += 1
        if info["instruction_cut"]:
            flags.append("instruction_cut")
            counts["instruction_cut"] += 1
        counts["candidates_cut"] += sum(info["candidate_cut"])
        counts["records"] += 1
        rows.append({
            "id": rec["id"], "source": rec.get("source", ""), "prompt": prompt, "target": rec["output"],
            "candidates": [{"model": rec["candidates"][j].get("model", f"#{j}"), "index": j,
                            "n_tokens": n, "cut": cut}
                           for j, n, cut in zip(top, info["candidate_tokens"], info["candidate_cut"])],
            "flags": flags,
        })
    return rows, dict(counts)


def build_fuser_data(spec: PromptSpec, tokenizer, ranker: str, splits: dict, out_dir, report_path=None) -> dict:
    """Write <out_dir>/<split>.jsonl for each split in `splits` (name -> (split file, rankings file|None))."""
    report = {"ranker": ranker, "prompt": spec.to_dict(), "splits": {}}
    for name, (split_path, rankings_path) in splits.items():
        rows, counts = build_examples(split_path, spec, tokenizer, ranker, rankings_path)
        write_jsonl(Path(out_dir) / f"{name}.jsonl", rows)
        report["splits"][name] = counts
        log.info("fuser data %s: %s", name, counts)
    if report_path:
        write_json(report_path, report)
    return report
