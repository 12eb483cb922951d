"""Determinism and runner parity on the `ci` profile (real SmolLM2 generation, metrics, the three
rankers, the fuser, the verifier, the aggregator, evaluate and the report), all on CPU.

- The whole ci DAG is run once by Snakemake (`rule all`): the reference.
- A second fresh copy runs the stages that feed every later one (splits, candidates, scores) again:
  byte-identical to the reference's.
- A third copy takes the reference's upstream outputs (committed into DVC as they are), loses every
  output of the ranker, fuser and evaluate stages, and runs them with `dvc repro`, SIGKILLed at seeded
  moments inside those stages and restarted until done: it must end byte-identical to the Snakemake
  reference (runner parity and kill/resume at once), DVC must see it up to date, and no stage that had
  finished before a kill may run again.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from rel_figures import FIGURES
from workflow_setup import normalized
from workflow_utils import clear_torn_dvc_lock, clear_torn_dvc_rwlock, copy_repo, env, run

pytestmark = pytest.mark.slow

UPSTREAM_TARGET = "data/ci/scored/test.jsonl"
PIPELINE = "dvc/ci/dvc.yaml"
# the DVC stages of the ranker, fuser and evaluate families (workflow/rules/rank.smk, fuse.smk, evaluate.smk)
DOWNSTREAM = ("train_ranker", "rank_", "build_fuser_data", "train_fuser", "fuse_candidates", "verify_fused",
              "aggregate_candidates", "judge_fused", "score_fused", "evaluate", "build_report")
KILLS = 3


def artifacts(root, resumed: bool = False):
    """Everything under data/ci and results/ci except logs and benchmarks (wall times live there);
    JSON reports and CSV curves without their wall-time fields (`seconds`, `*_per_s`) and, after a
    kill (`resumed`), without the counts of what the last run did itself."""
    out = {}
    for top in (root / "data" / "ci", root / "results" / "ci"):
        for p in sorted(top.rglob("*")) if top.exists() else []:
            rel = str(p.relative_to(root))
            # the judge's label caches are state kept across reruns, not artifacts (empty with ci's rubric
            # judge); Snakemake marks a directory output with a timestamp file that DVC does not write
            if p.is_file() and not rel.startswith(("results/ci/logs/", "results/ci/benchmarks/")) \
                    and "/cache/" not in rel and p.name != ".snakemake_timestamp":
                out[rel] = hashlib.sha256(normalized(p, resumed)).hexdigest()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = copy_repo(tmp_path_factory.mktemp("reference"))
    run(["snakemake", "--cores", "2", "--configfile", "config/ci.yaml"], cwd=d, timeout=3000)
    return d


def test_ci_upstream_twice_from_scratch_is_byte_identical(reference, tmp_path):
    d = copy_repo(tmp_path / "second")
    run(["snakemake", UPSTREAM_TARGET, "--cores", "2", "--configfile", "config/ci.yaml"], cwd=d, timeout=3000)
    ref, again = artifacts(reference), artifacts(d)
    assert again and UPSTREAM_TARGET in again
    differ = sorted(k for k in again if ref.get(k) != again[k])
    assert not differ, f"{len(differ)} artifacts differ between two runs: {differ[:10]}"
    FIGURES["determinism.ci_artifacts_compared"] += len(again)


def _outs(stage: dict) -> list[str]:
    return [o if isinstance(o, str) else next(iter(o)) for o in stage.get("outs", [])]


def _finished(d) -> set[str] | None:
    """The stages dvc.lock records: finished (a stage is written to the lock when it completes).
    None while DVC is rewriting the lock (read half-written)."""
    lock = d / "dvc" / "ci" / "dvc.lock"
    try:
        return set((yaml.safe_load(lock.read_text()) or {}).get("stages", {})) if lock.exists() else set()
    except yaml.YAMLError:
        return None


def _mtimes(d, paths) -> dict:
    out = {}
    for rel in paths:
        p = d / rel
        for f in ([p] if p.is_file() else sorted(p.rglob("*")) if p.exists() else []):
            if f.is_file():
                out[str(f.relative_to(d))] = f.stat().st_mtime_ns
    return out


def test_dvc_killed_in_the_ranker_fuser_and_evaluate_stages_matches_snakemake(reference, tmp_path):
    stages = yaml.safe_load((reference / PIPELINE).read_text())["stages"]
    down = [s for s in stages if s.startswith(DOWNSTREAM)]
    up = [s for s in stages if s not in down]
    assert {"train_ranker_pairranker", "train_fuser", "fuse_candidates", "evaluate"} <= set(down)
    d = tmp_path / "dvc"
    shutil.copytree(reference, d, symlinks=True, ignore=shutil.ignore_patterns(".snakemake"))
    for s in down:
        for o in _outs(stages[s]):
            p = d / o
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    run(["dvc", "commit", "-f", *[f"{PIPELINE}:{s}" for s in up]], cwd=d)
    assert _finished(d) == set(up)

    rng = random.Random(2026)
    cmd = ["dvc", "repro", PIPELINE]
    seen = set(up)  # the stages the last whole lock recorded
    for k in range(KILLS + 1):
        if k and clear_torn_dvc_rwlock(d):  # the kill landed inside DVC's own rwlock write
            FIGURES["dvc_rwlock_torn_by_kill.ci_downstream_dvc"] += 1
        torn = bool(k) and clear_torn_dvc_lock(d)  # ... or inside its rewrite of dvc.lock
        if torn:
            FIGURES["dvc_lock_torn_by_kill.ci_downstream_dvc"] += 1
        done_before = seen if torn else _finished(d)
        kept = _mtimes(d, [o for s in done_before & set(down) for o in _outs(stages[s])])
        sums = {f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in kept} if torn else None
        log = tmp_path / f"repro-{k}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=d, env=env(), stdout=out, stderr=subprocess.PIPE,
                                    start_new_session=True)
        if k < KILLS:
            # kill once one to three more downstream stages have finished, inside the next one
            target = len(done_before) + rng.randint(1, 3)
            deadline = time.monotonic() + 1500
            while len(_finished(d) or ()) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(rng.uniform(0.5, 4.0))  # into the next stage's work, not between two stages
            assert proc.poll() is None, f"run {k} ended before its kill:\n{proc.stderr.read().decode()[-3000:]}"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            FIGURES["kills_survived.ci_downstream_dvc"] += 1
            now = _finished(d)
            seen = now if now is not None else seen
            assert now is None or now < set(stages), "the kill landed after the last stage"
        else:
            rc = proc.wait(timeout=3000)
            assert rc == 0, proc.stderr.read().decode()[-4000:]
        # a stage that had finished before this run was not run again: its outputs were not rewritten,
        # or, after a cut lock was removed, it came back from DVC's run cache (same bytes, new mtimes)
        if torn:
            ran = [s for s in done_before if f"Running stage '{PIPELINE}:{s}'" in log.read_text()]
            assert not ran, f"run {k} redid stages that had finished before it: {ran}"
            assert {f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in kept} == sums
        else:
            assert _mtimes(d, kept) == kept, f"run {k} redid stages that had finished before it"

    got, want = artifacts(d, resumed=True), artifacts(reference, resumed=True)
    differ = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    assert not differ, f"DVC after {KILLS} kills differs from the Snakemake run in {len(differ)} files: {differ[:10]}"
    assert "up to date" in run(["dvc", "status", PIPELINE], cwd=d).stdout
    FIGURES["parity.ci_downstream_artifacts_compared"] += len(got)
