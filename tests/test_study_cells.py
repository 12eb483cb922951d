"""benchmarks/study_ranker.py's cell names: the `-m<G>` sub-pool of a learning curve over judged models."""

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


class _Ex:  # what model_prior reads of an example: its answers' models, in the prompt's own order
    def __init__(self, models):
        self.models = models


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
