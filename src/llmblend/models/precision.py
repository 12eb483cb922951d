"""`auto` precision: bf16 where the hardware computes it natively, fp32 elsewhere.

Every precision setting (ranker.train.autocast, ranker.infer.autocast, fuser.train.bf16, fuser.dtype,
a transformers generator's hf.dtype) also accepts `auto`. `load_config` resolves it, in the process
that runs the job, by one rule: bf16 when that job's device has native bf16 matrix instructions (a
CUDA GPU that torch reports bf16-capable; else a CPU whose flags include avx512_bf16 or amx_bf16), fp32
otherwise. On other CPUs torch emulates bf16, several times slower than fp32 (docs/ranker.md), so a
profile that names bf16 outright is slow there; `auto` keeps it fast on both. The price: the same
profile gives bf16 results on one machine and fp32 results on another (logits ~1e-2 apart,
docs/results.md). So the rule stays out of the default and `ci` profiles (fp32, byte-reproducible),
DVC params hold the word `auto` (the rule), and what it became is written in the config
(`_precision`), logged by every job that resolves it and kept in the trainings' reports and the run's
report.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

AUTO = "auto"
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
RULE = ("auto = bf16 where the job's device has native bf16 (a CUDA GPU with bf16, or a CPU with "
        + " or ".join(NATIVE_BF16_CPU_FLAGS) + "), else fp32")

# the settings that accept `auto`: (dotted path, its bf16 value, its fp32 value); "*" walks a list
AUTO_SETTINGS = (
    ("ranker.train.autocast", "bfloat16", None),
    ("ranker.infer.autocast", "bfloat16", None),
    ("fuser.train.bf16", True, False),
    ("fuser.dtype", "bfloat16", "float32"),
    ("fuser.aggregator.generator.hf.dtype", "bfloat16", "float32"),
    ("generate.generators.*.hf.dtype", "bfloat16", "float32"),
)
VALUES = {dotted: (bf16, fp32) for dotted, bf16, fp32 in AUTO_SETTINGS}

log = logging.getLogger("llmblend.models")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The first CPU's flags in /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cuda_bf16() -> tuple[bool, str] | None:
    """(native?, evidence) for the job's GPU, or None when the job runs on the CPU. torch is imported
    only where a GPU may be present: the lightweight jobs of a CPU machine stay free of it."""
    if not (Path("/dev/nvidia0").exists() or Path("/dev/nvidiactl").exists()):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    ok = bool(torch.cuda.is_bf16_supported())
    return ok, f"CUDA device {name}: bf16 {'supported' if ok else 'not supported'}"


@lru_cache(maxsize=None)
def native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[bool, str]:
    """(whether this process's device has native bf16, the evidence as one line); asked once a process."""
    cuda = _cuda_bf16()
    if cuda is not None:
        return cuda
    have = [f for f in NATIVE_BF16_CPU_FLAGS if f in cpu_flags(cpuinfo)]
    if have:
        return True, "CPU flags " + ", ".join(have)
    return False, "CPU flags without " + " or ".join(NATIVE_BF16_CPU_FLAGS)


def _walk(node, keys: list[str], path: str):
    """(parent, key, dotted path) of each existing leaf at `keys` below `node`."""
    if not keys:
        return
    head, rest = keys[0], keys[1:]
    if head == "*":
        for i, item in enumerate(node if isinstance(node, list) else []):
            yield from _walk(item, rest, f"{path}.{i}")
        return
    if not isinstance(node, dict) or head not in node:
        return
    here = f"{path}.{head}" if path else head
    if rest:
        yield from _walk(node[head], rest, here)
    else:
        yield node, head, here


def resolve_auto(cfg: dict, cpuinfo: str | Path = "/proc/cpuinfo") -> dict | None:
    """Replace every `auto` of AUTO_SETTINGS in `cfg` (in place) by its bf16 or fp32 value, by RULE.
    Returns what was decided, also stored as cfg["_precision"]: rule, native_bf16, evidence and
    resolved {dotted path: value}; None (and nothing probed) when the config has no `auto`."""
    spots = [(parent, key, path, bf16, fp32) for dotted, bf16, fp32 in AUTO_SETTINGS
             for parent, key, path in _walk(cfg, dotted.split("."), "") if parent[key] == AUTO]
    if not spots:
        return None
    native, evidence = native_bf16(cpuinfo)
    resolved = {}
    for parent, key, path, bf16, fp32 in spots:
        parent[key] = bf16 if native else fp32
        resolved[path] = parent[key]
    decided = {"rule": RULE, "native_bf16": native, "evidence": evidence, "resolved": resolved}
    cfg["_precision"] = decided
    log.info("precision auto -> %s (%s): %s", "bf16" if native else "fp32", evidence,
             ", ".join(f"{k}={v}" for k, v in resolved.items()))
    return decided


def resolve(value, setting: str):
    """One setting as a function's caller gives it (the Python API, e.g. `Blender(autocast="auto")`):
    `auto` becomes the bf16 or fp32 value AUTO_SETTINGS gives `setting` (its dotted path there), by RULE;
    any other value is returned as is."""
    bf16, fp32 = VALUES[setting]
    if not (isinstance(value, str) and value == AUTO):
        return value
    return bf16 if native_bf16()[0] else fp32
