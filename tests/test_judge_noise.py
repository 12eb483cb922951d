"""benchmarks/study_ranker.py's judge-noise reading: the redraw matrix from texts judged more than once,
and the expected pick of the judge asked again, checked against cases worked by hand."""

import numpy as np
import pytest


def test_redraw_matrix_counts_every_ordered_pair_of_judgments(study_ranker):
    # one text judged won twice, one won then lost, one tied, lost, lost
    P = study_ranker.rejudge_matrix([[2.0, 2.0], [2.0, 1.0], [1.5, 1.0, 1.0]])
    # ordered pairs: won->won 2, won->lost 1, lost->won 1, tied->lost 2, lost->tied 2, lost->lost 2
    np.testing.assert_allclose(P[2], [1 / 3, 0, 2 / 3])
    np.testing.assert_allclose(P[0], [2 / 5, 2 / 5, 1 / 5])
    np.testing.assert_allclose(P[1], [1, 0, 0])


def test_a_judge_that_repeats_itself_picks_like_the_oracle(study_ranker):
    prefs = [[1.0, 2.0, 1.0], [1.0, 1.0, 1.5], [2.0, 2.0, None]]
    gr, win = study_ranker.judge_again(prefs, np.eye(3), 50, np.random.default_rng(0))
    assert gr == pytest.approx(1.0)
    assert win == pytest.approx(100 * (1 + 0.5 + 1) / 3)


def test_the_pick_of_a_noisy_judge_matches_the_hand_computed_expectation(study_ranker):
    # one answer won, one lost; asked again each flips with chance e (ties never drawn):
    # keep both (1-e)^2 -> rank 1; swap both e^2 -> rank 2; both at one level 2e(1-e) -> 1.5 on average
    e = 0.2
    P = np.array([[1 - e, 0, e], [0, 1, 0], [e, 0, 1 - e]])
    gr, win = study_ranker.judge_again([[2.0, 1.0]] * 10, P, 4000, np.random.default_rng(1))
    expected = (1 - e) ** 2 + 2 * e ** 2 + 1.5 * 2 * e * (1 - e)
    assert gr == pytest.approx(expected, abs=0.01)
    assert win == pytest.approx(100 * (2 - expected), abs=1.0)


def test_near_identical_pairs_are_long_different_texts_sharing_most_word_trigrams(study_ranker):
    long_a = " ".join(f"w{i}" for i in range(120))
    long_b = long_a + " extra"  # 119 of 120 trigrams shared
    other = " ".join(f"v{i}" for i in range(120))
    grown = long_a + " " + " ".join(f"x{i}" for i in range(60))  # holds all of long_a's trigrams: Jaccard 0.66
    prompts = {"p": [(long_a, 2.0), (long_b, 1.0), (long_a, 2.0), (other, 2.0), (grown, 1.0)],
               "q": [("a short answer here", 2.0), ("a short answer here too", 2.0)]}
    # long_a x long_b twice (disagreeing); identical, unrelated, grown and short pairs left out
    assert study_ranker.near_identical_agreement(prompts) == (0, 2)
    prompts["p"][1] = (long_b, 2.0)
    assert study_ranker.near_identical_agreement(prompts) == (2, 2)


def test_identical_texts_are_grouped_per_prompt(study_ranker):
    prompts = {"p": [("Yes.", 2.0), ("Yes.", 1.0), ("No.", 1.0)], "q": [("Yes.", 2.0), ("Maybe.", 1.0)]}
    assert study_ranker.identical_answer_verdicts(prompts) == {("p", "Yes."): [2.0, 1.0]}
