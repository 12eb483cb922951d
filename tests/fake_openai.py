"""A loopback OpenAI-compatible server for tests (never used outside tests).

It speaks the parts of the API that the project's `openai` backends use:

- POST /v1/chat/completions            a reply from `reply_fn(request_json) -> str` (default: "ok")
- POST /v1/files                       multipart upload (purpose "batch"); GET /v1/files/<id>,
  GET /v1/files/<id>/content           the stored bytes
- POST /v1/batches, GET /v1/batches/<id>, POST /v1/batches/<id>/cancel
                                       a batch runs every line of its input file through the same
                                       reply function once it has been polled `batch_polls` times

Faults are queued and consumed one per matching request, in order:

    fake.queue_fault("429", times=5, retry_after=0.01)   # rate limit with Retry-After
    fake.queue_fault("500", times=2)
    fake.queue_fault("slow", delay=2.0)                   # answers after `delay` seconds
    fake.queue_fault("hang")                              # never answers; ends when the client gives up
    fake.queue_fault("truncated")                         # 200 with a cut-off JSON body
    fake.queue_fault("reset")                             # closes the connection without a reply
    fake.queue_fault("401")                               # the key is refused (also "403")

`fake.requests` logs every request (method, path, JSON body or None, fault applied);
`fake.count(path_suffix)` counts them. Usage tokens are whitespace word counts (+1 per message),
so tests can predict costs.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

FAULTS = {"429", "500", "slow", "hang", "truncated", "reset", "401", "403"}


def count_tokens(text: str) -> int:
    return len(str(text).split())


@dataclass
class Fault:
    kind: str
    path: str = "/v1/chat/completions"
    retry_after: float | None = None
    delay: float = 0.0


@dataclass
class Logged:
    method: str
    path: str
    body: dict | None
    fault: str | None = None


@dataclass
class FakeOpenAI:
    reply_fn: Callable[[dict], str] = field(default=lambda req: "ok")
    batch_polls: int = 1
    requests: list = field(default_factory=list)

    def __post_init__(self):
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self._server: ThreadingHTTPServer | None = None
        self._open_connections = 0

    # -- control -------------------------------------------------------------------------------
    def queue_fault(self, kind: str, times: int = 1, path: str = "/v1/chat/completions",
                    retry_after: float | None = None, delay: float = 0.0) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULTS)}")
        with self._lock:
            for _ in range(times):
                self._faults.append(Fault(kind, path, retry_after, delay))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def count(self, path_suffix: str = "/chat/completions", method: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path.endswith(path_suffix)
                       and (method is None or r.method == method))

    def wait_until_quiet(self, settle_s: float = 0.3, timeout_s: float = 30.0) -> None:
        """Wait until no connection is open, for settle_s in a row (a connection still in the listen
        backlog is accepted within one poll interval). After a client is SIGKILLed the server logs its
        torn request only when it reads the EOF, which on a loaded machine can be after the next run
        has started; waiting here keeps each run's log its own."""
        quiet_since, end = None, time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self._lock:
                idle = self._open_connections == 0
            now = time.monotonic()
            quiet_since = (quiet_since or now) if idle else None
            if quiet_since is not None and now - quiet_since >= settle_s:
                return
            time.sleep(0.01)
        raise TimeoutError(f"the fake server still had {self._open_connections} open connection(s) after {timeout_s} s")

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "FakeOpenAI":
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="fake-openai").start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- behaviour -----------------------------------------------------------------------------
    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            if self._faults and path.startswith(self._faults[0].path):
                return self._faults.popleft()
        return None

    def _log(self, method, path, body, fault=None):
        with self._lock:
            self.requests.append(Logged(method, path, body, fault))

    def completion(self, req: dict) -> dict:
        text = self.reply_fn(req)
        prompt_tokens = sum(count_tokens(m.get("content", "")) + 1 for m in req.get("messages", []))
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:12], "object": "chat.completion", "created": int(time.time()),
            "model": req.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": count_tokens(text),
                      "total_tokens": prompt_tokens + count_tokens(text)},
        }

    def _file_obj(self, fid: str) -> dict:
        f = self.files[fid]
        return {"id": fid, "object": "file", "bytes": len(f["content"]), "created_at": f["created_at"],
                "filename": f["filename"], "purpose": f["purpose"], "status": "processed"}

    def _add_file(self, content: bytes, filename: str, purpose: str) -> str:
        fid = "file-" + uuid.uuid4().hex[:16]
        self.files[fid] = {"content": content, "filename": filename, "purpose": purpose,
                           "created_at": int(time.time())}
        return fid

    def _batch_obj(self, bid: str) -> dict:
        return dict(self.batches[bid]["obj"])

    def _run_batch(self, bid: str) -> None:
        b = self.batches[bid]
        lines = self.files[b["obj"]["input_file_id"]]["content"].decode("utf-8").splitlines()
        out = []
        for line in lines:
            if not line.strip():
                continue
            item = json.loads(line)
            out.append(json.dumps({"id": "batch_req_" + uuid.uuid4().hex[:8], "custom_id": item["custom_id"],
                                   "response": {"status_code": 200, "request_id": uuid.uuid4().hex[:8],
                                                "body": self.completion(item["body"])},
                                   "error": None}))
        ofid = self._add_file(("\n".join(out) + "\n").encode("utf-8"), f"{bid}_output.jsonl", "batch_output")
        b["obj"].update(status="completed", output_file_id=ofid, completed_at=int(time.time()),
                        request_counts={"total": len(out), "completed": len(out), "failed": 0})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        import sys

        # a client that gave up (timeout, reset test) closes its end: not an error of the fake
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def _make_handler(fake: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output quiet
            pass

        def handle(self):
            with fake._lock:
                fake._open_connections += 1
            try:
                super().handle()
            finally:
                with fake._lock:
                    fake._open_connections -= 1

        def _send(self, status: int, obj=None, raw: bytes | None = None, headers: dict | None = None,
                  content_type: str = "application/json"):
            body = raw if raw is not None else json.dumps(obj).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status, message, typ="invalid_request_error", headers=None):
            self._send(status, {"error": {"message": message, "type": typ, "code": None, "param": None}},
                       headers=headers)

        def _read_body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _apply_fault(self, fault: Fault | None) -> bool:
            """Act out a fault; True when the request is finished (no normal reply)."""
            if fault is None:
                return False
            if fault.kind == "429":
                ra = 0.01 if fault.retry_after is None else fault.retry_after
                self._error(429, "Rate limit reached (fake)", "rate_limit_error",
                            {"Retry-After": f"{ra:g}", "retry-after-ms": str(int(ra * 1000))})
                return True
            if fault.kind == "500":
                hdr = {} if fault.retry_after is None else {"retry-after-ms": str(int(fault.retry_after * 1000))}
                self._error(500, "Internal server error (fake)", "server_error", hdr)
                return True
            if fault.kind in ("401", "403"):
                self._error(int(fault.kind), "Incorrect API key provided (fake)", "invalid_request_error")
                return True
            if fault.kind == "hang":
                # a timeout that does not race the clock: no reply until the client closes its end
                # (its own timeout), however slow a loaded machine makes the client or the server
                self._wait_for_hangup(limit_s=120.0)
                self.close_connection = True
                return True
            if fault.kind == "slow":
                time.sleep(fault.delay)
                return False  # then answer normally (the client has usually given up by now)
            if fault.kind == "reset":
                # RST instead of FIN: SO_LINGER with a zero timeout
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self.connection.close()
                self.close_connection = True
                return True
            return False  # "truncated" is applied to the reply body

        def _wait_for_hangup(self, limit_s: float) -> None:
            import select

            end = time.monotonic() + limit_s
            while time.monotonic() < end:
                if select.select([self.connection], [], [], 0.05)[0]:
                    try:
                        if not self.connection.recv(1, socket.MSG_PEEK):
                            return  # EOF: the client hung up
                    except OSError:
                        return
                    time.sleep(0.05)  # data (not expected while it waits): keep waiting

        def do_POST(self):
            path = self.path.split("?")[0]
            raw = self._read_body()
            fault = fake._take_fault(path)
            ctype = self.headers.get("Content-Type", "")
            body = None
            if "json" in ctype and raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
            fake._log("POST", path, body, fault.kind if fault else None)
            if self._apply_fault(fault):
                return
            if path == "/v1/chat/completions":
                if body is None:
                    return self._error(400, "body is not JSON")
                data = fake.completion(body)
                if fault is not None and fault.kind == "truncated":
                    blob = json.dumps(data).encode("utf-8")
                    return self._send(200, raw=blob[: len(blob) // 2])
                return self._send(200, data)
            if path == "/v1/files":
                msg = BytesParser(policy=HTTP).parsebytes(
                    b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
                parts = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
                if "file" not in parts:
                    return self._error(400, "no file part")
                fpart = parts["file"]
                purpose = parts["purpose"].get_content().strip() if "purpose" in parts else "batch"
                fid = fake._add_file(fpart.get_payload(decode=True), fpart.get_filename() or "upload", purpose)
                return self._send(200, fake._file_obj(fid))
            if path == "/v1/batches":
                if not body or body.get("input_file_id") not in fake.files:
                    return self._error(400, "unknown input_file_id")
                bid = "batch_" + uuid.uuid4().hex[:16]
                fake.batches[bid] = {"polls": 0, "obj": {
                    "id": bid, "object": "batch", "endpoint": body.get("endpoint", "/v1/chat/completions"),
                    "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window", "24h"),
                    "status": "validating", "created_at": int(time.time()), "output_file_id": None,
                    "error_file_id": None, "metadata": body.get("metadata"),
                    "request_counts": {"total": 0, "completed": 0, "failed": 0}}}
                return self._send(200, fake._batch_obj(bid))
            if path.startswith("/v1/batches/") and path.endswith("/cancel"):
                bid = path.split("/")[3]
                if bid not in fake.batches:
                    return self._error(404, "no such batch")
                fake.batches[bid]["obj"]["status"] = "cancelled"
                return self._send(200, fake._batch_obj(bid))
            return self._error(404, f"no route POST {path}")

        def do_GET(self):
            path = self.path.split("?")[0]
            fault = fake._take_fault(path)
            fake._log("GET", path, None, fault.kind if fault else None)
            if self._apply_fault(fault):
                return
            parts = path.strip("/").split("/")
            if len(parts) >= 3 and parts[1] == "files":
                fid = parts[2]
                if fid not in fake.files:
                    return self._error(404, "no such file")
                if len(parts) == 4 and parts[3] == "content":
                    return self._send(200, raw=fake.files[fid]["content"], content_type="application/octet-stream")
                return self._send(200, fake._file_obj(fid))
            if len(parts) == 3 and parts[1] == "batches":
                bid = parts[2]
                if bid not in fake.batches:
                    return self._error(404, "no such batch")
                b = fake.batches[bid]
                if b["obj"]["status"] not in ("completed", "cancelled", "failed"):
                    b["polls"] += 1
                    b["obj"]["status"] = "in_progress"
                    if b["polls"] >= fake.batch_polls:
                        fake._run_batch(bid)
                return self._send(200, fake._batch_obj(bid))
            return self._error(404, f"no route GET {path}")

    return Handler
