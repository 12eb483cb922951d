"""Reliability suite: shared helpers and the figures summary printed at the end of the run."""

from __future__ import annotations

import json
import os

from rel_figures import FIGURES


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for key in sorted(FIGURES):
        terminalreporter.write_line(f"{key}: {FIGURES[key]}")
    out = os.environ.get("RELIABILITY_FIGURES")
    if out:
        with open(out, "w") as f:
            json.dump(dict(sorted(FIGURES.items())), f, indent=2)
