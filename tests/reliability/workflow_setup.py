"""A small profile ("rel") whose generators and judge are the openai backends against the loopback
server, run by Snakemake and by DVC in a throw-away copy of the repository.

prepare_data -> generate_candidates (2 openai generators) -> gather_candidates -> judge_pairs (openai):
every generation and judge call reaches the fake server, where it is counted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import yaml

from workflow_utils import copy_repo, env as wf_env

# made at run time, so the only way it reaches a file is a leak (the source holds no copy of it)
KEY = "sk-reliability-" + __import__("uuid").uuid4().hex
GENERATORS = ["api-alpha", "api-beta"]
N_ITEMS, N_TEST = 24, 8
TARGET = "data/rel/judge/test.jsonl"
_CAND = re.compile(r"Candidate A:\n(.*?)\n\nCandidate B:\n(.*?)\n\n", re.S)


def serve(req: dict) -> str:
    """Deterministic replies: a judge compares lengths; a generator echoes a hash-picked answer."""
    last = req["messages"][-1]["content"]
    m = _CAND.search(last)
    if m:
        a, b = (len(x) for x in m.groups())
        return "A is better" if a > b else "B is better" if b > a else "Same good"
    h = hashlib.sha256(f"{req['model']}|{last}".encode()).hexdigest()
    return f"Answer {h[:int(h[0], 16) + 4]} from {req['model']}"


def is_judge(body: dict | None) -> bool:
    return bool(body) and bool(_CAND.search(body["messages"][-1]["content"]))


def profile(base_url: str) -> dict:
    gens = [{"name": n, "backend": "openai", "decoding": {"method": "greedy", "max_new_tokens": 16},
             "openai": {"model": f"gen-{n}", "base_url": base_url, "api_key_env": "OPENAI_API_KEY",
                        "concurrency": 2, "max_retries": 3, "timeout": 10.0}} for n in GENERATORS]
    return {
        "run": "rel",
        "data": {"sources": [{"type": "demo", "name": "demo", "n_items": N_ITEMS}],
                 "split": {"sizes": {"val": 4, "test": N_TEST, "train": "rest"}}},
        "generate": {"shards": 1, "splits": ["train", "val", "test"], "generators": gens},
        "judge": {"backend": "openai", "splits": ["test"],
                  "openai": {"model": "judge-1", "base_url": base_url, "backoff_s": 0.01, "max_backoff_s": 0.05,
                             "timeout_s": 10.0, "max_attempts": 4, "concurrency": 2}},
    }


def env() -> dict:
    e = wf_env()
    e["OPENAI_API_KEY"] = KEY
    return e


def make_copy(dest: Path, base_url: str) -> Path:
    copy_repo(dest)
    (dest / "config" / "rel.yaml").write_text(yaml.safe_dump(profile(base_url), sort_keys=False))
    run(["llmblend", "export-dvc"], dest)
    assert (dest / "dvc" / "rel" / "dvc.yaml").exists()
    return dest


def run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    return r


SNAKEMAKE = ["snakemake", TARGET, "--cores", "2", "--configfile", "config/rel.yaml"]


def dvc_stages(dest: Path) -> list[str]:
    """The DVC stages the target needs (all of them in the rel pipeline up to judge_pairs)."""
    stages = yaml.safe_load((dest / "dvc" / "rel" / "dvc.yaml").read_text())["stages"]
    return [f"dvc/rel/dvc.yaml:{s}" for s in stages if s.startswith("judge_pairs")]


def popen(cmd: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


# what a run's report may say differently from another run of the same inputs: wall time, and (after a
# kill) how much of the work this run did itself rather than found done
TIMING = lambda k: k == "seconds" or k.endswith("_per_s")  # noqa: E731
# run accounting (what this very run asked, paid and retried): after a kill it counts only the
# resumed run's share, by design; the labels and data files themselves are compared byte for byte
RESUME_KEYS = {"resumed", "generated", "calls", "cache_hits", "spent_usd", "backend_stats", "calls_planned",
               "estimate_usd", "new_tokens", "retries", "prompt_tokens", "completion_tokens", "usd", "attempts",
               "tokens", "faults", "stats", "cached_at_start", "fused_now", "asked", "cached"}


def normalized(path: Path, resumed: bool = False) -> bytes:
    """A file's bytes; for a JSON report or a CSV curve, without the keys that describe the run itself."""
    raw = path.read_bytes()

    def drop(obj):
        if isinstance(obj, dict):
            return {k: drop(v) for k, v in obj.items() if not TIMING(k) and not (resumed and k in RESUME_KEYS)}
        if isinstance(obj, list):
            return [drop(v) for v in obj]
        return obj

    if path.suffix == ".json":
        return json.dumps(drop(json.loads(raw)), sort_keys=True).encode()
    if path.suffix == ".csv":
        rows = [line.split(b",") for line in raw.splitlines()]
        keep = [i for i, name in enumerate(rows[0]) if not TIMING(name.decode())] if rows else []
        return b"\n".join(b",".join(r[i] for i in keep) for r in rows)
    return raw


def outputs(dest: Path, resumed: bool = False) -> dict[str, bytes]:
    """The run's data artifacts (not logs, benchmarks or caches): what must be byte-identical."""
    out = {}
    for p in sorted((dest / "data" / "rel").rglob("*")):
        rel = str(p.relative_to(dest))
        if p.is_file() and "/cache/" not in rel and not p.name.startswith("."):
            out[rel] = normalized(p, resumed)
    for p in sorted((dest / "results" / "rel" / "metrics").glob("*.json")):
        out[str(p.relative_to(dest))] = normalized(p, resumed)
    return out


def differences(got: dict[str, bytes], want: dict[str, bytes]) -> str:
    """What differs between two outputs() maps, short enough to read in a CI log: the missing and
    extra files, and for each differing file the first differing byte with some context."""
    lines = [f"missing: {k}" for k in sorted(want.keys() - got.keys())]
    lines += [f"extra: {k}" for k in sorted(got.keys() - want.keys())]
    for k in sorted(got.keys() & want.keys()):
        a, b = got[k], want[k]
        if a != b:
            i = next((j for j in range(min(len(a), len(b))) if a[j] != b[j]), min(len(a), len(b)))
            lines.append(f"differs: {k} at byte {i} of {len(a)} vs {len(b)}:\n  got  {a[max(0, i - 120):i + 120]!r}"
                         f"\n  want {b[max(0, i - 120):i + 120]!r}")
    return "\n".join(lines)


def all_files(dest: Path):
    for root, dirs, files in os.walk(dest):
        for f in files:
            yield Path(root) / f
