"""Shared pytest fixtures (kept small and generic)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI


@pytest.fixture
def fake_openai():
    """A loopback OpenAI-compatible server on 127.0.0.1 (see tests/fake_openai.py); stopped after the test."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="session")
def study_ranker():
    """benchmarks/study_ranker.py loaded as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "study_ranker", Path(__file__).resolve().parents[1] / "benchmarks" / "study_ranker.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["study_ranker"] = mod
    spec.loader.exec_module(mod)
    return mod
