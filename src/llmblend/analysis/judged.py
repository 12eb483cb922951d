"""GPT-Rank from pairwise judge labels, the reference's rule (LLM-Blender `gpt_eval/utils.py`).

Per example, a label for the pair "A,B" adds to a comparison matrix M: "A is better" M[a,b] += 1 and
M[b,a] -= 1 (and the mirror for "B is better"), "Same good" +0.5 to both, "Same bad" -0.5 to both.
A candidate's score is sum_j (M_ij - M_ji) (ties cancel, so it is 2 x (wins - losses)); its rank is
1 + the number of candidates with a strictly higher score (tied candidates share the better rank).

Labels are stored per example as an int8 outcome array O[i, j] from i's point of view, so that the
rank, the head-to-head "is i >= j" and the tie readings are all read from one place.
"""

from __future__ import annotations

import numpy as np

# outcome codes, from the row candidate's point of view
MISSING, WIN, LOSS, SAME_GOOD, SAME_BAD = 0, 1, 2, 3, 4
VALID_LABELS = ("A is better", "B is better", "Same good", "Same bad")
# judge failures: their own labels, never counted as ties (docs/architecture.md)
FAILED_LABELS = ("error", "unparsable", "inconsistent")


def fill_outcomes(out: np.ndarray, cmp_results: dict, index: dict, counts: dict) -> None:
    """Write one example's labels into `out` (k x k, MISSING where unjudged).

    `index` maps a model name to its column; pairs naming a model outside `index` are counted in
    counts["pairs_outside"], failed labels per label in counts[label]. Unknown labels raise ValueError.
    """
    for key, label in cmp_results.items():
        a, sep, b = key.partition(",")
        if not sep:
            raise ValueError(f"pair key {key!r} is not 'modelA,modelB'")
        if label in FAILED_LABELS:
            counts[label] = counts.get(label, 0) + 1
            continue
        if label not in VALID_LABELS:
            raise ValueError(f"label {label!r} for pair {key!r} is not one of {VALID_LABELS + FAILED_LABELS}")
        if a not in index or b not in index:
            counts["pairs_outside"] = counts.get("pairs_outside", 0) + 1
            continue
        i, j = index[a], index[b]
        if label == "A is better":
            out[i, j], out[j, i] = WIN, LOSS
        elif label == "B is better":
            out[i, j], out[j, i] = LOSS, WIN
        elif label == "Same good":
            out[i, j] = out[j, i] = SAME_GOOD
        else:
            out[i, j] = out[j, i] = SAME_BAD


def scores_from_outcomes(outcomes: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Reference score sum_j (M_ij - M_ji) for every candidate; NaN outside `pool` (bool mask).

    `outcomes` is (..., k, k); only pairs inside the pool count. Ties add the same amount to M_ij and
    M_ji, so they cancel: the score is 2 x (wins - losses) against the pool.
    """
    inside = pool[..., :, None] & pool[..., None, :]
    wins = ((outcomes == WIN) & inside).sum(-1)
    losses = ((outcomes == LOSS) & inside).sum(-1)
    scores = 2.0 * (wins - losses)
    return np.where(pool, scores, np.nan)


def ranks_from_scores(scores: np.ndarray) -> np.ndarray:
    """1 + number of strictly higher scores along the last axis (ties share the better rank); NaN stays NaN."""
    s = np.asarray(scores, dtype=float)
    higher = (s[..., None, :] > s[..., :, None]).sum(-1)  # NaN compares False, so it never counts as higher
    return np.where(np.isnan(s), np.nan, 1.0 + higher)


def ranks_from_ranks(ranks: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Re-rank (lower is better) within the pool columns only; NaN outside the pool."""
    r = np.where(pool, np.asarray(ranks, dtype=float), np.nan)
    return ranks_from_scores(-r)


def gpt_ranks(outcomes: np.ndarray, pool: np.ndarray) -> np.ndarray:
    return ranks_from_scores(scores_from_outcomes(outcomes, pool))


def ordered_pairs(outcomes: np.ndarray, ranks: np.ndarray, pool: np.ndarray,
                  lengths: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per example, the pool's pairs the judge orders (one candidate won against the other) that
    `ranks` (n, k; lower is better, NaN unranked) put the same way round: (right, pairs), each of shape
    (n,), a tie of ranks counting half. "all" of them, and with `lengths` (n, k words) "longer" and
    "shorter": the pairs whose better answer has more / fewer words."""
    k = ranks.shape[1]
    ri, rj = ranks[:, :, None], ranks[:, None, :]
    won = ((outcomes[:, :k, :k] == WIN) & (pool[:, None] & pool[None, :])[None]
           & np.isfinite(ri) & np.isfinite(rj))
    credit = np.where(ri < rj, 1.0, np.where(ri == rj, 0.5, 0.0))
    sides = {"all": won}
    if lengths is not None:
        li, lj = lengths[:, :k, None], lengths[:, None, :k]
        sides["longer"], sides["shorter"] = won & (li > lj), won & (li < lj)
    return {side: ((credit * m).sum((1, 2)), m.sum((1, 2)).astype(float)) for side, m in sides.items()}


def head_to_head(outcomes: np.ndarray, sel: np.ndarray, ref: int, reading: str) -> np.ndarray:
    """Credit for "selection >= ref" from the pair's own judge label, NaN where it has no valid label.

    "head_to_head": a win or either tie 1, a loss 0; "issue6" (LLM-Blender issue #6): a win 1,
    "Same good" 0.5, "Same bad" or a loss 0. Selecting `ref` itself counts as a tie (1 or 0.5), as in
    llmblend.judge.gpt_rank. `outcomes` is (n, k, k), `sel` the selected column per example."""
    if reading == "head_to_head":
        values = [1.0, 1.0, 1.0, 0.0]
    elif reading == "issue6":
        values = [1.0, 0.5, 0.0, 0.0]
    else:
        raise ValueError(f"no head-to-head reading {reading!r}")
    o = outcomes[np.arange(len(sel)), sel, ref]
    val = np.select([o == WIN, o == SAME_GOOD, o == SAME_BAD, o == LOSS], values, np.nan)
    return np.where(sel == ref, values[1], val)
