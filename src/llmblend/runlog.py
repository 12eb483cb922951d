"""Per-job logging and progress bars.

Each stage logs to a file in the run's log folder (the rule's `log:`) and to stderr. Progress bars
show rates (items/s, tokens/s) and an ETA; they go to stderr so stdout stays clean for piping.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from tqdm.auto import tqdm

log = logging.getLogger("llmblend")


def setup_logging(log_file=None, level=logging.INFO) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    root = logging.getLogger("llmblend")
    root.handlers.clear()
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(level)
    root.propagate = False


def progress(iterable=None, desc: str = "", total=None, unit: str = "it", **kw):
    """A tqdm bar on stderr; `unit` names what is counted so the rate reads as e.g. 'tok/s'."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, dynamic_ncols=True,
                mininterval=1.0, smoothing=0.1, **kw)
