"""The answer log: the resume state of a job that finishes its work piece by piece (a generation
shard's answers, a metrics shard's chunks, the fuser's answers), kept across a kill.

A JSONL file. Its first line is the key of what the answers depend on (`{"answers_for": <key>}`, a
fingerprint of the inputs and settings); every other line is one finished piece,
`{"id": <id>, <field>: <value>}`. Each append is flushed and fsynced, so after a kill every
complete line is on disk and only the last line can be torn. Before anything is appended the torn
last line is cut off: appending after it would glue the next answer onto it, and every later read
would stop there. A log with another key (other inputs or settings) is removed with a warning, so
changed settings never reuse old answers; a complete line that is not an answer is damage no kill
leaves, and an error names the file and line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from llmblend.errors import InputError
from llmblend.io import dumps

log = logging.getLogger("llmblend.answerlog")


class AnswerLog:
    """`read()` the pieces a killed run finished, then append new ones inside `with log:`.
    `key=None` never resumes: a log left behind is removed."""

    def __init__(self, path, key: str | None, field: str):
        self.path, self.key, self.field = Path(path), key, field
        self._f = None

    def read(self) -> dict[str, object]:
        """id -> value of every piece a previous run logged under this key (in the order logged)."""
        if not self.path.exists():
            return {}
        lines = self._cut_torn_line().splitlines()
        try:
            header = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            header = None
        if self.key is None or not isinstance(header, dict) or header.get("answers_for") != self.key:
            if lines and self.key is not None:
                log.warning("%s: written for other inputs or settings; discarding its %d lines", self.path,
                            len(lines) - 1)
            self.path.unlink()
            return {}
        done = {}
        for lineno, line in enumerate(lines[1:], start=2):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(self.path, lineno, problem=f"malformed JSON in an answer log: {e.msg} "
                                 "(delete the file to start over)") from None
            if not isinstance(row, dict) or not isinstance(row.get("id"), str) or self.field not in row:
                raise InputError(self.path, lineno, problem=f"an answer-log line needs `id` and `{self.field}`")
            done[row["id"]] = row[self.field]
        return done

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._cut_torn_line()
        self._f = open(self.path, "a", encoding="utf-8", newline="\n")
        if self._f.tell() == 0:
            self._f.write(dumps({"answers_for": self.key}) + "\n")
        return self

    def __exit__(self, *exc):
        self._f.close()
        self._f = None

    def append(self, pieces: Iterable[tuple[str, object]]) -> None:
        """Log finished pieces, (id, value) each; on disk when this returns."""
        for pid, value in pieces:
            self._f.write(dumps({"id": pid, self.field: value}) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def drop_if_no_answer(self) -> None:
        """After a refused write: a log without one complete piece (a key line at most) is no resume
        state, so it goes; one with pieces stays for the rerun."""
        with contextlib.suppress(OSError):
            if len(self.path.read_bytes().split(b"\n")) <= 2:  # the key line and an empty or torn rest
                self.path.unlink()

    def _cut_torn_line(self) -> bytes:
        """The log's complete lines; a torn last line left by a kill is cut off the file."""
        raw = self.path.read_bytes()
        keep = raw.rfind(b"\n") + 1
        if keep < len(raw):
            log.warning("%s: cutting a torn last line (%d bytes) left by an interrupted run", self.path,
                        len(raw) - keep)
            with open(self.path, "r+b") as f:
                f.truncate(keep)
        return raw[:keep]
