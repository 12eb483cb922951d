"""DVC rewrites `dvc.lock` in place, so a SIGKILL inside that write leaves it cut (DVC 3.67.1; a full local test
run met it in the determinism test's kills). The recovery docs/reliability.md gives, and the kill tests apply
through workflow_utils.clear_torn_dvc_lock: remove the cut lock and rerun `dvc repro`; DVC's run cache
brings every finished stage back without running it (its outputs are checked out again from the
cache: the same bytes, new mtimes). Checked here on a two-stage pipeline laid out as
the project's (`dvc/<run>/dvc.yaml`, commands run from the repository root)."""

from __future__ import annotations

import subprocess

import yaml

from workflow_utils import clear_torn_dvc_lock, env, run


def _pipeline(d):
    # each command appends its stage's name to runs.log (not an output): a rerun shows there
    stages = {
        "upper": {"cmd": "echo upper >> runs.log && tr a-z A-Z < a.txt > b.txt", "wdir": "../..",
                  "deps": ["a.txt"], "outs": ["b.txt"]},
        "reverse": {"cmd": "echo reverse >> runs.log && sort -r b.txt > c.txt", "wdir": "../..",
                    "deps": ["b.txt"], "outs": ["c.txt"]},
    }
    (d / "dvc" / "t").mkdir(parents=True)
    (d / "dvc" / "t" / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    (d / "a.txt").write_text("alpha\nbeta\n")


def test_a_cut_dvc_lock_is_recovered_from_the_run_cache_without_running_a_stage(tmp_path):
    d = tmp_path / "repo"
    d.mkdir()
    run(["dvc", "init", "-q", "--no-scm"], cwd=d)
    _pipeline(d)
    run(["dvc", "repro", "dvc/t/dvc.yaml"], cwd=d)
    lock = d / "dvc" / "t" / "dvc.lock"
    assert (d / "runs.log").read_text().split() == ["upper", "reverse"]
    assert not clear_torn_dvc_lock(d) and lock.exists(), "a whole lock was taken for a cut one"
    outs = {p: (d / p).read_bytes() for p in ("b.txt", "c.txt")}

    # the kill of CI's failure: the lock cut just after a dependency's `hash:` key
    whole = lock.read_text()
    cut = whole.index("hash:", whole.index("reverse:")) + len("hash:")
    lock.write_text(whole[:cut])
    r = subprocess.run(["dvc", "repro", "dvc/t/dvc.yaml"], cwd=d, env=env(), capture_output=True, text=True)
    assert r.returncode != 0 and "dvc.lock" in r.stderr, "DVC now reads a cut lock: update docs/reliability.md"

    assert clear_torn_dvc_lock(d) and not lock.exists()
    r = run(["dvc", "repro", "dvc/t/dvc.yaml"], cwd=d)
    assert (d / "runs.log").read_text().split() == ["upper", "reverse"], "the recovery ran a finished stage"
    assert "Running stage" not in r.stdout and r.stdout.count("is cached - skipping run") == 2, r.stdout
    # checked out again from the cache: the same bytes (under new mtimes)
    assert {p: (d / p).read_bytes() for p in outs} == outs
    assert set(yaml.safe_load(lock.read_text())["stages"]) == {"upper", "reverse"}
    assert "up to date" in run(["dvc", "status", "dvc/t/dvc.yaml"], cwd=d).stdout
