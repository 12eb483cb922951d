"""Per-job wall times of a finished workflow run, from the rules' `benchmark:` files, against a goal.

Snakemake writes one TSV per benchmarked job (`results/<run>/benchmarks/...`): wall seconds, peak RSS
and CPU seconds. This lists them by rule, longest first, marks every job over `--flag` seconds (the
performance issue asks for a reason or a fix for each stage over 5 minutes), and, given the run's
Snakemake log, the run's own wall time (first to last timestamp) against `--goal` minutes, and how
full the cores were: each job's start, end and threads read from the log, so the seconds in which the
running jobs reserved fewer threads than `--cores` show where the schedule, not the work, set the time.
With the log it also replays the run's jobs on `--cores` cores (`replay`: the DAG from the jobs' inputs
and outputs as the log lists them, each job's logged seconds): in the run's own start order, longest
remaining path first, and the two bounds no schedule beats (the longest path, the core-seconds).

    python benchmarks/run_times.py --dir /path/to/clone --run alpaca_eval --goal 60 \
        --log /path/to/snakemake.log --out results/alpaca_eval/run_times.md
"""

from __future__ import annotations

import argparse
import csv
import re
from datetime import datetime
from pathlib import Path

# the log's events in order; a progress bar without a newline can glue a timestamp or a "Finished"
# onto its line, so those two are found anywhere, the rule block's own lines only at a line's start
EVENT = re.compile(r"\[(?P<stamp>\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]|Finished jobid: (?P<end>\d+)"
                   r"|^\s*(?:local)?rule (?P<rule>\w+):|^\s*jobid: (?P<start>\d+)|^\s*threads: (?P<threads>\d+)"
                   r"|^\s*(?P<io>input|output): (?P<files>.*)$", re.M)


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
    stamps = [datetime.strptime(m["stamp"], "%a %b %d %H:%M:%S %Y")
              for m in EVENT.finditer(log.read_text(encoding="utf-8", errors="replace")) if m["stamp"]]
    return (stamps[0], stamps[-1]) if stamps else None


def job_spans(log: Path) -> list[dict]:
    """Every job of the log: rule, threads, input and output files, start and end in seconds from the
    first timestamp."""
    now = t0 = None
    jobs: dict[int, dict] = {}
    current = None
    for m in EVENT.finditer(log.read_text(encoding="utf-8", errors="replace")):
        if m["stamp"]:
            now = datetime.strptime(m["stamp"], "%a %b %d %H:%M:%S %Y")
            t0 = t0 or now
        elif m["rule"]:
            current = None
            rule, files = m["rule"], {"input": [], "output": []}
        elif m["io"] and current is None:
            files[m["io"]] = [f.strip() for f in m["files"].split(",")]
        elif m["start"] and now is not None:
            current = jobs[int(m["start"])] = {"rule": rule, "threads": 1, "start": (now - t0).total_seconds(),
                                               **files}
        elif m["threads"] and current is not None:
            current["threads"] = int(m["threads"])
        elif m["end"] and int(m["end"]) in jobs:
            jobs[int(m["end"])]["end"] = (now - t0).total_seconds()
    return [j for j in jobs.values() if "end" in j]


def core_use(spans: list[dict], cores: int) -> dict:
    """Seconds of the run by how many threads the running jobs reserved (capped at `cores`)."""
    end = int(max((j["end"] for j in spans), default=0))
    reserved = [0] * end
    for j in spans:
        for t in range(int(j["start"]), int(j["end"])):
            reserved[t] += j["threads"]
    return {n: sum(1 for r in reserved if min(r, cores) == n) for n in range(cores + 1)}


def replay(spans: list[dict], cores: int) -> dict:
    """The run's jobs replayed on `cores` cores by a list scheduler: a job is ready when every job that
    makes one of its inputs has ended; whenever a job ends, the ready jobs start in priority order while
    their threads fit (a job that does not fit is passed over, as Snakemake does). Seconds: `as_run`
    (priority = the run's own start order), `longest_path_first`, and the bounds `critical_path` and
    `core_seconds` (the jobs' thread-seconds over the cores)."""
    made_by = {f: i for i, j in enumerate(spans) for f in j.get("output", [])}
    deps = [{made_by[f] for f in j.get("input", []) if f in made_by} - {i} for i, j in enumerate(spans)]
    dur = [j["end"] - j["start"] for j in spans]
    threads = [min(j["threads"], cores) for j in spans]
    kids = [[k for k, d in enumerate(deps) if i in d] for i in range(len(spans))]
    tail: dict[int, float] = {}

    def path(i: int) -> float:  # the job's seconds plus its longest chain of dependants
        if i not in tail:
            tail[i] = dur[i] + max((path(k) for k in kids[i]), default=0.0)
        return tail[i]

    def makespan(key) -> float:
        pending, done, running, free, now = set(range(len(spans))), set(), [], cores, 0.0
        while pending or running:
            for i in sorted((i for i in pending if deps[i] <= done), key=key):
                if threads[i] <= free:
                    free -= threads[i]
                    pending.discard(i)
                    running.append((now + dur[i], i))
            running.sort()
            now, i = running.pop(0)
            free += threads[i]
            done.add(i)
        return now

    return {"cores": cores, "as_run": makespan(lambda i: spans[i]["start"]),
            "longest_path_first": makespan(lambda i: -path(i)),
            "critical_path": max((path(i) for i in range(len(spans))), default=0.0),
            "core_seconds": sum(d * t for d, t in zip(dur, threads)) / cores}


def report(rows: list[dict], flag: float, span, goal_min: float | None, use: dict | None = None,
           replayed: dict | None = None) -> str:
    out = ["| job | wall s | CPU s (last sample) | peak RSS MB | over the flag |", "|---|---|---|---|---|"]
    for r in rows:
        cpu = f"{r['cpu_s']:.0f}" if r["cpu_s"] is not None else "-"
        rss = f"{r['max_rss_mb']:.0f}" if r["max_rss_mb"] is not None else "-"
        out.append(f"| {r['job']} | {r['s']:.0f} | {cpu} | {rss} | {'yes' if r['s'] > flag else ''} |")
    total = sum(r["s"] for r in rows)
    out.append("")
    # Snakemake's benchmark samples the job's processes every 0.5 s for 30 samples, then every 30 s,
    # and keeps the last sample's CPU time: a job of 16-45 s shows what it used in its first ~15 s
    out.append("CPU s: the last of Snakemake's samples (every 0.5 s for the first ~15 s, then every 30 s), "
               "so it misses up to 30 s of each job's run; wall s is exact")
    out.append(f"{len(rows)} benchmarked jobs, {total:.0f} s of job wall time in all "
               f"({sum(1 for r in rows if r['s'] > flag)} over {flag:.0f} s)")
    if span:
        wall = (span[1] - span[0]).total_seconds()
        line = f"run wall time (Snakemake log, first to last timestamp): {wall / 60:.1f} min"
        if goal_min:
            line += f" against a goal of {goal_min:.0f} min: {'reached' if wall <= goal_min * 60 else 'not reached'}"
        out.append(line)
    if use:
        cores = max(use)
        busy = sum(n * s for n, s in use.items()) / max(1, cores * sum(use.values()))
        out.append("seconds of the run with " + ", ".join(f"{n} of {cores} cores reserved: {s}" for n, s in use.items())
                   + f" ({100 * busy:.0f}% of the core-seconds)")
    if replayed:
        out.append(f"replayed on {replayed['cores']} cores (the log's jobs and their logged seconds): "
                   f"{replayed['as_run']:.0f} s in the run's start order, {replayed['longest_path_first']:.0f} s "
                   f"longest remaining path first; no schedule beats the longest path "
                   f"({replayed['critical_path']:.0f} s) or the core-seconds ({replayed['core_seconds']:.0f} s)")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=".", help="the checkout the run ran in")
    ap.add_argument("--run", required=True, help="the profile's `run` (results/<run>/benchmarks)")
    ap.add_argument("--log", help="the run's Snakemake log (.snakemake/log/...)")
    ap.add_argument("--flag", type=float, default=300.0, help="mark jobs over this many seconds")
    ap.add_argument("--goal", type=float, default=None, help="the run's goal in minutes")
    ap.add_argument("--cores", type=int, default=2, help="the run's --cores (for the core use line)")
    ap.add_argument("--out", help="also write the table here")
    args = ap.parse_args(argv)
    bench = Path(args.dir) / "results" / args.run / "benchmarks"
    if not bench.is_dir():
        raise SystemExit(f"{bench}: no benchmark folder (has the run finished?)")
    log = Path(args.log) if args.log else None
    spans = job_spans(log) if log else []
    text = report(job_rows(bench), args.flag, log_span(log) if log else None, args.goal,
                  core_use(spans, args.cores) if log else None, replay(spans, args.cores) if log else None)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
