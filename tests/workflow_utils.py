"""Helpers for tests that run the workflow: a throw-away copy of the repository and tool runners."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e["HF_HUB_OFFLINE"] = "1"
    e["HF_DATASETS_OFFLINE"] = "1"
    e.setdefault("LLMBLEND_MIRROR", str((ROOT.parent / "shared" / "mirror").resolve()))
    return e


def copy_repo(dest: Path) -> Path:
    """The repository's tracked and untracked-not-ignored files, as a fresh git repo (DVC needs one)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for f in files:
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def run(cmd: list[str], cwd: Path, timeout: int = 1800) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    return r


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root (relative path -> hash)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def clear_torn_dvc_rwlock(repo: Path) -> bool:
    """DVC rewrites `.dvc/tmp/rwlock` in place (truncate, then write JSON), so a SIGKILL inside that
    write leaves it empty or cut, and every later `dvc` command refuses with "Unable to read
    RWLock-file ... JSON structure is corrupted" (upstream: treeverse/dvc#7615, still so in 3.67.1).
    With no DVC process alive the file holds nothing worth keeping; removing it is the documented
    recovery (docs/reliability.md). Returns whether the file was torn (and removed)."""
    p = repo / ".dvc" / "tmp" / "rwlock"
    try:
        json.loads(p.read_text())
    except FileNotFoundError:
        return False
    except ValueError:
        p.unlink()
        return True
    return False


def clear_torn_dvc_lock(repo: Path) -> bool:
    """Remove each `dvc/<run>/dvc.lock` that DVC's own lock schema rejects: cut by a SIGKILL inside
    DVC's in-place rewrite (`dvc.utils.serialize._common._dump_data` opens it "w+", DVC 3.67.1). Why
    removing it loses no work: docs/reliability.md, checked by tests/test_dvc_torn_lock.py. Returns
    whether a lock was torn (and removed)."""
    import yaml
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA
    from voluptuous import Invalid

    torn = False
    for lock in sorted(repo.glob("dvc/*/dvc.lock")):
        try:
            data = yaml.safe_load(lock.read_text(encoding="utf-8"))
            COMPILED_LOCKFILE_SCHEMA(data)
        except (yaml.YAMLError, Invalid, UnicodeDecodeError):
            lock.unlink()
            torn = True
    return torn
