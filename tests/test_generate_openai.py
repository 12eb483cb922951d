"""The openai generation backend against the loopback server (tests/fake_openai.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from llmblend.errors import ConfigError, LLMBlendError
from llmblend.generate.openai_backend import OpenAIBackend
from llmblend.generate.shards import generate_shard
from llmblend.io import read_jsonl, write_jsonl

ROOT = Path(__file__).parents[1]


def records(n):
    return [{"id": f"r/{i:03d}", "instruction": f"question {i}", "input": "", "output": "x", "source": "t",
             "candidates": []} for i in range(n)]


def gen_cfg(base_url, **oa):
    return {"name": "api-model", "backend": "openai",
            "openai": {"base_url": base_url, "model": "served-model", "api_key_env": "LLMBLEND_TEST_KEY",
                       "concurrency": 2, "max_retries": 3, "timeout": 5.0, **oa},
            "decoding": {"method": "top_p_sampling", "temperature": 0.7, "top_p": 1.0, "max_new_tokens": 64}}


def config(gen):
    return {"run": "t", "seed": 7, "generate": {"shards": 1, "splits": ["test"], "generators": [gen]}}


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("LLMBLEND_TEST_KEY", "sk-loopback")


def echo(req):
    return "answer to " + req["messages"][-1]["content"]


def test_candidates_tokens_and_request(fake_openai, tmp_path):
    fake_openai.reply_fn = echo
    split = tmp_path / "test.jsonl"
    write_jsonl(split, records(5))
    gen = gen_cfg(fake_openai.base_url) | {"stop": ["\n\n"], "system": "Be brief."}
    report = generate_shard(config(gen), "api-model", split, 0, tmp_path / "shard-0.jsonl")
    rows = read_jsonl(tmp_path / "shard-0.jsonl")
    assert [r["id"] for r in rows] == [f"r/{i:03d}" for i in range(5)]
    c = rows[2]["candidate"]
    assert c["text"] == "answer to question 2" and c["model"] == "api-model" and c["base_model"] == "served-model"
    assert c["n_tokens"] == 4 and c["n_prompt_tokens"] == 2 + 1 + 2 + 1  # the fake counts words + 1 a message
    assert c["decoding_method"] == "top_p_sampling" and c["flags"] == []
    req = fake_openai.requests[0].body
    assert req["model"] == "served-model" and req["temperature"] == 0.7 and req["max_tokens"] == 64
    assert req["stop"] == ["\n\n"] and req["messages"][0] == {"role": "system", "content": "Be brief."}
    assert isinstance(req["seed"], int)
    assert report["new_tokens"] == 20
    # the key never reaches an artifact
    assert "sk-loopback" not in (tmp_path / "shard-0.jsonl").read_text() + (tmp_path / "shard-0.report.json").read_text()


def test_429_then_success(fake_openai, tmp_path):
    fake_openai.reply_fn = echo
    fake_openai.queue_fault("429", times=2, retry_after=0.01)
    b = OpenAIBackend(gen_cfg(fake_openai.base_url, concurrency=1), seed=1)
    [(rid, cand)] = b.run_batch(records(1))
    assert cand["text"] == "answer to question 0"
    assert fake_openai.count() == 3 and fake_openai.pending_faults() == 0


def test_empty_answer_is_flagged(fake_openai):
    fake_openai.reply_fn = lambda req: "   "
    b = OpenAIBackend(gen_cfg(fake_openai.base_url), seed=1)
    [(rid, cand)] = b.run_batch(records(1))
    assert cand["text"] == "" and cand["flags"] == ["empty"]


def test_missing_key_names_the_variable(monkeypatch, fake_openai):
    monkeypatch.delenv("LLMBLEND_TEST_KEY")
    with pytest.raises(ConfigError, match="LLMBLEND_TEST_KEY"):
        OpenAIBackend(gen_cfg(fake_openai.base_url), seed=1)


def test_endpoint_down_fails_naming_model_and_shard_and_keeps_records(fake_openai, tmp_path):
    fake_openai.reply_fn = echo
    split = tmp_path / "test.jsonl"
    write_jsonl(split, records(12))
    gen = gen_cfg(fake_openai.base_url, concurrency=1, max_retries=1)  # batches of 4, one at a time
    # the first batch succeeds; then one record gets 500 twice (past max_retries=1)
    calls = {"n": 0}

    def reply(req):
        calls["n"] += 1
        if calls["n"] == 5:
            fake_openai.queue_fault("500", times=2)
        return echo(req)

    fake_openai.reply_fn = reply
    out = tmp_path / "shard-0.jsonl"
    with pytest.raises(LLMBlendError, match=r"test shard 0: generator api-model \(model served-model\).*"
                                            r"InternalServerError.*rerun to resume"):
        generate_shard(config(gen), "api-model", split, 0, out)
    partial = out.with_name(out.name + ".partial")
    kept = read_jsonl(partial)
    assert len(kept) >= 4 and not out.exists()
    # the rerun resumes: the records already written are not asked for again, none is written twice
    before = fake_openai.count()
    generate_shard(config(gen), "api-model", split, 0, out)
    assert fake_openai.count() - before == 12 - len(kept)
    ids = [r["id"] for r in read_jsonl(out)]
    assert ids == [r["id"] for r in records(12)]


def test_kill_and_resume_writes_no_record_twice(fake_openai, tmp_path):
    """A real kill (SIGKILL of the CLI process mid-shard), then a rerun of the same command."""
    def slow(req):
        time.sleep(0.15)
        return echo(req)

    fake_openai.reply_fn = slow
    n = 24
    write_jsonl(tmp_path / "test.jsonl", records(n))
    cfg_file = tmp_path / "gen.yaml"
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg_file.write_text(yaml.safe_dump({"generate": {"shards": 1, "splits": ["test"], "generators": [
        gen_cfg(fake_openai.base_url, concurrency=1)]}}))
    out = tmp_path / "shard-0.jsonl"
    cmd = [sys.executable, "-m", "llmblend.cli", "generate-candidates", "--config", str(ROOT / "params.yaml"),
           "--config", str(cfg_file), "--generator", "api-model", "--split-file", str(tmp_path / "test.jsonl"),
           "--shard", "0", "--out", str(out)]
    env = dict(os.environ, LLMBLEND_TEST_KEY="sk-loopback")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial = out.with_name(out.name + ".partial")
    deadline = time.time() + 60
    while time.time() < deadline:
        if partial.exists() and len(partial.read_bytes().splitlines()) >= 8:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert base["run"] and not out.exists()
    written = read_jsonl(partial)
    assert 8 <= len(written) < n
    asked_before = {r.body["messages"][-1]["content"] for r in fake_openai.requests}
    fake_openai.reset_log()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [r["id"] for r in records(n)]  # each record once, in order
    asked_after = [r.body["messages"][-1]["content"] for r in fake_openai.requests]
    written_q = {f"question {int(r['id'].split('/')[1])}" for r in written}
    assert not written_q & set(asked_after)  # nothing written before the kill was asked again
    assert len(asked_after) == n - len(written) and asked_before
    assert not partial.exists()
