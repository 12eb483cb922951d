"""DVC remote storage next to Snakemake: push, wipe, pull, nothing recomputes; and the two traps of
running both tools over the same files (mtimes after a pull, outputs a resumed run still needs)."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from workflow_utils import copy_repo, env, run, tree_hashes

TOY_SNAKEFILE = """
rule all:
    input: "out/b.txt"
rule make_a:
    output: "out/a.txt"
    shell: "echo a > {output}"
rule make_b:
    input: "out/a.txt"
    output: "out/b.txt"
    shell: "cat {input} > {output}; echo b >> {output}"
"""
TOY_DVC = {"stages": {
    "make_a": {"cmd": "mkdir -p out && echo a > out/a.txt", "outs": ["out/a.txt"]},
    "make_b": {"cmd": "cat out/a.txt > out/b.txt; echo b >> out/b.txt", "deps": ["out/a.txt"], "outs": ["out/b.txt"]},
}}


def _sh(cmd, cwd, check=True):
    r = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return r


@pytest.fixture
def toy(tmp_path):
    """A two-rule workflow run by Snakemake, its outputs committed to DVC and pushed to a folder remote."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "Snakefile").write_text(TOY_SNAKEFILE)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(TOY_DVC))
    _sh(["git", "init", "-q"], repo)
    _sh(["dvc", "init", "-q"], repo)
    _sh(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], repo)
    _sh(["snakemake", "--cores", "1"], repo)
    _sh(["dvc", "commit", "-f"], repo)
    _sh(["dvc", "push"], repo)
    return repo


def _pull_fresh(repo: Path):
    """A collaborator's checkout: no outputs, no DVC cache, no Snakemake metadata; then `dvc pull`
    with the output restored first (older than its input: checkout order is not the DAG's). The output
    is dated back rather than the input forward: a future input mtime makes `snakemake --touch` refuse
    (it reads a touched output older than its input as clock skew)."""
    for d in ("out", ".dvc/cache", ".snakemake"):
        shutil.rmtree(repo / d, ignore_errors=True)
    _sh(["dvc", "pull"], repo)
    earlier = time.time() - 60
    os.utime(repo / "out" / "b.txt", (earlier, earlier))


def _planned(repo: Path, *extra) -> str:
    r = _sh(["snakemake", "-n", "--cores", "1", *extra], repo)
    return r.stdout + r.stderr


def test_snakemake_reruns_nothing_after_dvc_pull_and_touch(toy):
    _pull_fresh(toy)
    assert "up to date" in _sh(["dvc", "status"], toy).stdout
    # the trap: Snakemake compares mtimes and would rerun make_b (rerun triggers do not turn it off)
    assert "make_b" in _planned(toy)
    assert "make_b" in _planned(toy, "--rerun-triggers", "params", "input", "software-env", "code")
    # the documented fix: DVC has checked every output against dvc.lock, so mark them finished
    before = tree_hashes(toy / "out")
    _sh(["snakemake", "--touch", "--cores", "1"], toy)
    assert "Nothing to be done" in _planned(toy)
    assert tree_hashes(toy / "out") == before


def test_dvc_pull_does_not_delete_an_output_a_run_resumes_from(toy):
    # a Snakemake run in progress has rewritten out/b.txt; a pull without --force must keep it
    (toy / "out" / "b.txt").write_text("partial\n")
    r = _sh(["dvc", "pull"], toy, check=False)
    assert r.returncode != 0 and "--force" in r.stdout + r.stderr
    assert (toy / "out" / "b.txt").read_text() == "partial\n"
    r = _sh(["dvc", "checkout"], toy, check=False)
    assert r.returncode != 0
    assert (toy / "out" / "b.txt").read_text() == "partial\n"


# the ci stages the round trip computes: the data stage takes seconds; adding "convert_model",
# "generate_candidates" and "gather_candidates" covers model conversion and generation (minutes of CPU)
ROUND_TRIP_STAGES = ("prepare_data",)


def _ci_stages(repo: Path) -> list[str]:
    stages = yaml.safe_load((repo / "dvc" / "ci" / "dvc.yaml").read_text())["stages"]
    wanted = [s for s in stages if s in ROUND_TRIP_STAGES or s.startswith(tuple(f"{t}_" for t in ROUND_TRIP_STAGES))]
    assert wanted, "no stage to round-trip"
    return [f"dvc/ci/dvc.yaml:{s}" for s in wanted]


@pytest.mark.slow
def test_remote_round_trip_of_the_ci_profile(tmp_path):
    """push every computed stage's outputs and the run cache to a folder remote, wipe data/ and the
    cache, pull: `dvc status` is clean, `dvc repro` and Snakemake recompute nothing."""
    repo = copy_repo(tmp_path / "repo")
    targets = _ci_stages(repo)
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], cwd=repo)
    run(["dvc", "repro", *targets], cwd=repo)
    before = tree_hashes(repo / "data" / "ci")
    run(["dvc", "push", "--run-cache", *targets], cwd=repo)

    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / ".snakemake", ignore_errors=True)
    run(["dvc", "pull", "--run-cache", *targets], cwd=repo)
    assert tree_hashes(repo / "data" / "ci") == before
    assert "up to date" in run(["dvc", "status", *targets], cwd=repo).stdout
    out = run(["dvc", "repro", *targets], cwd=repo).stdout
    assert "Running stage" not in out, out
    assert tree_hashes(repo / "data" / "ci") == before

    outputs = [p for p in ("data/ci/splits/manifest.json", "data/ci/candidates/manifest.json")
               if (repo / p).exists()]
    # targets before --configfile (it takes several values)
    sm = ["snakemake", *outputs, "--cores", "2", "--configfile", "config/ci.yaml"]
    run(sm + ["--touch"], cwd=repo)
    r = run(sm + ["-n"], cwd=repo)
    assert "Nothing to be done" in r.stdout + r.stderr, r.stdout[-3000:]
    assert tree_hashes(repo / "data" / "ci") == before
