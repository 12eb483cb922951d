"""The demo instruction set: deterministic, varied, and every reference passes its own rubric."""

from collections import Counter

import pytest

from llmblend.data.demo import FAMILIES, generate_demo
from llmblend.data.rubric import evaluate_rubric, rubric_score, run_check


def test_demo_is_deterministic_in_seed():
    a = list(generate_demo(200, seed=7))
    b = list(generate_demo(200, seed=7))
    c = list(generate_demo(200, seed=8))
    assert a == b
    assert a != c


def test_demo_covers_every_family_and_has_references_and_rubrics():
    recs = list(generate_demo(500, seed=1))
    fams = Counter(r["source"].split("/")[1] for r in recs)
    assert set(fams) == set(FAMILIES)
    for r in recs:
        assert r["output"].strip() and r["rubric"]
        assert r["instruction"].strip()


def test_every_reference_passes_its_own_rubric():
    for r in generate_demo(3000, seed=3):
        assert all(evaluate_rubric(r["output"], r["rubric"])), (r["instruction"], r["input"], r["output"], r["rubric"])


@pytest.mark.parametrize("text,check,expected", [
    ("The capital of France is Paris.", {"check": "contains", "value": "Paris"}, True),
    ("Parisian food", {"check": "contains", "value": "Paris"}, False),
    ("3 + 4 = 7 apples", {"check": "number", "value": 7}, True),
    ("3 + 4 = 8 apples", {"check": "number", "value": 7}, False),
    ("red, blue, green", {"check": "item_count", "value": 3}, True),
    ("1. red\n2. blue", {"check": "item_count", "value": 2}, True),
    ("red, blue, car", {"check": "items_from", "value": ["red", "blue", "green"]}, False),
    ("HELLO THERE.", {"check": "all_caps"}, True),
    ("Hello there.", {"check": "all_caps"}, False),
    ("  hello   world. ", {"check": "equals", "value": "hello world"}, True),
    ("", {"check": "max_words", "value": 5}, False),
    ("one two three", {"check": "max_words", "value": 2}, False),
])
def test_rubric_checks(text, check, expected):
    assert run_check(text, check) is expected


def test_wrong_answers_fail_some_checks():
    recs = list(generate_demo(300, seed=5))
    scores = [rubric_score("I don't know.", r["rubric"]) for r in recs]
    assert min(scores) < 1.0 and sum(s == 1.0 for s in scores) < len(scores) // 4
