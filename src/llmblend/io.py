"""Reading and writing artifacts: JSONL with located errors, atomic writes, manifests.

Every writer goes through `atomic_path`: the file appears under its final name only when it is
complete, so a killed job or a failed check never leaves a partial artifact behind.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from llmblend.errors import InputError, LLMBlendError


def current_umask() -> int:
    """The process umask (Linux reports it in /proc; elsewhere it can only be read by setting it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share_like_open(path, directory: bool = False) -> None:
    """Give a mkstemp/mkdtemp file or folder (created 0600/0700, private) the mode open() and mkdir()
    would: 0666/0777 less the umask, so collaborators on shared storage can read a run's outputs."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        share_like_open(tmp)
    except OSError as e:
        raise unwritable(path, e) from None
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
        # a writer killed earlier (SIGKILL skips `finally`) may have left its temporary file: one job
        # owns a target, so any other temporary file of this target is stale
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            stale.unlink(missing_ok=True)
    except OSError as e:
        raise unwritable(path, e) from None
    finally:
        if tmp.exists():
            tmp.unlink()


# a full disk, a read-only folder, a quota or a file size limit: the user's to fix, not a bug
WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG, errno.EACCES}


def unwritable(path, e: OSError) -> Exception:
    """The one-line error for a write that the disk refused; any other OSError as it is."""
    if e.errno in WRITE_ERRNOS:
        return LLMBlendError(f"cannot write {path}: {e.strerror}")
    return e


def dumps(obj) -> str:
    """One canonical JSON line: stable key order as given, UTF-8 kept, no spaces to vary."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def write_jsonl(path, rows: Iterable[dict]) -> int:
    """Write rows atomically; return how many were written."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(dumps(row) + "\n")
            n += 1
    return n


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2, sort_keys=False)
        f.write("\n")


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def write_npz(path, arrays: dict) -> None:
    """numpy arrays into one compressed .npz (what np.load reads), atomically and byte-reproducibly:
    fixed member timestamps, so the same arrays give the same bytes (np.savez stamps the time)."""
    import zipfile

    import numpy as np

    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)


def iter_jsonl(path, required: dict | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) from a JSONL file.

    `required` maps field name -> type (or tuple of types); a record missing one, or holding the
    wrong type, raises InputError naming the file, line and field. Blank lines are an error too:
    a JSONL artifact of this project never has one, so a blank line means a damaged file.
    """
    path = Path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise InputError(path, problem="file not found") from None
    with f:
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(path, lineno, problem=f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if not text.strip():
                raise InputError(path, lineno, problem="blank line (a JSONL record was expected)")
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as e:
                raise InputError(path, lineno, problem=f"malformed JSON: {e.msg} (column {e.colno})") from None
            if not isinstance(rec, dict):
                raise InputError(path, lineno, problem=f"expected a JSON object, got {type(rec).__name__}")
            if required:
                check_fields(rec, required, path, lineno)
            yield lineno, rec


def read_jsonl(path, required: dict | None = None) -> list[dict]:
    return [rec for _, rec in iter_jsonl(path, required)]


def read_json(path):
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, problem="file not found") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(path, problem=f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InputError(path, e.lineno, problem=f"malformed JSON: {e.msg} (column {e.colno})") from None


_TYPE_NAMES = {str: "string", int: "integer", float: "number", list: "list", dict: "object", bool: "boolean"}


def check_fields(rec: dict, required: dict, path, lineno) -> None:
    for field, types in required.items():
        if field not in rec:
            raise InputError(path, lineno, field, "missing")
        if types is not None and not isinstance(rec[field], types):
            want = types if isinstance(types, tuple) else (types,)
            names = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in want)
            raise InputError(path, lineno, field, f"expected {names}, got {type(rec[field]).__name__}")


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def count_lines(path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def file_entry(path) -> dict:
    """What a manifest says of one artifact: its name, record count and content hash."""
    path = Path(path)
    return {"file": path.name, "records": count_lines(path), "sha256": sha256_file(path)}
