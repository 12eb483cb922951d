"""The label cache: one SQLite file that several processes, on one host or on several hosts sharing a
file system, may write at once (a judge job and `llmblend judge-batch ingest`, or judge_fused jobs of
several answer kinds).

Each judged (ordered) pair is one row keyed by a hash of (backend, model, prompt version,
temperature, instruction, input, reference, text A, text B): a rerun asks only what is missing.
Every row is committed as soon as its answer arrives, so a killed job loses at most the calls in
flight; a writer that finds the file locked waits (busy timeout) instead of failing.
Failures are stored too (`error` with the reason), so they are never re-paid unless asked
(`judge.retry_errors`).

Journal: the rollback journal (DELETE), not WAL. WAL keeps its index in shared memory (the -shm
file), which SQLite documents as working only between processes of one host: on NFS, or with jobs of
several nodes, it can corrupt the file. The rollback journal needs only the file system's POSIX
locks (NFSv4, Lustre, GPFS, CephFS have them; an NFS mount with `nolock` does not, docs/scale-out.md).
A commit costs a few more fsyncs than in WAL: `put_many` writes a batch in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

COLUMNS = ("key", "label", "reason", "reply", "prompt_tokens", "completion_tokens", "usd", "attempts",
           "backend", "model", "prompt_version", "temperature", "created")


# how long a writer waits for another process's transaction (each holds the lock for one commit)
BUSY_S = 120.0


def cache_key(*parts) -> str:
    return hashlib.sha256(json.dumps(list(parts), ensure_ascii=False).encode("utf-8")).hexdigest()


def open_shared_sqlite(path) -> sqlite3.Connection:
    """A cache file that processes on several hosts may write (docs/scale-out.md): autocommit,
    a long busy wait, and the rollback journal, not WAL (WAL's shared-memory index is single-host).
    Also turns a file written in WAL mode by an earlier version back into one self-contained file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_S, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_S * 1000)}")
    mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
    if mode.lower() != "delete":
        raise OSError(f"{path}: SQLite kept journal mode {mode!r} (another process has it open in WAL mode)")
    return conn


class LabelCache:
    def __init__(self, path):
        self.path = Path(path)
        self.conn = open_shared_sqlite(self.path)
        self._write = threading.Lock()  # one transaction at a time on this connection (it is shared by threads)
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS labels (key TEXT PRIMARY KEY, label TEXT NOT NULL, reason TEXT, reply TEXT,"
            " prompt_tokens INTEGER, completion_tokens INTEGER, usd REAL, attempts INTEGER, backend TEXT,"
            " model TEXT, prompt_version TEXT, temperature REAL, created REAL)")

    def get(self, key: str) -> dict | None:
        row = self.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM labels WHERE key = ?", (key,)).fetchone()
        return dict(zip(COLUMNS, row)) if row else None

    def get_many(self, keys) -> dict:
        out = {}
        keys = list(keys)
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = f"SELECT {', '.join(COLUMNS)} FROM labels WHERE key IN ({','.join('?' * len(chunk))})"
            for row in self.conn.execute(q, chunk):
                out[row[0]] = dict(zip(COLUMNS, row))
        return out

    def put(self, key: str, **row) -> None:
        self.put_many([(key, row)])  # one transaction per row: a kill loses only the calls in flight

    def put_many(self, items) -> None:
        """Write (key, row) pairs in one transaction (a bulk ingest: one commit instead of one per row)."""
        now = time.time()
        with self._write, self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            for key, row in items:
                row = {"created": now, **row, "key": key}
                cols = [c for c in COLUMNS if c in row]
                self.conn.execute(f"INSERT OR REPLACE INTO labels ({', '.join(cols)}) "
                                  f"VALUES ({','.join('?' * len(cols))})", [row[c] for c in cols])

    def __len__(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]

    def close(self) -> None:
        self.conn.close()
