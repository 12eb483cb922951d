"""GPT-Rank and the ">= X" helpers against hand-computed examples of the reference rule."""

import pytest

from llmblend.judge import gpt_rank
from llmblend.judge.labels import flip, label_for, parse_reply

MODELS = ["a", "b", "c"]


def test_reference_rule_wins_minus_losses_ties_cancel():
    cmps = {"a,b": "A is better", "c,a": "B is better", "b,c": "Same good"}
    # a beats b and c: score 4; b and c tie with each other (cancels) and lose to a: -2 each
    assert gpt_rank.scores(cmps, MODELS) == [4.0, -2.0, -2.0]
    assert gpt_rank.gpt_ranks(cmps, MODELS) == [1, 2, 2]


def test_same_bad_cancels_and_failures_are_not_ties():
    cmps = {"a,b": "Same bad", "b,c": "B is better", "a,c": "error"}
    assert gpt_rank.scores(cmps, MODELS) == [0.0, -2.0, 2.0]
    assert gpt_rank.gpt_ranks(cmps, MODELS) == [2, 3, 1]
    assert gpt_rank.gpt_ranks({"a,b": "inconsistent", "b,c": "unparsable"}, MODELS) == [1, 1, 1]


def test_rank_with_extra_output():
    cmps = {"a,b": "A is better", "a,c": "A is better", "b,c": "A is better"}
    fused = {"llm-blender,a": "Same good", "b,llm-blender": "B is better", "llm-blender,c": "A is better"}
    # a: 2 wins; fused: 2 wins, 1 tie -> both score 4: shared rank 1
    assert gpt_rank.rank_with_extra(cmps, fused, MODELS, "llm-blender") == 1
    fused["llm-blender,a"] = "B is better"
    assert gpt_rank.rank_with_extra(cmps, fused, MODELS, "llm-blender") == 2


@pytest.mark.parametrize("label,paper,issue6", [
    ("A is better", 1.0, 1.0), ("B is better", 0.0, 0.0), ("Same good", 1.0, 0.5), ("Same bad", 1.0, 0.0),
    ("error", None, None), ("inconsistent", None, None)])
def test_beats_or_ties_both_readings(label, paper, issue6):
    assert gpt_rank.beats_or_ties({"x,vicuna": label}, "x", "vicuna", "paper") == paper
    assert gpt_rank.beats_or_ties({"x,vicuna": label}, "x", "vicuna", "issue6") == issue6
    # the same judgment stored in the other order reads the same
    assert gpt_rank.beats_or_ties({"vicuna,x": flip(label)}, "x", "vicuna", "issue6") == issue6


def test_beats_or_ties_rate_counts_skips():
    # x==v itself counts as a tie (0.5 under issue6)
    items = [({"x,v": "A is better"}, "x"), ({"x,v": "Same good"}, "x"), ({"x,v": "error"}, "x"), ({}, "v")]
    r = gpt_rank.beats_or_ties_rate(items, "v", "issue6")
    assert r == {"percent": 100 * 2.0 / 3, "examples": 3, "skipped": 1, "reading": "issue6"}
    assert gpt_rank.beats_or_ties_rate(items, "v", "paper")["percent"] == 100.0
    with pytest.raises(ValueError):
        gpt_rank.beats_or_ties({}, "x", "v", "other")


def test_label_for_flips():
    assert label_for({"b,a": "A is better"}, "a", "b") == "B is better"
    assert label_for({}, "a", "b") is None


@pytest.mark.parametrize("reply,label", [
    ("A is better", "A is better"), ("2", "B is better"), ("3. Same good", "Same good"), ("(4)", "Same bad"),
    ("Option 1", "A is better"), ("  same GOOD.", "Same good"), ("1. A is better", "A is better"),
    ("I cannot help with that.", "unparsable"), ("A is better, or maybe B is better", "unparsable"),
    ("", "unparsable"), (None, "unparsable"), ("2. A is better", "unparsable"), ("12 apples", "unparsable")])
def test_parse_reply(reply, label):
    assert parse_reply(reply) == label
