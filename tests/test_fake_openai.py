"""The loopback server itself: the official client talks to it, and faults act as queued."""

import json

import httpx
import openai
import pytest


def client(fake, **kw):
    return openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=kw.pop("max_retries", 0), **kw)


def test_chat_reply_and_usage(fake_openai):
    fake_openai.reply_fn = lambda req: "A is better"
    r = client(fake_openai).chat.completions.create(model="m", messages=[{"role": "user", "content": "two words"}])
    assert r.choices[0].message.content == "A is better"
    assert r.usage.prompt_tokens == 3 and r.usage.completion_tokens == 3
    assert fake_openai.count() == 1


def test_faults_in_order(fake_openai):
    fake_openai.queue_fault("429", retry_after=0.01)
    fake_openai.queue_fault("500")
    fake_openai.queue_fault("truncated")
    fake_openai.queue_fault("reset")
    fake_openai.queue_fault("slow", delay=3.0)
    c = client(fake_openai, timeout=1.5)
    msgs = [{"role": "user", "content": "x"}]
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="m", messages=msgs)
    with pytest.raises(openai.InternalServerError):
        c.chat.completions.create(model="m", messages=msgs)
    with pytest.raises((json.JSONDecodeError, openai.APIResponseValidationError, ValueError)):
        c.chat.completions.create(model="m", messages=msgs)
    with pytest.raises(openai.APIConnectionError):
        c.chat.completions.create(model="m", messages=msgs)
    with pytest.raises(openai.APITimeoutError):
        c.chat.completions.create(model="m", messages=msgs)
    assert fake_openai.pending_faults() == 0
    assert c.chat.completions.create(model="m", messages=msgs).choices[0].message.content == "ok"
    assert [r.fault for r in fake_openai.requests] == ["429", "500", "truncated", "reset", "slow", None]


def test_hang_gives_a_timeout_whatever_the_timeout(fake_openai):
    fake_openai.queue_fault("hang")
    c = client(fake_openai, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert [r.fault for r in fake_openai.requests] == ["hang"] and fake_openai.pending_faults() == 0
    assert c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}]).choices[0].message.content == "ok"


def test_client_retries_honour_retry_after(fake_openai):
    fake_openai.queue_fault("429", times=3, retry_after=0.01)
    r = client(fake_openai, max_retries=3).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert r.choices[0].message.content == "ok" and fake_openai.count() == 4


def test_batch_round_trip(fake_openai, tmp_path):
    fake_openai.batch_polls = 2
    fake_openai.reply_fn = lambda req: req["messages"][-1]["content"].upper()
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "m", "messages": [{"role": "user", "content": f"hi {i}"}]}} for i in range(3)]
    p = tmp_path / "in.jsonl"
    p.write_text("".join(json.dumps(x) + "\n" for x in lines))
    c = client(fake_openai)
    f = c.files.create(file=p.open("rb"), purpose="batch")
    b = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert c.batches.retrieve(b.id).status == "in_progress"
    done = c.batches.retrieve(b.id)
    assert done.status == "completed"
    out = [json.loads(x) for x in c.files.content(done.output_file_id).text.splitlines()]
    assert {o["custom_id"]: o["response"]["body"]["choices"][0]["message"]["content"] for o in out} == {
        "r0": "HI 0", "r1": "HI 1", "r2": "HI 2"}


def test_unknown_route_is_404(fake_openai):
    assert httpx.get(fake_openai.base_url + "/nothing").status_code == 404


def test_wait_until_quiet_returns_after_a_torn_request_is_logged(fake_openai):
    """The kill tests compare each run's requests: a request half-sent by a killed client must be in
    the log once wait_until_quiet returns, and not while its connection is still open."""
    import socket
    import threading
    import time

    host, port = fake_openai._server.server_address[:2]
    sock = socket.create_connection((host, port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 500\r\n\r\n{\"model\": \"m\", \"mess")  # the client dies here
    threading.Timer(0.5, sock.close).start()
    t0 = time.monotonic()
    fake_openai.wait_until_quiet(settle_s=0.1, timeout_s=10)
    assert time.monotonic() - t0 >= 0.5  # it waited for the open connection
    assert [(r.path, r.body) for r in fake_openai.requests] == [("/v1/chat/completions", None)]
