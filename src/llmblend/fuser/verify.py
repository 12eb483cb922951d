"""Verified fusion (rule verify_fused): keep the fused answer only where the PairRanker prefers it
to the top-1 candidate it was fused from; elsewhere keep that top-1. Fusion then never returns an
answer the ranker judges worse than its own pick (docs/fuser.md, "Verified fusion").

Reads the GenFuser's test file (each record's one candidate names what it was fused from,
`fused_from`, best first) and the test candidates; writes the same layout with one candidate,
`model: llm-blender-verified`, `kept` ("fused" | "top1") and the two-order logit, so that the
metrics and judge stages score and judge it like the fused answers. The workflow passes both files
scored: where every score in them was computed by this run's metrics stage (their reports count no
score kept from imported data), the kept answer carries the `scores` of the text it is (the fused
answer's, or the top-1 candidate's), and the metrics stage keeps them instead of scoring the same text
again. Imported scores (MixInstruct's release) come from other metric models, so then no answer
carries any, and the metrics stage scores every verified answer as it scores the fused ones.
"""

from __future__ import annotations

import logging
from pathlib import Path

from llmblend.errors import InputError
from llmblend.fuser.infer import KEEP
from llmblend.fuser.kinds import KINDS
from llmblend.io import iter_jsonl, read_json, write_json, write_jsonl

log = logging.getLogger("llmblend.fuser")

VERIFIED_MODEL = KINDS["verified"]["model"]


def scored_here(path) -> bool:
    """Whether every score in a scored file was computed by this run's metrics stage: its report
    (`<name>.report.json` beside it, rules gather_scores and score_fused) counts no `kept_existing`."""
    report = Path(path).with_suffix(".report.json")
    if not report.exists():
        return False
    return not any(k.startswith("kept_existing.") and n for k, n in read_json(report)["counts"].items())


def read_pairs(fused_path, split_path) -> list[tuple[dict, dict, dict]]:
    """(record, fused candidate, top-1 candidate) per test record, in the split's order."""
    fused = {}
    for line, rec in iter_jsonl(fused_path, {"id": str, "candidates": list}):
        c = rec["candidates"]
        if len(c) != 1 or not isinstance(c[0], dict) or not isinstance(c[0].get("text"), str):
            raise InputError(fused_path, line, "candidates", "expected exactly one fused candidate with a text")
        src = c[0].get("fused_from")
        if not isinstance(src, list) or not src or not isinstance(src[0], str):
            raise InputError(fused_path, line, "candidates[0].fused_from",
                             "missing or empty: the models fused, best first (rule fuse_candidates writes it)")
        if rec["id"] in fused:
            raise InputError(fused_path, line, "id", f"duplicate id {rec['id']!r}")
        fused[rec["id"]] = c[0]
    out = []
    for line, rec in iter_jsonl(split_path, {"id": str, "instruction": str, "candidates": list}):
        if rec["id"] not in fused:
            raise InputError(fused_path, None, "id", f"no fused answer for {rec['id']!r} ({split_path}:{line})")
        fused_cand = fused.pop(rec["id"])
        top = fused_cand["fused_from"][0]
        cands = {c.get("model"): c for c in rec["candidates"] if isinstance(c, dict)}
        if not isinstance(cands.get(top, {}).get("text"), str):
            raise InputError(split_path, line, "candidates", f"no candidate of model {top!r} with a text "
                             f"(the fused answer's top-1, {fused_path})")
        out.append((rec, fused_cand, cands[top]))
    if fused:
        raise InputError(fused_path, None, "id", f"{len(fused)} fused answers for records not in {split_path} "
                         f"(first: {next(iter(fused))!r})")
    return out


def verify_split(cfg: dict, fused_path, split_path, ranker_dir, out_path, report_path=None) -> dict:
    from llmblend.blender import Blender

    rc = cfg["ranker"]
    pairs = read_pairs(fused_path, split_path)
    blender = Blender(ranker=ranker_dir, max_tokens=rc["infer"]["max_tokens"], max_batch=rc["infer"]["max_batch"],
                      seed=int(cfg["seed"]), autocast=rc["infer"].get("autocast"))
    res = blender.verify_fused([r.get("input", "") for r, *_ in pairs], [f["text"] for _, f, _ in pairs],
                               [t["text"] for *_, t in pairs], [r["instruction"] for r, *_ in pairs])
    carry_scores = scored_here(fused_path) and scored_here(split_path)
    rows = []
    for (rec, fused, top), kept, logit in zip(pairs, res["kept_fused"], res["logits"]):
        source = fused if kept else top
        cand = {"model": VERIFIED_MODEL, "text": source["text"], "kept": "fused" if kept else "top1",
                "top1_model": top["model"], "verify_logit": round(logit, 6)}
        if carry_scores and "scores" in source:
            cand["scores"] = source["scores"]
        row = {k: rec[k] for k in KEEP if k in rec}
        row["candidates"] = [cand]
        rows.append(row)
    n_kept = sum(res["kept_fused"])
    report = {"records": len(rows), "fused_kept": n_kept, "top1_kept": len(rows) - n_kept,
              "fused_kept_pct": round(100.0 * n_kept / len(rows), 2) if rows else None,
              "forward_passes": 2 * len(rows), "ranker": str(ranker_dir)}
    write_jsonl(out_path, rows)
    if report_path:
        write_json(report_path, report)
    log.info("verified %d fused answers: kept %d (%s%%), top-1 elsewhere", len(rows), n_kept,
             report["fused_kept_pct"])
    return report
