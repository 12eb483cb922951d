"""Fuse the test split: rank each record's candidates (ranker or oracle), fuse the top K, and write
each record with the fused answer as its one candidate (`model: llm-blender`), so that the metrics
and judge stages score and judge it like any candidate file.

Fused answers are appended chunk by chunk to the answer log `<out>.partial.jsonl` (llmblend/answerlog.py;
its key: a fingerprint of the fuser, the inputs and the decoding settings): a killed job rerun with the
same fingerprint fuses only what is missing. The log is removed once the output is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from pathlib import Path

from llmblend.answerlog import AnswerLog
from llmblend.errors import ConfigError
from llmblend.fuser.api import decoding_name, load_ct2_fuser, load_fuser
from llmblend.fuser.data import iter_ranked
from llmblend.io import sha256_file, write_json, write_jsonl

log = logging.getLogger("llmblend.fuser")

FUSED_MODEL = "llm-blender"
KEEP = ("id", "instruction", "input", "output", "source", "rubric")
CHUNK_BATCHES = 8  # batches fused between two appends to the partial file


def _fingerprint(fuser_dir, split_path, rankings_path, ranker, kw, reference_input, dtype, backend) -> str:
    parts = {"split": sha256_file(split_path), "rankings": sha256_file(rankings_path) if rankings_path else None,
             "ranker": ranker, "generate": kw, "reference_input": reference_input, "dtype": dtype, "backend": backend,
             "fuser": {f.name: sha256_file(f) for f in sorted(Path(fuser_dir).glob("*.json"))}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def fuse_split(model_dir, split_path, ranker: str, out_path, rankings_path=None, generate: dict | None = None,
               batch_size: int = 8, report_path=None, threads: int | None = None,
               reference_input: str | None = None, dtype: str = "float32", backend: str = "hf") -> dict:
    """`dtype`: the weights' type while fusing (fuser.dtype: float32, bfloat16 or auto). `backend`
    (fuser.backend): hf (transformers) or ctranslate2 (converted into `<out>.ct2/` for this job)."""
    import torch

    from llmblend.models import precision

    dtype = precision.resolve(dtype, "fuser.dtype")
    if threads:
        torch.set_num_threads(threads)
    work = Path(str(out_path) + ".ct2")
    if backend == "ctranslate2":
        if reference_input not in (None, "project"):
            raise ConfigError(f"fuser.reference_input {reference_input} needs fuser.backend hf")
        fuser = load_ct2_fuser(model_dir, work, compute_type=dtype, threads=threads or 0)
    elif backend == "hf":
        fuser = load_fuser(model_dir, device="cuda" if torch.cuda.is_available() else None,
                           reference_input=reference_input, dtype=getattr(torch, dtype))
    else:
        raise ConfigError(f"fuser.backend {backend!r}: hf or ctranslate2")
    records, topk, fused_from = [], [], []
    for _, rec, order in iter_ranked(split_path, ranker, rankings_path):
        top = order[: fuser.spec.top_k]
        records.append(rec)
        topk.append([rec["candidates"][j].get("text", "") for j in top])
        fused_from.append([rec["candidates"][j].get("model", f"#{j}") for j in top])
    kw = {**fuser.generate_defaults, **(generate or {})}
    # a fuser given by spec (not a folder) has no files to fingerprint: never resumed (key None)
    fingerprint = _fingerprint(model_dir, split_path, rankings_path, ranker, kw, reference_input, dtype, backend) \
        if Path(model_dir).is_dir() else None
    partial = AnswerLog(str(out_path) + ".partial.jsonl", fingerprint, "result")
    done = partial.read()
    if done:
        log.info("resuming: %d of %d records already fused in %s", len(done), len(records), partial.path)
    t0 = time.perf_counter()
    n_new = 0
    chunk = batch_size * CHUNK_BATCHES
    with partial:
        for start in range(0, len(records), chunk):
            todo = [i for i in range(start, min(start + chunk, len(records))) if records[i]["id"] not in done]
            if not todo:
                continue
            # a chunk is fused whole (never partly cached): its examples get the same batches and seeds every run
            idx = list(range(start, min(start + chunk, len(records))))
            results = fuser.fuse_detailed([records[i]["instruction"] for i in idx], [records[i]["input"] for i in idx],
                                          [topk[i] for i in idx], batch_size=batch_size, seed_offset=start, **kw)
            fused = [(records[i]["id"], res) for i, res in zip(idx, results)]
            partial.append(fused)
            done.update(fused)
            n_new += len(idx)
    seconds = time.perf_counter() - t0
    method = decoding_name(kw)
    rows, results = [], []
    for rec, names in zip(records, fused_from):
        res = done[rec["id"]]
        results.append(res)
        row = {k: rec[k] for k in KEEP if k in rec}
        row["candidates"] = [{"model": FUSED_MODEL, "decoding_method": method, "text": res["text"],
                              "n_tokens": res["n_tokens"], "n_prompt_tokens": res["n_prompt_tokens"],
                              "flags": res["flags"], "fused_from": names}]
        rows.append(row)
    write_jsonl(out_path, rows)
    partial.remove()
    shutil.rmtree(work, ignore_errors=True)
    flags = Counter(f for r in results for f in r["flags"])
    n_tokens = sum(r["n_tokens"] for r in results)
    report = {"records": len(rows), "fused_now": n_new, "ranker": ranker, "decoding_method": method, "generate": kw,
              "dtype": dtype, "backend": backend,
              "flags": dict(flags), "fused_tokens": n_tokens}
    if report_path:
        write_json(report_path, report)
    # wall time and rate go to the log only: artifacts must not change from one run to the next
    rate = n_tokens / seconds if seconds and n_new == len(rows) else float("nan")
    log.info("fused %d records (%d now) in %.1f s (%.1f fused tok/s); flags %s", len(rows), n_new, seconds, rate,
             dict(flags))
    return report
