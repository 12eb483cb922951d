"""What to do with a failed call to an OpenAI-compatible endpoint: shared by the judge and the
`openai` generation backend, which both run their own retry loops (client `max_retries=0`).

The client's built-in retries cover connection errors, timeouts, 408/409/429 and 5xx, but not a
reply that arrives with status 200 and a cut-off or malformed body: the client parses the body only
after its retry loop, so a truncated JSON reply escapes as a JSONDecodeError. Retrying in our own
loop covers that case too, and lets each caller count faults by kind.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

# a fault's kind, as counted in reports: "429", "5xx", "408", "409", "timeout", "connection",
# "malformed", or the status of a 4xx that is not retried ("400", "401", ...)
RETRIED_4XX = (408, 409, 429)


class MalformedReply(ValueError):
    """A 200 reply that parsed but lacks what every chat completion has (choices, a message)."""


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
