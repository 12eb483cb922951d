"""Per-job wall times of a finished workflow run, from the rules' `benchmark:` files, against a goal.

Snakemake writes one TSV per benchmarked job (`results/<run>/benchmarks/...`): wall seconds, peak RSS
and CPU seconds. This lists them by rule, longest first, marks every job over `--flag` seconds (the
performance issue asks for a reason or a fix for each stage over 5 minutes), and, given the run's
Snakemake log, the run's own wall time (first to last timestamp) against `--goal` minutes.

    python benchmarks/run_times.py --dir /path/to/clone --run alpaca_eval --goal 60 \
        --log /path/to/snakemake.log --out results/alpaca_eval/run_times.md
"""

from __future__ import annotations

import argparse
import csv
import re
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]")


def job_rows(bench_dir: Path) -> list[dict]:
    rows = []
    for path in sorted(bench_dir.rglob("*.tsv")):
        with open(path, encoding="utf-8") as f:
            recs = list(csv.DictReader(f, delimiter="\t"))
        if not recs:
            continue
        r = recs[-1]  # a rerun appends; the last line is the run that made today's output
        rows.append({"job": str(path.relative_to(bench_dir).with_suffix("")), "s": float(r["s"]),
                     "max_rss_mb": float(r["max_rss"]) if r.get("max_rss") not in (None, "", "NA") else None,
                     "cpu_s": float(r["cpu_time"]) if r.get("cpu_time") not in (None, "", "NA") else None})
    return sorted(rows, key=lambda r: -r["s"])


def log_span(log: Path) -> tuple[datetime, datetime] | None:
    stamps = [datetime.strptime(m[1], "%a %b %d %H:%M:%S %Y")
              for line in open(log, encoding="utf-8", errors="replace") if (m := STAMP.match(line))]
    return (stamps[0], stamps[-1]) if stamps else None


def report(rows: list[dict], flag: float, span, goal_min: float | None) -> str:
    out = ["| job | wall s | CPU s | peak RSS MB | over the flag |", "|---|---|---|---|---|"]
    for r in rows:
        cpu = f"{r['cpu_s']:.0f}" if r["cpu_s"] is not None else "-"
        rss = f"{r['max_rss_mb']:.0f}" if r["max_rss_mb"] is not None else "-"
        out.append(f"| {r['job']} | {r['s']:.0f} | {cpu} | {rss} | {'yes' if r['s'] > flag else ''} |")
    total = sum(r["s"] for r in rows)
    out.append("")
    out.append(f"{len(rows)} benchmarked jobs, {total:.0f} s of job wall time in all "
               f"({sum(1 for r in rows if r['s'] > flag)} over {flag:.0f} s)")
    if span:
        wall = (span[1] - span[0]).total_seconds()
        line = f"run wall time (Snakemake log, first to last timestamp): {wall / 60:.1f} min"
        if goal_min:
            line += f" against a goal of {goal_min:.0f} min: {'reached' if wall <= goal_min * 60 else 'not reached'}"
        out.append(line)
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=".", help="the checkout the run ran in")
    ap.add_argument("--run", required=True, help="the profile's `run` (results/<run>/benchmarks)")
    ap.add_argument("--log", help="the run's Snakemake log (.snakemake/log/...)")
    ap.add_argument("--flag", type=float, default=300.0, help="mark jobs over this many seconds")
    ap.add_argument("--goal", type=float, default=None, help="the run's goal in minutes")
    ap.add_argument("--out", help="also write the table here")
    args = ap.parse_args(argv)
    bench = Path(args.dir) / "results" / args.run / "benchmarks"
    if not bench.is_dir():
        raise SystemExit(f"{bench}: no benchmark folder (has the run finished?)")
    text = report(job_rows(bench), args.flag, log_span(Path(args.log)) if args.log else None, args.goal)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
