"""benchmarks/run_times.py reads each job's span and threads from a Snakemake log, including the lines
a progress bar glues a timestamp or a "Finished" onto."""

import importlib.util
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_times():
    spec = importlib.util.spec_from_file_location("run_times", ROOT / "benchmarks" / "run_times.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


LOG = """\
[Wed Dec  2 08:00:00 2026]
rule convert_model:
    output: a
    jobid: 5
    threads: 1
[Wed Dec  2 08:00:00 2026]
rule train_fuser:
    output: b
    jobid: 7
    threads: 2
[Wed Dec  2 08:00:10 2026]
Finished jobid: 5 (Rule: convert_model)
train:  50%|#####     | 1/2 [00:01<00:01]train: 100%|##########| 2/2 [00:02<00:00][Wed Dec  2 08:00:30 2026]
Finished jobid: 7 (Rule: train_fuser)
[Wed Dec  2 08:00:30 2026]
localrule all:
    jobid: 0
fuse:  10%|#         | 1/10 [00:01<00:09]Finished jobid: 0 (Rule: all)
"""


def test_job_spans_and_core_use_from_a_log_with_glued_progress_lines(tmp_path):
    rt = _run_times()
    log = tmp_path / "snakemake.log"
    log.write_text(LOG)
    spans = sorted(rt.job_spans(log), key=lambda j: j["rule"])
    assert [(j["rule"], j["threads"], j["start"], j["end"]) for j in spans] == [
        ("all", 1, 30.0, 30.0), ("convert_model", 1, 0.0, 10.0), ("train_fuser", 2, 0.0, 30.0)]
    # 0-10 s: 1 + 2 threads (capped at the 2 cores); 10-30 s: the fuser's 2
    assert rt.core_use(spans, cores=2) == {0: 0, 1: 0, 2: 30}
    assert rt.core_use(spans, cores=4) == {0: 0, 1: 0, 2: 20, 3: 10, 4: 0}
    assert rt.log_span(log) == (datetime(2026, 12, 2, 8, 0, 0), datetime(2026, 12, 2, 8, 0, 30))


# C and D started first; A -> B is the longest path (30 s) and waited behind them
ORDER_LOG = """\
[Wed Dec  2 08:00:00 2026]
rule C:
    output: c
    jobid: 1
    threads: 1
[Wed Dec  2 08:00:00 2026]
rule D:
    output: d
    jobid: 2
    threads: 1
[Wed Dec  2 08:00:10 2026]
Finished jobid: 1 (Rule: C)
Finished jobid: 2 (Rule: D)
[Wed Dec  2 08:00:10 2026]
rule A:
    output: a, a2
    jobid: 3
    threads: 1
[Wed Dec  2 08:00:20 2026]
Finished jobid: 3 (Rule: A)
[Wed Dec  2 08:00:20 2026]
rule B:
    input: x, a2
    output: b
    jobid: 4
    threads: 1
[Wed Dec  2 08:00:40 2026]
Finished jobid: 4 (Rule: B)
"""


def test_replay_by_start_order_and_by_longest_path(tmp_path):
    rt = _run_times()
    log = tmp_path / "snakemake.log"
    log.write_text(ORDER_LOG)
    spans = rt.job_spans(log)
    assert {j["rule"]: (j["input"], j["output"]) for j in spans} == {
        "C": ([], ["c"]), "D": ([], ["d"]), "A": ([], ["a", "a2"]), "B": (["x", "a2"], ["b"])}
    # as run: C and D, then A, then B (40 s); A first: A + C, then B + D (30 s); 50 thread-seconds / 2 cores
    assert rt.replay(spans, cores=2) == {"cores": 2, "as_run": 40.0, "longest_path_first": 30.0, "critical_path": 30.0,
                                         "core_seconds": 25.0}
    # one core: every order takes the 50 s of work
    assert rt.replay(spans, cores=1)["longest_path_first"] == 50.0
