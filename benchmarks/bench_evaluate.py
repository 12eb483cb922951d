"""Benchmark the evaluate stage (and the report) at the paper's scale, on CPU.

Synthetic artifacts in the contract's formats: --examples test examples (paper: 5,000; 4,771
judged) x --candidates candidates (MixInstruct: 12) with five metric scores, every pair judged
(66 labels an example for 12), --methods ranking methods with their n_forward, and the fused
answers with their labels. Reports the seconds to read the inputs, to compute everything (bootstrap
--samples resamples) and to write the report, and the peak memory.

    flock /tmp/llmblend-heavy.lock python benchmarks/bench_evaluate.py --examples 5000 --samples 1000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def label(qa, qb, rng):
    d = qa - qb + rng.normal(scale=0.5)
    if abs(d) < 0.3:
        return "Same good" if qa + qb > 0 else "Same bad"
    return "A is better" if d > 0 else "B is better"


def synthetic(root: Path, n: int, k: int, n_methods: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    models = [f"llm{j:02d}" for j in range(k)]
    q = rng.normal(size=(n, k)) + np.linspace(1, -1, k)
    ids = [f"bench/{i:05d}" for i in range(n)]
    paths = {"scored": root / "scored.jsonl", "judge": root / "judge.jsonl", "fused": root / "fused.jsonl",
             "fused_judge": root / "fused_judge.jsonl"}
    with open(paths["scored"], "w") as s, open(paths["judge"], "w") as j, open(paths["fused"], "w") as f, \
            open(paths["fused_judge"], "w") as fj:
        for i, ex in enumerate(ids):
            cands = [{"model": m, "text": "x" * 200, "scores": {
                "bertscore": 0.65 + 0.05 * q[i, c], "bartscore": -3.5 + 0.3 * q[i, c], "bleurt": -0.6 + 0.2 * q[i, c],
                "bleu": 20 + 5 * q[i, c], "rouge2": 0.2 + 0.05 * q[i, c]}} for c, m in enumerate(models)]
            s.write(json.dumps({"id": ex, "candidates": cands}) + "\n")
            cmp = {f"{models[a]},{models[b]}": label(q[i, a], q[i, b], rng) for a, b in itertools.combinations(range(k), 2)}
            j.write(json.dumps({"id": ex, "cmp_results": cmp if i % 21 else None}) + "\n")
            f.write(json.dumps({"id": ex, "candidates": [{"model": "llm-blender", "text": "y",
                                                          "scores": {"bertscore": 0.7, "bartscore": -3.0}}]}) + "\n")
            fq = q[i].max()
            fj.write(json.dumps({"id": ex, "cmp_results": {f"llm-blender,{m}": label(fq, q[i, c], rng)
                                                           for c, m in enumerate(models)}}) + "\n")
    names = ["pairranker", "pairranker-maxwins", "pairranker-bubble", "random", "simcls", "summareranker",
             "clm_scoring", "oracle-bartscore", "oracle-bertscore", "oracle-bleurt"][:n_methods]
    paths["rankings"] = {}
    for t, m in enumerate(names):
        p = root / "rankings" / m / "test.jsonl"
        p.parent.mkdir(parents=True)
        noise = 0.2 + 0.3 * t
        with open(p, "w") as out:
            for i, ex in enumerate(ids):
                v = q[i] + rng.normal(scale=noise, size=k)
                ranks = [1 + int((v > x).sum()) for x in v]
                out.write(json.dumps({"id": ex, "ranks": ranks, "scores": v.round(3).tolist(),
                                      "n_forward": k * (k - 1) if "bubble" not in m else 2 * (k - 1)}) + "\n")
        paths["rankings"][m] = p
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=5000)
    ap.add_argument("--candidates", type=int, default=12)
    ap.add_argument("--methods", type=int, default=10)
    ap.add_argument("--samples", type=int, default=1000)
    args = ap.parse_args()
    from llmblend.analysis.evaluate import evaluate
    from llmblend.analysis.inputs import load_inputs
    from llmblend.analysis.report import build_report

    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        paths = synthetic(root, args.examples, args.candidates, args.methods, seed=0)
        t1 = time.perf_counter()
        size_mb = sum(p.stat().st_size for p in root.rglob("*.jsonl")) / 1e6
        load_inputs(paths["scored"], judge=paths["judge"], rankings=paths["rankings"], fused=paths["fused"],
                    fused_judge=paths["fused_judge"])
        t2 = time.perf_counter()
        cfg = {"run": "bench", "seed": 1, "evaluate": {"bootstrap": {"samples": args.samples}}}
        evaluate(cfg, paths["scored"], root / "results", judge=paths["judge"], rankings=paths["rankings"],
                 fused=paths["fused"], fused_judge=paths["fused_judge"])
        t3 = time.perf_counter()
        build_report(cfg, root / "results", Path(__file__).resolve().parents[1] / "workflow" / "report",
                     root / "results" / "report.html")
        t4 = time.perf_counter()
        report_mb = (root / "results" / "report.html").stat().st_size / 1e6
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"examples": args.examples, "candidates": args.candidates, "methods": args.methods,
                      "bootstrap_samples": args.samples, "threads": os.environ.get("OMP_NUM_THREADS"),
                      "inputs_mb": round(size_mb, 1), "write_inputs_s": round(t1 - t0, 1),
                      "read_inputs_s": round(t2 - t1, 1), "evaluate_s": round(t3 - t2, 1),
                      "report_s": round(t4 - t3, 1), "report_mb": round(report_mb, 2),
                      "peak_rss_mb": round(peak)}, indent=1))


if __name__ == "__main__":
    main()
