"""PairRanker comparison matrices without torch: the aggregations MaxLogits / MaxWins, ranks from scores,
and the matrices file of a split (numpy only, so the evaluate stage and llmblend.ranker.select use them
without loading the model code; llmblend.ranker.infer re-exports all of it)."""

from __future__ import annotations

import numpy as np


# the full matrices of a split on disk (rule rank_test_full: data/<run>/rankings/pairranker/test.matrices.npz):
# float32, which holds pair_logits' values exactly (the model's logits are float32), so MaxLogits computed
# from the file equals the ranking's; N x N per example (the diagonal is 0: N(N-1) numbers carry
# information), about 0.6 kB per example of 12 candidates before compression
MATRIX_DTYPE = np.float32


def write_matrices(path, ids, mats) -> None:
    """One .npz: `ids` (the example ids, in split order) and `m<e>` = the matrix of example e."""
    from llmblend.io import write_npz

    if len(ids) != len(mats):
        raise ValueError(f"{len(ids)} ids for {len(mats)} matrices")
    arrays = {"ids": np.array([str(i) for i in ids], dtype=np.str_)}
    arrays.update({f"m{e}": np.asarray(m, dtype=MATRIX_DTYPE) for e, m in enumerate(mats)})
    write_npz(path, arrays)


def read_matrices(path) -> tuple[list[str], list[np.ndarray]]:
    """(ids, matrices as float64) from a write_matrices file; a damaged one raises InputError."""
    from llmblend.errors import InputError

    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(path, problem="file not found") from None
    except (OSError, ValueError) as e:
        raise InputError(path, problem=f"not a matrices file ({e})") from None
    with z:
        if "ids" not in z.files:
            raise InputError(path, field="ids", problem="missing")
        ids = [str(x) for x in z["ids"]]
        if len(set(ids)) != len(ids):
            raise InputError(path, field="ids", problem="duplicate example ids")
        mats = []
        for e in range(len(ids)):
            if f"m{e}" not in z.files:
                raise InputError(path, field=f"m{e}", problem=f"missing (the matrix of example {ids[e]!r})")
            m = z[f"m{e}"]
            if m.ndim != 2 or m.shape[0] != m.shape[1]:
                raise InputError(path, field=f"m{e}", problem=f"expected a square matrix, got shape {m.shape}")
            mats.append(m.astype(np.float64))
    return ids, mats


def max_logits(m: np.ndarray) -> np.ndarray:
    """s_i = mean_j (M_ij - M_ji), the reference's MaxLogits (a mean, so scores compare across N)."""
    n = m.shape[0]
    return (m - m.T).sum(axis=1) / max(n, 1)


def max_wins(m: np.ndarray) -> np.ndarray:
    """s_i = #{j: M_ij > 0} + #{j: M_ji < 0} (the diagonal is never counted)."""
    off = ~np.eye(m.shape[0], dtype=bool)
    return ((m > 0) & off).sum(axis=1) + ((m.T < 0) & off).sum(axis=1).astype(np.float64)


def ranks_from_scores(scores) -> list[int]:
    """1 = best; ties share the better rank (1 + number of strictly better candidates)."""
    s = np.asarray(scores, dtype=np.float64)
    return [int(1 + (s > v).sum()) for v in s]
