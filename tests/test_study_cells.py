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
