"""The one retry loop of the judge and the openai generator (llmblend/openai_retry.py `Retrier`):
what the judge's own tests do not reach (a stop during the backoff, the key scrubbed from a
cached reason and from the retry log)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter

import httpx
import openai
import pytest

from llmblend.openai_retry import GaveUp, Retrier

REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def timeout():
    raise openai.APITimeoutError(request=REQUEST)


def retrier(stop=None, **kw):
    counts = Counter()
    return Retrier(kw.pop("max_attempts", 4), kw.pop("backoff_s", 5.0), 5.0, counts, counts, stop=stop, **kw), counts


def test_a_stop_during_the_backoff_ends_the_call_at_once():
    stop = threading.Event()
    r, counts = retrier(stop)

    def attempt():
        stop.set()  # e.g. the spending cap was reached by another pair meanwhile
        timeout()

    t0 = time.monotonic()
    with pytest.raises(GaveUp) as e:
        r.call(attempt, random.Random(0))
    assert time.monotonic() - t0 < 2.0, "waited out the backoff although the run was stopped"
    assert (e.value.retried_out, e.value.attempts) == (True, 1)
    assert counts == {"calls": 1, "retries": 1, "timeout": 1}


def test_a_stop_set_after_the_wait_asks_no_more():
    class Late(threading.Event):
        def wait(self, timeout=None):  # the stop comes just after the wait ended
            return False

    stop = Late()
    r, counts = retrier(stop, backoff_s=0.0)
    answers = iter([timeout, lambda: "never asked"])

    def attempt():
        stop.set()
        return next(answers)()

    with pytest.raises(GaveUp) as e:
        r.call(attempt, random.Random(0))
    assert (e.value.attempts, counts["calls"]) == (1, 1)


def test_faults_are_counted_under_the_owner_names_and_the_key_is_scrubbed_from_the_log(caplog):
    secret = "sk-test-0123456789"
    r, counts = retrier(max_attempts=3, backoff_s=0.0, fault_name=lambda f: f"fault_{f.kind}",
                        log=logging.getLogger("llmblend.test"))
    r.key = secret
    resp = httpx.Response(500, request=REQUEST)

    def fails():
        raise openai.InternalServerError(f"upstream said: bad key {secret}", response=resp, body=None)

    with caplog.at_level(logging.DEBUG, logger="llmblend.test"), pytest.raises(GaveUp) as e:
        r.call(fails, random.Random(0), "pair 7")
    assert counts == {"calls": 3, "retries": 2, "fault_5xx": 3} and e.value.attempts == 3
    assert "pair 7: HTTP 500" in caplog.text and secret not in caplog.text and "***" in caplog.text
    assert r.scrub(e.value.fault.message) == e.value.fault.message.replace(secret, "***")


def test_the_judge_scrubs_an_echoed_key_from_the_reason_it_caches(monkeypatch):
    from llmblend.judge.backends import OpenAIJudge
    from llmblend.judge.labels import ERROR

    secret = "sk-test-" + "9" * 16
    monkeypatch.setenv("OPENAI_API_KEY", secret)

    class Refuses:
        chat = completions = property(lambda self: self)

        def create(self, **kw):
            resp = httpx.Response(400, request=REQUEST)
            raise openai.BadRequestError(f"bad request for key {secret}", response=resp, body=None)

    monkeypatch.setattr(openai, "OpenAI", lambda **kw: Refuses())
    judge = OpenAIJudge({"openai": {"max_attempts": 3}}, cache=None)
    res = judge._call({"messages": []}, random.Random(0))
    assert res["label"] == ERROR and res["attempts"] == 1  # a 400 is final at once
    assert secret not in res["reason"] and "***" in res["reason"]
    assert judge.stats == {"calls": 1, "http_400": 1}
