"""Stage wall times of a finished run, each stage rerun alone, against the issues' targets.

In a checkout where the profile has run to the end (its inputs on disk), each stage's rules are
forced to run again with nothing else running beside them, as the workflow runs them
(`snakemake --cores N --forcerun <rules> -- <the files those rules make>`: the stage's jobs only,
in their real order and parallelism, processes, model loading and writes included). Reports each
stage's wall time, the sum of its jobs' own times (the rules' `benchmark:` files) and the target.

Targets (issues #5, #6, #7, default profile, 2 cores):
    metrics  score_candidates + gather_scores + summarize_scores          < 180 s
    ranker   train_ranker + rank_with_pairranker + rank_test_full
             + rank_candidates (every ranking method)                       < 300 s
    fuser    build_fuser_data + train_fuser + fuse_candidates               < 300 s

The forced jobs rewrite their outputs (the same bytes on CPU for a fixed seed and thread count);
later stages' outputs then look older than their inputs to Snakemake (rerun the profile or
`snakemake --touch` afterwards). Run it alone, under the heavy-job lock:

    flock /tmp/llmblend-heavy.lock python benchmarks/bench_stages.py --dir . --out results/bench/stages.json
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

STAGES = {
    "metrics": (["score_candidates", "gather_scores", "summarize_scores"], 180),
    "ranker": (["train_ranker", "rank_with_pairranker", "rank_test_full", "rank_candidates"], 300),
    "fuser": (["build_fuser_data", "train_fuser", "fuse_candidates"], 300),
}


def job_seconds(bench_dir: Path, rules: list[str], since: float) -> dict[str, float]:
    """Each benchmark file of the stage's rules written by this run: its `s` column."""
    out = {}
    for rule in rules:
        for p in [*bench_dir.glob(f"{rule}.tsv"), *bench_dir.glob(f"{rule}/**/*.tsv")]:
            if p.stat().st_mtime >= since:
                row = next(csv.DictReader(open(p), delimiter="\t"))
                out[str(p.relative_to(bench_dir))] = float(row["s"])
    return out


def stage_files(root: Path, rules: list[str], extra: list[str]) -> list[str]:
    """The files the stage's rules make, from `snakemake --detailed-summary`."""
    proc = subprocess.run(["snakemake", "--detailed-summary", "--cores", "1", *extra], cwd=root,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"snakemake --detailed-summary failed:\n{proc.stderr[-3000:]}")
    rows = [line.split("\t") for line in proc.stdout.splitlines()[1:]]
    return [r[0] for r in rows if len(r) > 2 and r[2] in rules]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=".", help="the checkout whose run is finished")
    ap.add_argument("--configfile", help="a profile (default: params.yaml, run demo)")
    ap.add_argument("--run", default="demo", help="the profile's run name (results/<run>/benchmarks)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--stages", default="metrics,ranker,fuser")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    root = Path(args.dir).resolve()
    bench_dir = root / "results" / args.run / "benchmarks"
    results = {}
    for stage in args.stages.split(","):
        rules, target = STAGES[stage]
        extra = ["--configfile", args.configfile] if args.configfile else []
        files = stage_files(root, rules, extra)
        cmd = ["snakemake", "--cores", str(args.cores), *extra, "--forcerun", *rules, "--", *files]
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        wall = time.time() - t0
        if proc.returncode != 0:
            sys.exit(f"{stage}: {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        jobs = job_seconds(bench_dir, rules, t0)
        results[stage] = {"wall_s": round(wall, 1), "jobs": len(jobs), "jobs_sum_s": round(sum(jobs.values()), 1),
                          "target_s": target, "met": wall < target,
                          "per_job_s": {k: round(v, 1) for k, v in sorted(jobs.items(), key=lambda kv: -kv[1])}}
        print(f"{stage:8s} wall {wall:7.1f} s  ({len(jobs)} jobs, {sum(jobs.values()):.1f} s of job time)  "
              f"target < {target} s: {'met' if wall < target else 'NOT met'}", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
