"""The metrics stage: score every candidate of a split file against the record's reference.

    score_file(cfg, models, in_path, out_path, report_path, shard=0, n_shards=1)
        shard k of n = the k-th contiguous block of records (n blocks of near-equal size); resumable:
    finished chunks of CHUNK_RECORDS records are kept in `<out>.partial.jsonl` (an answer log,
    llmblend/answerlog.py) across a kill
    gather_shards(shard_paths, report_paths, out_path, report_path)
    summarize(cfg, scored, reports, metrics_json, table_csv, report_json)

`models` maps a metric name to the model spec it loads (the rule passes `--model name=spec`; the
config names a `models` entry or gives a spec). Disabled metrics are not computed and their reason
goes into the report and the table, never a stand-in under their name.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import time
from collections import Counter, defaultdict
from pathlib import Path

from llmblend.answerlog import AnswerLog
from llmblend.errors import ConfigError, InputError
from llmblend.io import (atomic_path, dumps, file_entry, iter_jsonl, read_json, sha256_file, unwritable, write_json,
                         write_jsonl)
from llmblend.runlog import progress

log = logging.getLogger("llmblend.metrics")

# metric config block -> the `scores` keys it writes (the order of the table's columns)
METRIC_KEYS = {
    "bartscore": ("bartscore",),
    "clm_logprob": ("clm_logprob",),
    "bleurt": ("bleurt",),
    "bertscore": ("bertscore",),
    "bleu": ("bleu",),
    "rouge": ("rouge1", "rouge2", "rougeL", "rougeLsum"),
}
MODEL_METRICS = ("bartscore", "clm_logprob", "bleurt", "bertscore")
RECORD_FIELDS = {"id": str, "output": str, "candidates": list}


def enabled(mcfg: dict) -> list[str]:
    return [m for m in METRIC_KEYS if mcfg.get(m, {}).get("enabled", False)]


def not_computed(mcfg: dict) -> dict[str, str]:
    return {m: mcfg.get(m, {}).get("reason") or "disabled in this profile"
            for m in METRIC_KEYS if not mcfg.get(m, {}).get("enabled", False)}


def build_metrics(mcfg: dict, models: dict[str, str], device: str | None = None) -> dict:
    """Load every enabled metric once; `models` maps metric name -> model spec."""
    from llmblend.metrics import scorers
    from llmblend.models.resolve import resolve

    device = device or mcfg.get("device", "cpu")
    bs = mcfg.get("batch_size", 16)
    out = {}
    for name in enabled(mcfg):
        m = mcfg[name]
        if name in MODEL_METRICS:
            if name not in models:
                raise ConfigError(f"metrics.{name} is enabled but no model was given for it (--model {name}=SPEC)")
            path = resolve(models[name])
        t0 = time.perf_counter()
        if name == "bartscore":
            out[name] = scorers.Seq2SeqLogLikelihood(name, path, bs, m.get("max_candidate_tokens", 1024),
                                                     m.get("max_reference_tokens", 1024), device)
        elif name == "clm_logprob":
            out[name] = scorers.CausalLogLikelihood(name, path, m["template"], bs, m.get("max_candidate_tokens", 256),
                                                    m.get("max_reference_tokens", 256), device)
        elif name == "bertscore":
            out[name] = scorers.BertScore(path, m["num_layers"], bs, device)
        elif name == "bleurt":
            out[name] = scorers.Bleurt(path, bs, m.get("max_tokens", 128), device)
        elif name == "bleu":
            out[name] = scorers.Bleu()
        elif name == "rouge":
            out[name] = scorers.Rouge()
        log.info("metric %s ready in %.1f s %s", name, time.perf_counter() - t0, out[name].info())
    return out


def read_records(path) -> list[dict]:
    recs = []
    for lineno, rec in iter_jsonl(path, RECORD_FIELDS):
        for k, c in enumerate(rec["candidates"]):
            field = f"candidates[{k}]"
            if not isinstance(c, dict):
                raise InputError(path, lineno, field, f"expected an object, got {type(c).__name__}")
            for key in ("model", "text"):
                if not isinstance(c.get(key), str):
                    raise InputError(path, lineno, f"{field}.{key}", "missing" if key not in c else
                                     f"expected a string, got {type(c[key]).__name__}")
            if "scores" in c and not isinstance(c["scores"], dict):
                raise InputError(path, lineno, f"{field}.scores", "expected an object")
        recs.append(rec)
    return recs


def shard_range(n: int, shard: int, n_shards: int) -> tuple[int, int]:
    return n * shard // n_shards, n * (shard + 1) // n_shards


def score_records(records: list[dict], metrics: dict, recompute: bool, seconds: Counter | None = None,
                  bar=None) -> dict:
    """Add `scores` to every candidate in place; return the counts for the report. `seconds`
    collects each metric's time (logged, never reported); `bar` advances per metric and record."""
    counts: Counter = Counter()
    # (record index, candidate index) pairs that need each metric; a metric block is computed for
    # a candidate unless all its keys are already there and recompute is off
    todo: dict[str, list[tuple[int, int]]] = {name: [] for name in metrics}
    for r, rec in enumerate(records):
        ref_empty = not rec["output"].strip()
        for c, cand in enumerate(rec["candidates"]):
            counts["candidates"] += 1
            counts["empty_candidate"] += not cand["text"].strip()
            counts["empty_reference"] += ref_empty
            have = cand.get("scores") or {}
            for name in metrics:
                if not recompute and all(k in have for k in METRIC_KEYS[name]):
                    counts[f"kept_existing.{name}"] += 1
                else:
                    todo[name].append((r, c))
    counts["records"] = len(records)
    for name, metric in metrics.items():
        # longest first, so each of the metric's batches holds texts of similar length
        where = sorted(todo[name], key=lambda rc: -len(records[rc[0]]["candidates"][rc[1]]["text"])
                       - len(records[rc[0]]["output"]))
        if where:
            t0 = time.perf_counter()
            before = Counter(metric.counts)
            # each distinct (candidate, reference) text pair is scored once: generators often give the
            # same answer to one prompt (the demo's test split: 48 of 400)
            pairs = [(records[r]["candidates"][c]["text"], records[r]["output"]) for r, c in where]
            distinct = list(dict.fromkeys(pairs))
            slot = {pair: i for i, pair in enumerate(distinct)}
            results = metric.compute([t for t, _ in distinct], [ref for _, ref in distinct])
            for key, vals in results.items():
                vals = [vals[slot[pair]] for pair in pairs]
                for (r, c), v in zip(where, vals, strict=True):
                    if not math.isfinite(v):
                        raise ValueError(f"metric {key} gave {v} for record {records[r]['id']} candidate {c}")
                    records[r]["candidates"][c].setdefault("scores", {})[key] = v
            counts[f"computed.{name}"] += len(where)
            counts[f"duplicate_of_another.{name}"] += len(where) - len(distinct)
            for k, v in (metric.counts - before).items():
                counts[f"{k}.{name}"] += v
            if seconds is not None:
                seconds[name] += time.perf_counter() - t0
                seconds[f"{name}.n"] += len(where)
        if bar is not None:
            bar.update(len(records))
    return dict(counts)


# Records per resume chunk: a chunk is scored as a whole and appended to the partial file, so a
# killed job loses at most one chunk. Chunk boundaries are fixed by the shard (multiples of this
# from its first record), so a resumed run batches exactly as an uninterrupted one: same bytes.
CHUNK_RECORDS = 32


def _resume_key(mcfg: dict, models: dict, in_path, shard: int, n_shards: int, chunk_records: int) -> str:
    """What a partial file's scores depend on: the input's bytes, the shard and the metric settings."""
    blob = dumps({"input": sha256_file(in_path), "shard": shard, "n_shards": n_shards, "chunk": chunk_records,
                  "metrics": mcfg, "models": dict(sorted(models.items()))})
    return hashlib.sha256(blob.encode()).hexdigest()


def score_file(cfg: dict, models: dict[str, str], in_path, out_path, report_path=None,
               shard: int = 0, n_shards: int = 1, metrics: dict | None = None,
               chunk_records: int = CHUNK_RECORDS) -> dict:
    """Score one shard. Finished chunks go to the answer log `<out>.partial.jsonl` (one line a chunk,
    with its counts); a rerun after a kill skips them. `<out>` appears only when every record is done."""
    mcfg = cfg["metrics"]
    if not 0 <= shard < n_shards:
        raise ConfigError(f"shard {shard} is not in 0..{n_shards - 1}")
    out_path = Path(out_path)
    records = read_records(in_path)
    lo, hi = shard_range(len(records), shard, n_shards)
    records = records[lo:hi]
    partial = AnswerLog(out_path.with_name(out_path.name + ".partial.jsonl"),
                        _resume_key(mcfg, models, in_path, shard, n_shards, chunk_records), "chunk")
    done = partial.read()  # first record index of a chunk -> {"records": its scored records, "counts": ...}
    n_done = sum(len(c["records"]) for c in done.values())
    if n_done:
        log.info("%s: resuming after %d of %d records", partial.path, n_done, len(records))
    metrics = metrics if metrics is not None else build_metrics(mcfg, models)
    recompute = mcfg.get("recompute", False)
    seconds: Counter = Counter()
    counts: Counter = Counter()
    try:
        with partial, progress(total=(len(records) - n_done) * max(len(metrics), 1),
                               desc=f"score shard {shard}", unit="rec·metric") as bar:
            for start in range(0, len(records), chunk_records):
                if str(start) in done:
                    chunk = done[str(start)]
                    records[start:start + chunk_records] = chunk["records"]
                else:
                    chunk = {"records": records[start:start + chunk_records]}
                    chunk["counts"] = dict(sorted(score_records(chunk["records"], metrics, recompute, seconds,
                                                                bar).items()))
                    partial.append([(str(start), chunk)])
                counts.update(chunk["counts"])
    except OSError as e:
        partial.drop_if_no_answer()  # a refused write with no finished chunk leaves nothing behind
        raise unwritable(partial.path, e) from None
    write_jsonl(out_path, records)
    counts["records"] = len(records)  # also when the shard is empty
    report = {"input": str(in_path), "shard": shard, "n_shards": n_shards, "records_range": [lo, hi],
              "counts": dict(sorted(counts.items())), "computed": sorted(metrics),
              "not_computed": not_computed(mcfg), "settings": {name: m.info() for name, m in metrics.items()},
              "output": file_entry(out_path)}
    if report_path:
        write_json(report_path, report)
    partial.remove()
    for name in metrics:  # logged, not reported: reports stay byte-deterministic
        n, dt = seconds[f"{name}.n"], seconds[name]
        log.info("%s: %d candidates in %.1f s (%.1f cand/s)", name, n, dt, n / dt if dt > 0 else 0.0)
    if n_done:
        log.info("shard %d: %d of %d records were resumed from %s", shard, n_done, len(records), partial.path)
    return report


def gather_shards(shard_paths, report_paths, out_path, report_path) -> dict:
    """Concatenate the shards in order; sum their counts into one report."""
    n = 0
    with atomic_path(out_path) as tmp, open(tmp, "wb") as f:
        for p in shard_paths:
            data = Path(p).read_bytes()
            f.write(data)
            n += data.count(b"\n")
    reports = [read_json(p) for p in report_paths]
    counts: Counter = Counter()
    for r in reports:
        counts.update(r["counts"])
    merged = {"shards": len(reports), "counts": dict(sorted(counts.items())),
              "computed": reports[0]["computed"] if reports else [],
              "not_computed": reports[0]["not_computed"] if reports else {},
              "settings": reports[0]["settings"] if reports else {}, "output": file_entry(out_path)}
    if merged["output"]["records"] != sum(r["records_range"][1] - r["records_range"][0] for r in reports):
        raise InputError(out_path, problem="gathered record count differs from the shard reports")
    write_json(report_path, merged)
    return merged


def model_means(path) -> dict:
    """{model: {key: [values]}} over a scored file."""
    vals: dict = defaultdict(lambda: defaultdict(list))
    for _, rec in iter_jsonl(path, RECORD_FIELDS):
        for c in rec["candidates"]:
            for key, v in (c.get("scores") or {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    vals[c["model"]][key].append(float(v))
    return vals


def summarize(cfg: dict, scored: dict, reports: dict, metrics_json, table_csv, report_json=None) -> dict:
    """Per split and model: the mean of every score key. Rows for metrics not computed carry the
    reason; keys that came with imported data (not computed here) are marked `imported`."""
    mcfg = cfg["metrics"]
    missing = not_computed(mcfg)
    summary = {"splits": {}, "not_computed": missing}
    rows = []
    for split, path in scored.items():
        rep = read_json(reports[split])
        # a key's origin in this split: computed here, kept from the imported data, or both
        origin = {}
        for m in rep["computed"]:
            done, kept = rep["counts"].get(f"computed.{m}", 0), rep["counts"].get(f"kept_existing.{m}", 0)
            for k in METRIC_KEYS[m]:
                origin[k] = "computed" if not kept else "imported" if not done else "computed+imported"
        vals = model_means(path)
        summary["splits"][split] = {}
        for model in vals:
            means = {}
            for key in sorted(vals[model], key=_key_order):
                xs = vals[model][key]
                mean = sum(xs) / len(xs)
                means[key] = round(mean, 6)
                std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
                status = origin.get(key, "imported")
                rows.append([split, model, key, f"{mean:.6f}", f"{std:.6f}", len(xs), status, ""])
            summary["splits"][split][model] = means
            for m, reason in missing.items():
                for key in METRIC_KEYS[m]:
                    if key not in vals[model]:
                        rows.append([split, model, key, "", "", 0, "not_computed", reason])
    write_json(metrics_json, summary)
    with atomic_path(table_csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["split", "model", "metric", "mean", "std", "n", "status", "note"])
        w.writerows(rows)
    if report_json:
        write_json(report_json, {"splits": {s: read_json(p) for s, p in reports.items()},
                                 "not_computed": missing})
    return summary


def _key_order(key: str):
    flat = [k for keys in METRIC_KEYS.values() for k in keys]
    return (flat.index(key) if key in flat else len(flat), key)
