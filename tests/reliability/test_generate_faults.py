"""Faults from the loopback server during generation (`llmblend generate-candidates`, openai backend).

Transient faults (429 with Retry-After, 500, truncated JSON, a reset) are retried by the client and the
shard finishes with the same bytes as a clean run; faults past the retry limit stop the job cleanly
(exit 2, one line), keep the finished records, and the rerun asks only for the missing ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rel_figures import FIGURES

ROOT = Path(__file__).resolve().parents[2]
N = 12


def setup(d: Path, base_url: str, max_retries: int) -> list[str]:
    with open(d / "test.jsonl", "w") as f:
        for i in range(N):
            f.write(json.dumps({"id": f"r{i:03d}", "instruction": f"Say {i}", "input": "", "output": str(i)}) + "\n")
    (d / "conf.yaml").write_text(yaml.safe_dump({"generate": {"shards": 1, "splits": ["test"], "generators": [
        {"name": "api", "backend": "openai", "decoding": {"method": "greedy", "max_new_tokens": 8},
         "openai": {"model": "gen-1", "base_url": base_url, "api_key_env": None, "concurrency": 1,
                    "max_retries": max_retries, "timeout": 0.5}}]}}))
    return [sys.executable, "-m", "llmblend.cli", "generate-candidates", "--config", str(ROOT / "params.yaml"),
            "--config", str(d / "conf.yaml"), "--generator", "api", "--split-file", str(d / "test.jsonl"),
            "--shard", "0", "--out", str(d / "out" / "shard-0.jsonl")]


def reply(req):
    return "echo: " + req["messages"][-1]["content"]


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def transient_faults_change_nothing(tmp_path, fake_openai, kinds):
    fake_openai.reply_fn = reply
    clean, faulty = tmp_path / "clean", tmp_path / "faulty"
    for d in (clean, faulty):
        d.mkdir()
    r = run(setup(clean, fake_openai.base_url, 5))
    assert r.returncode == 0, r.stderr[-2000:]
    for k in kinds:
        fake_openai.queue_fault(k, retry_after=0.05 if k == "429" else None, delay=1.0 if k == "slow" else 0.0)
        FIGURES[f"faults_injected.generate.{k}"] += 1
    fake_openai.reset_log()
    r = run(setup(faulty, fake_openai.base_url, 8))
    assert r.returncode == 0, r.stderr[-2000:]
    assert fake_openai.pending_faults() == 0 and fake_openai.count() == N + len(kinds)
    assert (faulty / "out" / "shard-0.jsonl").read_bytes() == (clean / "out" / "shard-0.jsonl").read_bytes()


def test_transient_faults_are_retried_and_change_nothing(tmp_path, fake_openai):
    transient_faults_change_nothing(tmp_path, fake_openai, ["429", "500", "reset", "slow", "429", "500"])


@pytest.mark.xfail(strict=True, reason="known bug (reported): the generate openai backend does not retry a "
                   "truncated JSON reply (the openai client raises JSONDecodeError, which its own retries skip); "
                   "the job stops cleanly and resumes, but one cut-off reply fails it")
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
    out, partial = tmp_path / "out" / "shard-0.jsonl", tmp_path / "out" / "shard-0.jsonl.partial"
    assert not out.exists(), "a failed shard must not appear under its final name"
    saved = {json.loads(x)["id"] for x in partial.read_text().splitlines()}
    assert len(saved) >= 5 and "r005" not in saved, saved
    asked_first = {json.dumps(q.body["messages"]) for q in fake_openai.requests if q.fault != "500"}
    fake_openai.reset_log()
    r = run(cmd)
    assert r.returncode == 0, r.stderr[-2000:]
    asked_again = [json.dumps(q.body["messages"]) for q in fake_openai.requests]
    assert len(asked_again) == N - len(saved), "the rerun asked again for records already saved"
    assert not set(asked_again) & asked_first
    FIGURES["duplicate_calls.generate"] += len(set(asked_again) & asked_first)
    assert sum(1 for _ in open(out)) == N and not partial.exists()
