"""Benchmark of the metrics stage on CPU (default profile settings).

1. Candidates scored per second per metric, batched (metrics.batch_size) vs unbatched (batch 1).
2. The whole stage as the workflow runs it: one `llmblend score-candidates` process per split
   (imports + model loading included), then gather-scores and summarize-scores.

Input: data/<run>/candidates/{train,val,test}.jsonl when they exist (--candidates-dir), else
candidates made here from the demo splits: per record K texts of 5-120 words drawn (seeded) from
the reference and other records' references, about 2% empty. Wrap it in the heavy-job lock:

    flock /tmp/llmblend-heavy.lock python benchmarks/bench_metrics.py --smollm2 dir:/tmp/smol
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPLITS = ("train", "val", "test")


def synth_candidates(cfg: dict, work: Path, k: int, seed: int) -> dict:
    from llmblend.data.prepare import prepare_splits
    from llmblend.io import read_jsonl, write_jsonl

    prepare_splits(cfg, work / "splits")
    rng = random.Random(seed)
    splits = {s: read_jsonl(work / "splits" / f"{s}.jsonl") for s in SPLITS}
    pool = [w for recs in splits.values() for r in recs for w in r["output"].split()]
    out = {}
    for s, recs in splits.items():
        for rec in recs:
            cands = []
            for j in range(k):
                if rng.random() < 0.02:
                    text = ""
                else:
                    n = rng.randint(5, 120)
                    words = rec["output"].split()[: rng.randint(0, 30)] + [rng.choice(pool) for _ in range(n)]
                    text = " ".join(words[:n])
                cands.append({"model": f"synthetic-{j}", "text": text, "flags": []})
            rec["candidates"] = cands
        out[s] = work / "candidates" / f"{s}.jsonl"
        write_jsonl(out[s], recs)
    return out


def throughput(cfg, models, pairs, unbatched_n):
    from llmblend.metrics.stage import build_metrics

    rows = {}
    preds, refs = [p for p, _ in pairs], [r for _, r in pairs]
    for name, metric in build_metrics(cfg["metrics"], models).items():
        t0 = time.perf_counter()
        metric.compute(preds, refs)
        batched = len(preds) / (time.perf_counter() - t0)
        # unbatched: one pair per call (bleu/rouge have no batch; the rate is the same code path)
        n = min(unbatched_n, len(preds))
        t0 = time.perf_counter()
        for p, r in zip(preds[:n], refs[:n]):
            metric.compute([p], [r])
        single = n / (time.perf_counter() - t0)
        rows[name] = {"batched_cand_per_s": round(batched, 1), "unbatched_cand_per_s": round(single, 1),
                      "speedup": round(batched / single, 2), "n_batched": len(preds), "n_unbatched": n}
        print(name, rows[name], flush=True)
    return rows


def whole_stage(config_files, models, cand_files, work: Path):
    cfgargs = [a for f in config_files for a in ("--config", f)]
    margs = [a for m, spec in models.items() for a in ("--model", f"{m}={spec}")]
    t0 = time.perf_counter()
    per_split = {}
    for s in SPLITS:
        t1 = time.perf_counter()
        subprocess.run(["llmblend", "score-candidates", *cfgargs, "--in", str(cand_files[s]),
                        "--out", str(work / f"shard-{s}.jsonl"), "--report", str(work / f"shard-{s}.json"),
                        *margs, "--threads", "2"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["llmblend", "gather-scores", *cfgargs, "--shards", str(work / f"shard-{s}.jsonl"),
                        "--reports", str(work / f"shard-{s}.json"), "--out", str(work / f"{s}.jsonl"),
                        "--report", str(work / f"{s}.report.json")], check=True, stdout=subprocess.DEVNULL)
        per_split[s] = round(time.perf_counter() - t1, 1)
    subprocess.run(["llmblend", "summarize-scores", *cfgargs,
                    "--scored", *[f"{s}={work / f'{s}.jsonl'}" for s in SPLITS],
                    "--reports", *[f"{s}={work / f'{s}.report.json'}" for s in SPLITS],
                    "--metrics-json", str(work / "candidate_scores.json"), "--table", str(work / "scores.csv")],
                   check=True, stdout=subprocess.DEVNULL)
    return {"seconds": round(time.perf_counter() - t0, 1), "per_split_seconds": per_split}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", action="append", default=None, help="config files (default params.yaml)")
    ap.add_argument("--smollm2", required=True, help="spec of the converted SmolLM2 dir (dir:data/demo/models/smollm2)")
    ap.add_argument("--candidates-dir", help="folder with {train,val,test}.jsonl candidates")
    ap.add_argument("--k", type=int, default=5, help="synthetic candidates per record")
    ap.add_argument("--unbatched-n", type=int, default=64)
    ap.add_argument("--out", default="results/benchmarks/bench_metrics.json")
    args = ap.parse_args()

    import torch

    from llmblend.config import load_config
    from llmblend.io import read_jsonl

    torch.set_num_threads(2)
    config_files = args.config or ["params.yaml"]
    cfg = load_config(config_files)
    m = cfg["metrics"]
    models = {}
    for name in ("bartscore", "clm_logprob", "bleurt", "bertscore"):
        if m[name]["enabled"]:
            ref = m[name]["model"]
            models[name] = args.smollm2 if ref == "smollm2" else cfg["models"][ref]["spec"] if ref in cfg["models"] else ref
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        work = Path(tmp)
        if args.candidates_dir:
            cand_files = {s: Path(args.candidates_dir) / f"{s}.jsonl" for s in SPLITS}
        else:
            cand_files = synth_candidates(cfg, work, args.k, cfg["seed"])
        recs = {s: read_jsonl(cand_files[s]) for s in SPLITS}
        pairs = [(c["text"], r["output"]) for s in SPLITS for r in recs[s] for c in r["candidates"]]
        words = sum(len(p.split()) for p, _ in pairs) / len(pairs)
        print(f"{len(pairs)} candidates, {words:.1f} words each on average", flush=True)
        rates = throughput(cfg, models, pairs, args.unbatched_n)
        stage = whole_stage(config_files, models, cand_files, work)
        print("whole stage", stage, flush=True)
    result = {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "records": {s: len(recs[s]) for s in SPLITS}, "candidates": len(pairs),
              "mean_candidate_words": round(words, 1), "batch_size": m["batch_size"],
              "synthetic": not args.candidates_dir, "metrics": rates, "whole_stage": stage}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
