"""Disk full and read-only output folders: a clear one-line error, exit 2, and no artifact left behind.

The output folder of each stage's command is a full tmpfs (mounted small and filled up) or a read-only
bind mount. The suite runs as root, so permissions would not stop a write: real mounts are used, and
the tests are skipped (with the reason) where mounting is not allowed.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from rel_figures import FIGURES
from test_bad_input import STAGES, error_line, record, ranking, run_cli, stage_command, write_inputs


def _mount(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


def _can_mount() -> str | None:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rel-mnt-") as d:
        r = _mount("-t", "tmpfs", "-o", "size=8k", "tmpfs", d)
        if r.returncode != 0:
            return f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})"
        subprocess.run(["umount", d], check=True)
    return None


@pytest.fixture(scope="module", autouse=True)
def mounts_allowed():
    """Tried when a test of this module runs, not when pytest collects it (collecting must not mount)."""
    reason = _can_mount()
    if reason:
        pytest.skip(reason)


@contextlib.contextmanager
def full_disk(folder: Path):
    """A tmpfs on `folder` with every byte taken by a filler file."""
    folder.mkdir(parents=True, exist_ok=True)
    r = _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder))
    assert r.returncode == 0, r.stderr
    try:
        with open(folder / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@contextlib.contextmanager
def read_only(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "filler").write_bytes(b"kept")
    assert _mount("--bind", str(folder), str(folder)).returncode == 0
    try:
        r = _mount("-o", "remount,bind,ro", str(folder))
        assert r.returncode == 0, r.stderr
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.mark.parametrize("how", ["disk_full", "read_only"])
@pytest.mark.parametrize("stage", STAGES)
def test_unwritable_output_gives_a_clear_error_and_no_artifact(stage, how, tmp_path):
    line = ranking(0) if stage == "evaluate-rankings" else record(0)
    import json

    inp, cfg = write_inputs(tmp_path, stage, 1, json.dumps(line).encode())
    argv, out = stage_command(stage, tmp_path, inp, cfg)
    with (full_disk if how == "disk_full" else read_only)(out):
        rc, err = run_cli(argv)
        # folders may be made before the first write fails; files may not be left (a generation
        # shard's answer log would be kept if it held an answer: its resume state; here none is finished)
        left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "filler")
    FIGURES[f"unwritable_outputs_tried.{how}"] += 1
    assert rc == 2, f"{stage}/{how}: exit {rc}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    last = error_line(err, argv[0])
    assert str(out) in last, last
    assert ("No space left" in last) if how == "disk_full" else ("Read-only" in last), last
    assert not left, f"{stage}/{how}: left behind {left}"
