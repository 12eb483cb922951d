"""Shared pytest fixtures (kept small and generic)."""

from __future__ import annotations

import pytest

from fake_openai import FakeOpenAI


@pytest.fixture
def fake_openai():
    """A loopback OpenAI-compatible server on 127.0.0.1 (see tests/fake_openai.py); stopped after the test."""
    with FakeOpenAI() as server:
        yield server
