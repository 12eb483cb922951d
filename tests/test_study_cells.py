"""benchmarks/study_ranker.py: the cells' names and sub-pools, the model prior, the weight chosen on val, the
model-balanced pair weights, and the pair accuracy of a ranking."""

import pytest

POOL = {f"model-{i:02d}" for i in range(29)}


def test_cell_name_reads_the_sub_pool_size(study_ranker):
    cell = study_ranker.parse_cell("len128-src128-poolholdout-m12-e2-adrop0-mean-seed1")
    assert (cell["pool"], cell["train_models"], cell["epochs"], cell["seed"]) == ("holdout", 12, 2, 1)
    assert (cell["draw"], study_ranker.parse_cell("len128-src128-poolholdout-m12d7-e2-mean")["draw"]) == (None, 7)
    assert study_ranker.parse_cell("len128-src128-poolholdout-e2-adrop0-mean")["train_models"] is None


def test_sub_pools_are_nested_seeded_draws_of_the_pool(study_ranker):
    draws = [study_ranker.sub_pool(POOL, m, 42) for m in (6, 12, 20, 29)]
    assert [len(d) for d in draws] == [6, 12, 20, 29]
    assert draws[0] < draws[1] < draws[2] < draws[3] == POOL
    assert study_ranker.sub_pool(POOL, 12, 42) == draws[1]  # the same draw on a rerun
    # a draw, not the first names in order, and another seed draws other models
    assert draws[1] != set(sorted(POOL)[:12])
    assert study_ranker.sub_pool(POOL, 12, 1) != draws[1]


@pytest.mark.parametrize("m", [1, 30])
def test_sub_pool_outside_the_pool_is_refused(study_ranker, m):
    with pytest.raises(SystemExit, match=f"-m{m}: a sub-pool needs 2 to 29 models"):
        study_ranker.sub_pool(POOL, m, 42)


class _Ex:  # what model_prior and ModelBalance read of an example: its answers' models and verdicts
    def __init__(self, models, signal=None):
        self.models, self.signal = models, signal


def test_model_prior_is_each_models_mean_z_score_matched_by_name(study_ranker):
    # the answers come in another order on each prompt: the prior follows the model, not the position
    examples = [_Ex(["a", "b", "c"]), _Ex(["c", "a", "b"]), _Ex(["b", "c", "a"])]
    scores = [[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [2.0, 1.0, 3.0]]  # "a" best on every prompt, "c" worst
    prior = study_ranker.model_prior(examples, scores)
    z = 1.5 ** 0.5  # the z-score of the best of three equally spaced scores
    assert prior == pytest.approx({"a": z, "b": 0.0, "c": -z})


def test_prior_picks_move_from_maxlogits_to_the_priors_best_model(study_ranker):
    examples = [_Ex(["a", "b"]), _Ex(["b", "a"]), _Ex(["a", "b"])]
    scores = [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]  # "a" wins prompts 0 and 1, "b" prompt 2; prior a 1/3, b -1/3
    prior = study_ranker.model_prior(examples, scores)
    assert study_ranker.prior_picks(examples, scores, prior, 0.0) == [0, 1, 1]  # MaxLogits' own picks
    assert study_ranker.prior_picks(examples, scores, prior, 0.25) == [0, 1, 1]  # a small weight keeps a clear win
    assert study_ranker.prior_picks(examples, scores, prior, None) == [0, 1, 0]  # "a" on every prompt
    assert study_ranker.prior_picks(examples, scores, prior, 4.0) == [0, 1, 0]


def test_a_weight_is_chosen_on_val_by_the_lowest_gpt_rank_ties_to_the_smaller(study_ranker):
    rows = {0.0: {"gpt_rank": 1.9}, 0.5: {"gpt_rank": 1.7}, 1.0: {"gpt_rank": 1.7}, 2.0: {"gpt_rank": 1.8}}
    assert study_ranker.chosen_on_val(rows) == 0.5


def test_model_balanced_weights_give_each_model_as_much_weight_better_as_worse(study_ranker):
    # "s" beats "m" and "w" on four prompts; "m" beats both on one, "w" beats each once: of the expected
    # draws (each prompt spreads one unit over its pairs) "s" is the better answer in 62%, "m" in 46%,
    # "w" in 44%, so model identity alone predicts the label, and the weights must take that away
    examples = ([_Ex(["s", "m", "w"], [2.0, 1.0, 0.0])] * 4 + [_Ex(["w", "s", "m"], [1.0, 0.0, 2.0])]
                + [_Ex(["s", "w"], [0.0, 1.0]), _Ex(["m", "w"], [0.0, 1.0])])
    balance = study_ranker.ModelBalance(examples)
    better, worse, total, draws = {}, {}, 0.0, 0.0
    for ex in examples:
        pairs = study_ranker.better_worse_pairs(ex.signal)
        for b, w in pairs:
            assert ex.signal[b] > ex.signal[w]
            weight = balance.weight(ex, w, b) / len(pairs)  # either order of the pair weighs the same
            better[ex.models[b]] = better.get(ex.models[b], 0.0) + weight
            worse[ex.models[w]] = worse.get(ex.models[w], 0.0) + weight
            total, draws = total + weight, draws + 1 / len(pairs)
    assert better == pytest.approx(worse, rel=1e-9)
    assert total / draws == pytest.approx(1.0)  # a mean weight of 1 over the draws
    assert balance.d["s"] < balance.d["m"] < balance.d["w"]  # a strong model's wins weigh less, its losses more
    ex = examples[0]
    assert balance.weigh(ex, [(0, 2), (2, 0)]) == pytest.approx([balance.d["s"] / balance.d["w"] / balance.norm] * 2)


def test_model_balance_refuses_a_model_that_never_loses(study_ranker):
    with pytest.raises(ValueError, match="every model needs a pair where it is the better and one"):
        study_ranker.ModelBalance([_Ex(["a", "b"], [1.0, 0.0]), _Ex(["b", "a"], [0.0, 1.0])])


def test_model_balanced_cells_parse_and_exclude_length_balance(study_ranker):
    cell = study_ranker.parse_cell("len128-src128-poolholdout-e2-adrop0-modbal-mean-seed1")
    assert (cell["model_balanced"], cell["length_balanced"], cell["pooling"], cell["seed"]) == (True, False, "mean", 1)
    assert study_ranker.parse_cell("len128-src128-pool37-e2-adrop0-lenbal-mean")["model_balanced"] is False
    with pytest.raises(SystemExit, match="-lenbal and -modbal weigh the same pairs"):
        study_ranker.parse_cell("len128-src128-pool37-e2-adrop0-lenbal-modbal-mean")


def test_verdicts_become_the_replay_judges_ordered_pairs_counted_by_the_better_answers_length(study_ranker):
    import numpy as np

    # won 2, lost 1, tied 1.5 (a tie beats a loss and loses to a win), no verdict, won again: the ordered
    # pairs (better, worse) are (0, 1), (0, 2), (2, 1), (4, 1), (4, 2); (0, 4) is a tie, 3 is unjudged
    outcomes = study_ranker.verdict_outcomes([2.0, 1.0, 1.5, None, 2.0])
    words = [10, 5, 20, 0, 10]            # longer better: (0, 1), (2, 1), (4, 1); shorter: (0, 2), (4, 2)
    scores = [3.0, 1.0, 2.0, 0.0, 2.0]    # (4, 2) a tie of scores: half
    got = study_ranker.pairs_right([outcomes], [words], [scores])
    assert {side: (float(r[0]), float(n[0])) for side, (r, n) in got.items()} == \
        {"all": (4.5, 5.0), "longer": (3.0, 3.0), "shorter": (1.5, 2.0)}
    flipped = study_ranker.pairs_right([outcomes], [words], [[-x for x in scores]])
    assert float(flipped["all"][0][0]) == 0.5
    from llmblend.analysis import judged as J

    assert np.count_nonzero(outcomes == J.WIN) == 5 and outcomes[0, 0, 4] == outcomes[0, 4, 0] == J.SAME_GOOD
    assert not outcomes[0, 3].any() and not outcomes[0, :, 3].any()  # no verdict: unjudged


def test_pair_accuracy_pools_pairs_over_prompts_and_resamples_whole_prompts(study_ranker):
    import numpy as np

    right, n = np.array([2.0, 1.0]), np.array([2.0, 4.0])
    # pooled: 3 of 6 (not the mean of the prompts' own shares, 0.625); each resample is one prompt twice
    acc, ci = study_ranker.pair_accuracy(right, n, np.array([[0, 0], [1, 1]] * 50))
    assert acc == 0.5
    assert ci[0] < 0.3 and ci[1] > 0.95
    # the same reading against itself differs by nothing; a better one by its share of the pairs
    idx = np.array([[0, 1], [1, 1], [0, 0]])
    assert study_ranker.paired_difference(right, right, n, idx) == (0.0, [0.0, 0.0])
    delta, (lo, hi) = study_ranker.paired_difference(right + np.array([0.0, 3.0]), right, n, idx)
    assert delta == 0.5 and 0.0 < lo <= hi <= 0.75
