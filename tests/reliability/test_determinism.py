"""Determinism: the `ci` profile run twice from scratch, in two fresh copies, gives byte-identical
artifacts and metrics on CPU.

The whole ci DAG (real SmolLM2 generation, metrics, ranker and fuser training) takes longer than the
suite's 10-minute budget on a 2-core machine, so by default the run stops after the stages that feed
every later one (splits, candidates of the openai-free hf generators, scores); RELIABILITY_CI_FULL=1
runs `rule all`. The openai-backed stages are compared three ways (Snakemake, Snakemake after kills,
DVC after kills) in test_workflow_kills.py.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from rel_figures import FIGURES
from workflow_setup import normalized
from workflow_utils import copy_repo, run

pytestmark = pytest.mark.slow

FULL = os.environ.get("RELIABILITY_CI_FULL") == "1"
TARGETS = [] if FULL else ["data/ci/scored/test.jsonl"]


def artifacts(root):
    """Everything under data/ci and results/ci except logs and benchmarks (wall times live there);
    JSON reports and CSV curves without their wall-time fields (`seconds`, `*_per_s`)."""
    out = {}
    for top in (root / "data" / "ci", root / "results" / "ci"):
        for p in sorted(top.rglob("*")) if top.exists() else []:
            rel = str(p.relative_to(root))
            if p.is_file() and not rel.startswith(("results/ci/logs/", "results/ci/benchmarks/")):
                out[rel] = hashlib.sha256(normalized(p)).hexdigest()
    return out


def test_ci_profile_twice_from_scratch_is_byte_identical(tmp_path):
    runs = []
    for name in ("first", "second"):
        d = copy_repo(tmp_path / name)
        run(["snakemake", *TARGETS, "--cores", "2", "--configfile", "config/ci.yaml"], cwd=d, timeout=3000)
        runs.append(artifacts(d))
    a, b = runs
    assert a, "the ci run wrote nothing"
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    assert not differ, f"{len(differ)} artifacts differ between two runs: {differ[:10]}"
    FIGURES["determinism.ci_artifacts_compared"] += len(a)
