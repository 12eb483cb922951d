"""The openai judge stage against the loopback server, run as the `llmblend judge-pairs` command.

Candidates carry a quality tag "q<d>"; the fake judge prefers the higher tag whatever the order shown,
so every label is predictable, and a candidate tagged "q9" makes it answer outside the four labels.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# made at run time, so the only way it reaches a file is a leak (the source holds no copy of it)
KEY = "sk-reliability-" + __import__("uuid").uuid4().hex
MODELS = ["m0", "m1", "m2", "m3"]
_CAND = re.compile(r"Candidate A:\n(.*?)\n\nCandidate B:\n(.*?)\n\n", re.S)


def expected_label(qa: int, qb: int) -> str:
    return "A is better" if qa > qb else "B is better" if qb > qa else "Same good"


def fair_judge(req: dict) -> str:
    a, b = _CAND.search(req["messages"][-1]["content"]).groups()
    qa, qb = int(re.search(r"q(\d)", a).group(1)), int(re.search(r"q(\d)", b).group(1))
    if 9 in (qa, qb):
        return "I would rather not say which one is better."
    return expected_label(qa, qb)


def quality(i: int, k: int) -> int:
    return (k * 7 + i * 3) % 4


def write_candidates(path: Path, n_examples: int, refusing: set[int] = frozenset()) -> Path:
    """`refusing`: examples whose last candidate is tagged q9 (the judge then answers off-label)."""
    with open(path, "w") as f:
        for i in range(n_examples):
            cands = []
            for k, m in enumerate(MODELS):
                q = 9 if (i in refusing and k == len(MODELS) - 1) else quality(i, k)
                cands.append({"model": m, "text": f"answer {i} from {m} q{q}"})
            f.write(json.dumps({"id": f"ex{i:03d}", "instruction": f"Say something about {i}", "input": "",
                                "output": "a reference", "candidates": cands}) + "\n")
    return path


def write_config(path: Path, base_url: str, **openai_over) -> Path:
    cfg = {"judge": {"backend": "openai", "max_usd": 10.0,
                     "openai": {"model": "judge-1", "base_url": base_url, "backoff_s": 0.01, "max_backoff_s": 0.05,
                                "timeout_s": 2.0, "max_attempts": 4, "concurrency": 2, **openai_over}}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def judge_cmd(d: Path, conf: Path, extra: list[str] | None = None) -> list[str]:
    return [sys.executable, "-m", "llmblend.cli", "judge-pairs", "--config", str(ROOT / "params.yaml"),
            "--config", str(conf), "--split", "test", "--candidates", str(d / "candidates.jsonl"),
            "--out", str(d / "judge" / "test.jsonl"), "--metrics", str(d / "metrics" / "judge_test.json"),
            "--cache", str(d / "judge" / "cache" / "test.sqlite"), "--log", str(d / "logs" / "judge.log"),
            *(extra or [])]


def env() -> dict:
    e = dict(os.environ)
    e["OPENAI_API_KEY"] = KEY
    e["HF_HUB_OFFLINE"] = "1"
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    return e


def run_judge(d: Path, conf: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(judge_cmd(d, conf), env=env(), capture_output=True, text=True, timeout=timeout)


def read_labels(d: Path) -> list[dict]:
    return [json.loads(line) for line in open(d / "judge" / "test.jsonl")]


def read_metrics(d: Path) -> dict:
    return json.loads((d / "metrics" / "judge_test.json").read_text())
