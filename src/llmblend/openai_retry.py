"""What to do with a failed call to an OpenAI-compatible endpoint, and the one retry loop
(`Retrier`) that the judge and the `openai` generation backend run (client `max_retries=0`).

The client's built-in retries cover connection errors, timeouts, 408/409/429 and 5xx, but not a
reply that arrives with status 200 and a cut-off or malformed body: the client parses the body only
after its retry loop, so a truncated JSON reply escapes as a JSONDecodeError. Retrying in our own
loop covers that case too, and lets each caller count faults by kind.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# a fault's kind, as counted in reports: "429", "5xx", "408", "409", "timeout", "connection",
# "malformed", or the status of a 4xx that is not retried ("400", "401", ...)
RETRIED_4XX = (408, 409, 429)


class MalformedReply(ValueError):
    """A 200 reply that parsed but lacks what every chat completion has (choices, a message)."""


class Unusable(Exception):
    """Raised by an attempt whose reply came whole but cannot be used, and is worth asking again
    (the judge's unparsable label): a retryable fault of kind `kind`."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Fault:
    kind: str
    retryable: bool
    message: str                       # one line, for logs and error messages (callers scrub the key)
    status: int | None = None          # the HTTP status, when the server answered
    retry_after: float | None = None   # seconds the server asked us to wait (Retry-After)


def classify(exc: BaseException) -> Fault | None:
    """The fault an exception from `client.chat.completions.create` stands for; None when it is
    not an endpoint fault (a bug of ours: the caller re-raises it)."""
    import openai

    if isinstance(exc, openai.APITimeoutError):  # a subclass of APIConnectionError: test it first
        return Fault("timeout", True, "timeout")
    if isinstance(exc, openai.APIConnectionError):
        return Fault("connection", True, f"connection error: {_first_line(exc.__cause__ or exc)}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retryable = status >= 500 or status in RETRIED_4XX
        kind = "5xx" if status >= 500 else str(status)
        return Fault(kind, retryable, f"HTTP {status}: {_first_line(exc.message)}", status,
                     retry_after(exc.response) if retryable else None)
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError, openai.APIResponseValidationError,
                        MalformedReply)):
        return Fault("malformed", True, f"malformed reply: {type(exc).__name__}: {_first_line(exc)}")
    return None


def backoff_delay(attempt: int, rng: random.Random, base_s: float, max_s: float,
                  server_asked: float | None = None) -> float:
    """Seconds to wait before retry number `attempt` + 1 (attempt counts from 0): exponential with
    full jitter (spreads concurrent clients apart), never sooner than the server asked."""
    return max(rng.uniform(0, min(max_s, base_s * 2 ** attempt)), server_asked or 0.0)


def retry_after(response) -> float | None:
    """The server's Retry-After (or retry-after-ms) header, in seconds."""
    if response is None:
        return None
    for header, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = response.headers.get(header)
        if value:
            try:
                return float(value) * scale
            except ValueError:
                pass  # an HTTP date: ignored, the backoff applies
    return None


def _first_line(x) -> str:
    text = str(x)
    return text.splitlines()[0][:300] if text else type(x).__name__


class GaveUp(Exception):
    """A call's last fault: not retryable (`retried_out` False), or the attempts ran out or the run
    was stopped (`retried_out` True)."""

    def __init__(self, fault: Fault, error_type: str, attempts: int, retried_out: bool):
        super().__init__(fault.message)
        self.fault, self.error_type, self.attempts, self.retried_out = fault, error_type, attempts, retried_out


class Retrier:
    """Calls an attempt until it returns, with exponential backoff and full jitter between attempts
    (never sooner than a Retry-After asks), counting calls, retries and faults, thread-safe.

    `counts` gets "calls" and "retries"; `faults` gets one count per fault, named `fault_name(fault)`
    (the owner's report names; the same Counter as `counts` if the owner keeps one). `stop`, once
    set, ends the waits and asks no more (the judge's spending cap or a refused key). `key`, once
    known, is scrubbed from every message."""

    def __init__(self, max_attempts: int, backoff_s: float, max_backoff_s: float, counts: Counter,
                 faults: Counter, fault_name: Callable[[Fault], str] = lambda f: f.kind,
                 stop: threading.Event | None = None, log: logging.Logger | None = None):
        self.max_attempts, self.backoff_s, self.max_backoff_s = max_attempts, backoff_s, max_backoff_s
        self.counts, self.faults, self.fault_name = counts, faults, fault_name
        self.stop, self.log = stop, log
        self.key: str | None = None
        self.lock = threading.Lock()

    def scrub(self, text) -> str:
        """Error texts may echo request details; the key never leaves the process."""
        text = str(text)
        return text.replace(self.key, "***") if self.key else text

    def count(self, counter: Counter, what: str, n: int = 1) -> None:
        with self.lock:
            counter[what] += n

    def call(self, attempt: Callable[[], T], rng: random.Random, what: str = "call",
             on_fault: Callable[[Fault], None] | None = None) -> tuple[T, int]:
        """(attempt's value, attempts made). An exception that is no endpoint fault (a bug) passes
        through; `on_fault` sees each fault after it is counted (and may raise to end the call)."""
        fault, error_type = None, ""  # the last fault, set by every attempt that fails
        for n in range(self.max_attempts):
            if n and self.stop is not None and self.stop.is_set():
                raise GaveUp(fault, error_type, n, True)
            self.count(self.counts, "calls")
            try:
                return attempt(), n + 1
            except Unusable as e:
                fault, error_type = Fault(e.kind, True, str(e)), type(e).__name__
            except Exception as e:
                fault, error_type = classify(e), type(e).__name__
                if fault is None:
                    raise  # not the endpoint's fault: a bug, with its traceback
            self.count(self.faults, self.fault_name(fault))
            if on_fault is not None:
                on_fault(fault)
            if not fault.retryable:
                raise GaveUp(fault, error_type, n + 1, False)
            if n + 1 == self.max_attempts:
                break
            self.count(self.counts, "retries")
            delay = backoff_delay(n, rng, self.backoff_s, self.max_backoff_s, fault.retry_after)
            if self.log is not None:
                self.log.debug("%s: %s; retry %d in %.2f s", what, self.scrub(fault.message), n + 1, delay)
            if self.stop is None:
                time.sleep(delay)
            elif self.stop.wait(delay):
                raise GaveUp(fault, error_type, n + 1, True)
        raise GaveUp(fault, error_type, self.max_attempts, True)
