"""Faults from the loopback server during generation (`llmblend generate-candidates`, openai backend).

Transient faults (429 with Retry-After, 500, truncated JSON, a reset) are retried by the client and the
shard finishes with the same bytes as a clean run; faults past the retry limit stop the job cleanly
(exit 2, one line), keep the finished records, and the rerun asks only for the missing ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

from rel_figures import FIGURES

ROOT = Path(__file__).resolve().parents[2]
N = 12


def setup(d: Path, base_url: str, max_retries: int, api_key_env: str | None = None) -> list[str]:
    with open(d / "test.jsonl", "w") as f:
        for i in range(N):
            f.write(json.dumps({"id": f"r{i:03d}", "instruction": f"Say {i}", "input": "", "output": str(i)}) + "\n")
    (d / "conf.yaml").write_text(yaml.safe_dump({"generate": {"shards": 1, "splits": ["test"], "generators": [
        {"name": "api", "backend": "openai", "decoding": {"method": "greedy", "max_new_tokens": 8},
         "openai": {"model": "gen-1", "base_url": base_url, "api_key_env": api_key_env, "concurrency": 1,
                    "max_retries": max_retries, "timeout": 2.0, "backoff_s": 0.01, "max_backoff_s": 0.05}}]}}))
    return [sys.executable, "-m", "llmblend.cli", "generate-candidates", "--config", str(ROOT / "params.yaml"),
            "--config", str(d / "conf.yaml"), "--generator", "api", "--split-file", str(d / "test.jsonl"),
            "--shard", "0", "--out", str(d / "out" / "shard-0.jsonl"), "--log", str(d / "logs" / "shard-0.log")]


# how the shard report names each injected fault
KIND = {"429": "429", "500": "5xx", "reset": "connection", "hang": "timeout", "truncated": "malformed"}


def reply(req):
    return "echo: " + req["messages"][-1]["content"]


def run(cmd, env=None):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def transient_faults_change_nothing(tmp_path, fake_openai, kinds):
    fake_openai.reply_fn = reply
    clean, faulty = tmp_path / "clean", tmp_path / "faulty"
    for d in (clean, faulty):
        d.mkdir()
    r = run(setup(clean, fake_openai.base_url, 5))
    assert r.returncode == 0, r.stderr[-2000:]
    for k in kinds:
        # "hang": no reply until the client's timeout (2 s, far above a loopback reply): exact counts
        fake_openai.queue_fault(k, retry_after=0.05 if k == "429" else None)
        FIGURES[f"faults_injected.generate.{k}"] += 1
    fake_openai.reset_log()
    r = run(setup(faulty, fake_openai.base_url, 8))
    assert r.returncode == 0, r.stderr[-2000:]
    assert fake_openai.pending_faults() == 0 and fake_openai.count() == N + len(kinds)
    assert (faulty / "out" / "shard-0.jsonl").read_bytes() == (clean / "out" / "shard-0.jsonl").read_bytes()
    # the report counts every fault by kind, and each one cost one retry
    report = json.loads((faulty / "out" / "shard-0.report.json").read_text())
    assert report["faults"] == dict(Counter(KIND[k] for k in kinds)), report
    assert (report["retries"], report["calls"]) == (len(kinds), N + len(kinds))
    assert report["tokens"] == json.loads((clean / "out" / "shard-0.report.json").read_text())["tokens"]


def test_transient_faults_are_retried_and_change_nothing(tmp_path, fake_openai):
    transient_faults_change_nothing(tmp_path, fake_openai, ["429", "500", "reset", "hang", "429", "500"])


def test_a_truncated_reply_is_retried(tmp_path, fake_openai):
    transient_faults_change_nothing(tmp_path, fake_openai, ["truncated"])


def test_faults_past_the_retry_limit_stop_cleanly_and_resume_without_repeats(tmp_path, fake_openai):
    fake_openai.reply_fn = reply
    cmd = setup(tmp_path, fake_openai.base_url, 1)
    # the first 5 requests pass (a "slow" fault of no delay only marks them); the 6th record meets two
    # 500s in a row (one try + one retry) and the job stops after its batch
    fake_openai.queue_fault("slow", times=5, delay=0.0)
    fake_openai.queue_fault("500", times=2)
    FIGURES["faults_injected.generate.500"] += 2
    r = run(cmd)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert [x for x in r.stderr.splitlines() if x.startswith("llmblend generate-candidates: error: ")]
    out, partial = tmp_path / "out" / "shard-0.jsonl", tmp_path / "out" / "cache" / "shard-0.jsonl"
    assert not out.exists(), "a failed shard must not appear under its final name"
    saved = {row["id"] for row in map(json.loads, partial.read_text().splitlines()) if "id" in row}
    assert len(saved) >= 5 and "r005" not in saved, saved
    asked_first = {json.dumps(q.body["messages"]) for q in fake_openai.requests if q.fault != "500"}
    fake_openai.reset_log()
    r = run(cmd)
    assert r.returncode == 0, r.stderr[-2000:]
    asked_again = [json.dumps(q.body["messages"]) for q in fake_openai.requests]
    assert len(asked_again) == N - len(saved), "the rerun asked again for records already saved"
    assert not set(asked_again) & asked_first
    FIGURES["duplicate_calls.generate"] += len(set(asked_again) & asked_first)
    assert sum(1 for _ in open(out)) == N
    # the answer log stays (resume state for a job whose record a workflow tool loses): all N answers
    assert len([x for x in partial.read_text().splitlines() if x.startswith('{"id"')]) == N


def test_the_api_key_is_in_no_file_and_no_output(tmp_path, fake_openai):
    """A failing run (past the retry limit) and its resumed rerun: the key, made at run time, is in
    neither the shard, its report, the partial file, the job log, nor stdout/stderr."""
    key = "sk-gen-" + os.urandom(12).hex()
    env = dict(os.environ, LLMBLEND_GEN_KEY=key)
    fake_openai.reply_fn = reply
    cmd = setup(tmp_path, fake_openai.base_url, 1, api_key_env="LLMBLEND_GEN_KEY")
    fake_openai.queue_fault("429", retry_after=0.01)
    fake_openai.queue_fault("slow", times=3, delay=0.0)
    fake_openai.queue_fault("500", times=2)
    first = run(cmd, env)
    assert first.returncode == 2 and "failed after 2 attempt(s)" in first.stderr, first.stderr[-2000:]
    second = run(cmd, env)
    assert second.returncode == 0, second.stderr[-2000:]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"shard-0.jsonl", "shard-0.report.json", "shard-0.log"} <= {p.name for p in files}
    assert (tmp_path / "logs" / "shard-0.log").stat().st_size > 0  # the log was written: the search is not empty
    for p in files:
        assert key.encode() not in p.read_bytes(), f"the API key is in {p}"
    for out in (first.stdout, first.stderr, second.stdout, second.stderr):
        assert key not in out
