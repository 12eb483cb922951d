"""The label cache: one SQLite file, safe for several jobs writing at once.

Each judged (ordered) pair is one row keyed by a hash of (backend, model, prompt version,
temperature, instruction, input, reference, text A, text B): a rerun asks only what is missing.
Every row is committed as soon as its answer arrives (WAL mode, a busy timeout instead of failing
when another process holds the write lock), so a killed job loses at most the calls in flight.
Failures are stored too (`error` with the reason), so they are never re-paid unless asked
(`judge.retry_errors`).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

COLUMNS = ("key", "label", "reason", "reply", "prompt_tokens", "completion_tokens", "usd", "attempts",
           "backend", "model", "prompt_version", "temperature", "created")


def cache_key(*parts) -> str:
    return hashlib.sha256(json.dumps(list(parts), ensure_ascii=False).encode("utf-8")).hexdigest()


class LabelCache:
    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA busy_timeout=60000")
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
        row = {"created": time.time(), **row, "key": key}
        cols = [c for c in COLUMNS if c in row]
        with self.conn:  # one transaction per row
            self.conn.execute(f"INSERT OR REPLACE INTO labels ({', '.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                              [row[c] for c in cols])

    def __len__(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]

    def close(self) -> None:
        # fold the write-ahead log back into the one file, so the file DVC tracks is complete
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()
