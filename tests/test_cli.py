"""The `llmblend` command's own surface: --version, and a one-line description on every subcommand."""

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import llmblend
from llmblend.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _subparsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_version_is_the_package_version():
    want = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert llmblend.__version__ == want
    r = subprocess.run([sys.executable, "-m", "llmblend.cli", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == f"llmblend {want}"


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_every_subcommand_help_opens_with_one_line_saying_what_it_does(name):
    text = _subparsers()[name].format_help()
    # usage block, blank line, then the description paragraph
    description = text.split("\n\n")[1].strip()
    assert not description.startswith(("options:", "positional")), f"no description:\n{text[:400]}"
    assert len(description.split()) >= 3, description
