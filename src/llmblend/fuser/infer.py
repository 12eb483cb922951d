"""Fuse the test split: rank each record's candidates (ranker or oracle), fuse the top K, and write
each record with the fused answer as its one candidate (`model: llm-blender`), so that the metrics
and judge stages score and judge it like any candidate file.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from llmblend.fuser.api import decoding_name, load_fuser
from llmblend.fuser.data import iter_ranked
from llmblend.io import write_json, write_jsonl

log = logging.getLogger("llmblend.fuser")

FUSED_MODEL = "llm-blender"
KEEP = ("id", "instruction", "input", "output", "source", "rubric")


def fuse_split(model_dir, split_path, ranker: str, out_path, rankings_path=None, generate: dict | None = None,
               batch_size: int = 8, report_path=None, threads: int | None = None) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    fuser = load_fuser(model_dir)
    records, topk, fused_from = [], [], []
    for _, rec, order in iter_ranked(split_path, ranker, rankings_path):
        top = order[: fuser.spec.top_k]
        records.append(rec)
        topk.append([rec["candidates"][j].get("text", "") for j in top])
        fused_from.append([rec["candidates"][j].get("model", f"#{j}") for j in top])
    kw = {**fuser.generate_defaults, **(generate or {})}
    t0 = time.perf_counter()
    results = fuser.fuse_detailed([r["instruction"] for r in records], [r["input"] for r in records], topk,
                                  batch_size=batch_size, **kw)
    seconds = time.perf_counter() - t0
    method = decoding_name(kw)
    rows = []
    for rec, res, names in zip(records, results, fused_from):
        row = {k: rec[k] for k in KEEP if k in rec}
        row["candidates"] = [{"model": FUSED_MODEL, "decoding_method": method, "text": res["text"],
                              "n_tokens": res["n_tokens"], "n_prompt_tokens": res["n_prompt_tokens"],
                              "flags": res["flags"], "fused_from": names}]
        rows.append(row)
    write_jsonl(out_path, rows)
    flags = Counter(f for r in results for f in r["flags"])
    n_tokens = sum(r["n_tokens"] for r in results)
    report = {"records": len(rows), "ranker": ranker, "decoding_method": method, "generate": kw,
              "flags": dict(flags), "fused_tokens": n_tokens, "seconds": round(seconds, 2),
              "fused_tokens_per_s": round(n_tokens / seconds, 2) if seconds else None}
    if report_path:
        write_json(report_path, report)
    log.info("fused %d records in %.1f s (%.1f tok/s); flags %s", len(rows), seconds,
             report["fused_tokens_per_s"] or 0, dict(flags))
    return report
