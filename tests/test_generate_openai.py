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
from llmblend.generate.openai_backend import EndpointError, OpenAIBackend
from llmblend.io import read_json
from llmblend.openai_retry import MalformedReply, backoff_delay, classify
from llmblend.generate.shards import answer_log_path, generate_shard
from llmblend.io import read_jsonl, write_jsonl

ROOT = Path(__file__).parents[1]


def records(n):
    return [{"id": f"r/{i:03d}", "instruction": f"question {i}", "input": "", "output": "x", "source": "t",
             "candidates": []} for i in range(n)]


def gen_cfg(base_url, **oa):
    return {"name": "api-model", "backend": "openai",
            "openai": {"base_url": base_url, "model": "served-model", "api_key_env": "LLMBLEND_TEST_KEY",
                       "concurrency": 2, "max_retries": 3, "timeout": 5.0, "backoff_s": 0.01,
                       "max_backoff_s": 0.05, **oa},
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
                                            r"record r/\d+ failed after 2 attempt.*\(5xx\): InternalServerError: HTTP 500.*"
                                            r"rerun to resume"):
        generate_shard(config(gen), "api-model", split, 0, out)
    partial = answer_log_path(out)
    kept = read_jsonl(partial)[1:]  # the first line is the log's key
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
    partial = answer_log_path(out)
    deadline = time.time() + 60
    while time.time() < deadline:
        if partial.exists() and len(partial.read_bytes().splitlines()) >= 9:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert base["run"] and not out.exists()
    written = [r for r in read_jsonl(partial) if "id" in r]
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
    # the job finished, then its record was lost (outputs deleted): the rerun asks nothing
    out.unlink()
    fake_openai.reset_log()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert fake_openai.requests == [] and [r["id"] for r in read_jsonl(out)] == [r["id"] for r in rows]


def _status_error(status, headers=None):
    import httpx
    import openai

    resp = httpx.Response(status, headers=headers or {}, request=httpx.Request("POST", "http://127.0.0.1/v1"))
    return openai.APIStatusError(f"status {status}", response=resp, body=None)


@pytest.mark.parametrize("status,kind,retried", [
    (400, "400", False), (401, "401", False), (403, "403", False), (404, "404", False), (422, "422", False),
    (408, "408", True), (409, "409", True), (429, "429", True), (500, "5xx", True), (503, "5xx", True)])
def test_which_statuses_are_retried(status, kind, retried):
    fault = classify(_status_error(status))
    assert (fault.kind, fault.retryable, fault.status) == (kind, retried, status)


def test_other_faults_are_classified_and_bugs_are_not():
    import json

    import httpx
    import openai

    req = httpx.Request("POST", "http://127.0.0.1/v1")
    assert classify(openai.APITimeoutError(request=req)).kind == "timeout"
    assert classify(openai.APIConnectionError(request=req)).kind == "connection"
    truncated = json.JSONDecodeError("Unterminated string", '{"id": "x', 8)
    bad = openai.APIResponseValidationError(response=httpx.Response(200, request=req), body=None)
    garbled = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    for e in (truncated, bad, garbled, MalformedReply("no choices")):
        assert (classify(e).kind, classify(e).retryable) == ("malformed", True)
    assert classify(ValueError("a bug of ours")) is None and classify(KeyError("x")) is None
    assert classify(_status_error(429, {"retry-after-ms": "250"})).retry_after == 0.25
    assert classify(_status_error(503, {"retry-after": "2"})).retry_after == 2.0


def test_backoff_is_jittered_capped_and_honours_retry_after():
    import random

    rng = random.Random(0)
    delays = [backoff_delay(a, rng, 0.5, 4.0) for a in range(8) for _ in range(50)]
    assert 0 <= min(delays) and max(delays) <= 4.0 and len(set(delays)) > 100
    assert backoff_delay(0, rng, 0.5, 4.0, server_asked=3.0) >= 3.0


def test_report_counts_faults_by_kind_retries_and_tokens(fake_openai, tmp_path):
    """A scripted fault sequence against the loopback server; one request at a time, so the
    faults land on known requests."""
    fake_openai.reply_fn = echo
    split = tmp_path / "test.jsonl"
    write_jsonl(split, records(5))
    # "hang" answers only once the client gives up: the one timeout, however loaded the machine
    gen = gen_cfg(fake_openai.base_url, concurrency=1, max_retries=6, timeout=2.0)
    for kind in ("429", "500", "truncated", "reset", "hang", "429"):
        fake_openai.queue_fault(kind, retry_after=0.01 if kind == "429" else None)
    report = generate_shard(config(gen), "api-model", split, 0, tmp_path / "shard-0.jsonl")
    assert fake_openai.pending_faults() == 0 and fake_openai.count() == 5 + 6
    assert report["faults"] == {"429": 2, "5xx": 1, "connection": 1, "malformed": 1, "timeout": 1}
    assert (report["calls"], report["retries"]) == (11, 6)
    # tokens of the answers kept: "question i" = 2 words + 1 per message; "answer to question i" = 4
    assert report["tokens"] == {"prompt": 5 * 3, "completion": 5 * 4} and report["new_tokens"] == 20
    assert read_json(tmp_path / "shard-0.report.json") == report
    assert [r["candidate"]["text"] for r in read_jsonl(tmp_path / "shard-0.jsonl")] == [
        f"answer to question {i}" for i in range(5)]


def test_a_clean_run_reports_no_faults(fake_openai, tmp_path):
    fake_openai.reply_fn = echo
    split = tmp_path / "test.jsonl"
    write_jsonl(split, records(3))
    report = generate_shard(config(gen_cfg(fake_openai.base_url)), "api-model", split, 0, tmp_path / "s.jsonl")
    assert (report["calls"], report["retries"], report["faults"]) == (3, 0, {})


def test_a_4xx_is_not_retried(fake_openai):
    fake_openai.reply_fn = echo
    # a wrong path under the server: 404, which no retry can mend
    b = OpenAIBackend(gen_cfg(fake_openai.base_url + "/wrong", concurrency=1, max_retries=5), seed=1)
    with pytest.raises(EndpointError, match=r"record r/000 failed after 1 attempt.*\(404\).*NotFoundError: HTTP 404"):
        b.run_batch(records(1))
    assert fake_openai.count() == 1
    assert b.accounting()["faults"] == {"404": 1} and b.accounting()["retries"] == 0


def test_a_malformed_200_is_retried(fake_openai):
    """A reply without choices (parsed, but not a completion) counts as malformed and is asked again."""
    import openai

    class NoChoicesOnce:
        def __init__(self, client):
            self.client, self.calls = client, 0
            self.chat = self
            self.completions = self

        def create(self, **kw):
            self.calls += 1
            resp = self.client.chat.completions.create(**kw)
            return resp.model_copy(update={"choices": []}) if self.calls == 1 else resp

    fake_openai.reply_fn = echo
    stub = NoChoicesOnce(openai.OpenAI(base_url=fake_openai.base_url, api_key="x", max_retries=0))
    b = OpenAIBackend(gen_cfg(fake_openai.base_url, concurrency=1), seed=1, client=stub)
    [(rid, cand)] = b.run_batch(records(1))
    assert cand["text"] == "answer to question 0" and b.accounting()["faults"] == {"malformed": 1}


def test_the_key_is_scrubbed_from_an_error_that_echoes_it(monkeypatch):
    """A server may quote the key in its 401 message; the job's error never carries it."""
    import httpx
    import openai

    secret = "sk-" + os.urandom(8).hex()
    monkeypatch.setenv("LLMBLEND_TEST_KEY", secret)

    class Refuses:
        chat = completions = property(lambda self: self)

        def create(self, **kw):
            resp = httpx.Response(401, request=httpx.Request("POST", "http://127.0.0.1/v1"))
            raise openai.AuthenticationError(f"Incorrect API key provided: {secret}", response=resp, body=None)

    b = OpenAIBackend(gen_cfg("http://127.0.0.1:9/v1", concurrency=1), seed=1, client=Refuses())
    with pytest.raises(EndpointError) as err:
        b.run_batch(records(1))
    assert "HTTP 401" in str(err.value) and secret not in str(err.value) and "***" in str(err.value)


def scripted_client(responses):
    """An openai client whose transport answers from a script (status, content type, body), in order."""
    import httpx
    import openai

    script, seen = list(responses), []

    def answer(request):
        seen.append(request)
        status, ctype, body = script.pop(0)
        return httpx.Response(status, headers={"content-type": ctype}, content=body.encode())

    client = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="x", max_retries=0,
                           http_client=httpx.Client(transport=httpx.MockTransport(answer)))
    return client, script, seen


def completion_json(text):
    import json

    return json.dumps({"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
                       "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})


def test_an_html_200_and_408_409_are_retried():
    """Faults the loopback server does not script: a proxy's HTML page with status 200 (the client
    hands it back as a str), 408 and 409."""
    err = '{"error": {"message": "busy", "type": "x"}}'
    client, script, seen = scripted_client([(200, "text/html", "<html>bad gateway</html>"),
                                            (409, "application/json", err), (408, "application/json", err),
                                            (200, "application/json", completion_json("fine"))])
    b = OpenAIBackend(gen_cfg("http://127.0.0.1:9/v1", concurrency=1), seed=1, client=client)
    [(rid, cand)] = b.run_batch(records(1))
    assert cand["text"] == "fine" and not script and len(seen) == 4
    assert b.accounting() == {"calls": 4, "retries": 3, "faults": {"408": 1, "409": 1, "malformed": 1},
                              "tokens": {"prompt": 3, "completion": 1}}


def test_a_400_is_final_at_once():
    client, script, seen = scripted_client([(400, "application/json", '{"error": {"message": "bad model"}}')] * 3)
    b = OpenAIBackend(gen_cfg("http://127.0.0.1:9/v1", concurrency=1), seed=1, client=client)
    with pytest.raises(EndpointError, match=r"failed after 1 attempt\(s\); last error \(400\): BadRequestError"):
        b.run_batch(records(1))
    assert len(seen) == 1 and b.accounting()["faults"] == {"400": 1}
