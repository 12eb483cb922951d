"""Rank correlations with GPT-Rank (the reference's `gpt_eval/cor_eval.py` way) and bootstrap CIs.

Reference way ("per_candidate"): Pearson and Spearman are computed for each candidate column across
examples (that candidate's rank under the method vs its GPT-Rank) and averaged over the columns.
The other reading ("per_example"): the correlation across candidates within each example, averaged
over examples. Spearman's footrule is the same in both: the mean over examples of sum_j |r_hyp - r_ref|.
Columns (or examples) where a correlation is undefined (a constant rank vector) are left out of the
average and counted.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _pearson(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    """Pearson along `axis`, NaN where either side is constant or has a NaN."""
    xm = x - x.mean(axis=axis, keepdims=True)
    ym = y - y.mean(axis=axis, keepdims=True)
    num = (xm * ym).sum(axis=axis)
    den = np.sqrt((xm * xm).sum(axis=axis) * (ym * ym).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    return np.where(den > 1e-12, r, np.nan)


def correlations(hyp: np.ndarray, ref: np.ndarray, mode: str = "per_candidate") -> dict:
    """Pearson (x100), Spearman (x100) and footrule of hyp vs ref ranks, both (n examples, k candidates).

    Returns the three numbers and `undefined`, how many columns/examples had no defined correlation."""
    hyp = np.asarray(hyp, dtype=float)
    ref = np.asarray(ref, dtype=float)
    if hyp.shape != ref.shape or hyp.ndim != 2:
        raise ValueError(f"rank arrays must have the same 2-D shape, got {hyp.shape} and {ref.shape}")
    axis = 0 if mode == "per_candidate" else 1
    if mode not in ("per_candidate", "per_example"):
        raise ValueError(f"correlation mode {mode!r} is not per_candidate or per_example")
    p = _pearson(hyp, ref, axis)
    s = _pearson(rankdata(hyp, axis=axis), rankdata(ref, axis=axis), axis)
    with np.errstate(all="ignore"):
        return {
            "pearson": 100 * float(np.nanmean(p)) if np.isfinite(p).any() else float("nan"),
            "spearman": 100 * float(np.nanmean(s)) if np.isfinite(s).any() else float("nan"),
            "footrule": float(np.abs(hyp - ref).sum(axis=1).mean()) if len(hyp) else float("nan"),
            "undefined": int(np.isnan(p).sum()),
        }


def bootstrap_indices(n: int, samples: int, seed: int) -> np.ndarray:
    """(samples, n) example indices drawn with replacement; the same draws serve every row (paired)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(samples, n)) if n else np.zeros((samples, 0), dtype=int)


def percentile_ci(values: np.ndarray, confidence: float) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan")
    lo, hi = np.percentile(v, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(lo), float(hi)


def mean_ci(per_example: np.ndarray, idx: np.ndarray, confidence: float) -> tuple[float, float]:
    """Bootstrap CI of the mean of per-example values (NaN = not available, left out)."""
    x = np.asarray(per_example, dtype=float)
    if not len(x) or not np.isfinite(x).any():
        return float("nan"), float("nan")
    with np.errstate(all="ignore"):
        means = np.nanmean(x[idx], axis=1)
    return percentile_ci(means, confidence)


def ratio_ci(num: np.ndarray, den: np.ndarray, idx: np.ndarray, confidence: float,
             base: np.ndarray | None = None) -> tuple[float, float]:
    """Bootstrap CI of a pooled share sum(num) / sum(den) of per-example counts (e.g. pairs ordered
    right of the pairs there are), resampling whole examples; with `base` (other counts over the same
    den), of the paired difference (sum(num) - sum(base)) / sum(den) on the same draws."""
    top = np.asarray(num, float)[idx].sum(1)
    if base is not None:
        top = top - np.asarray(base, float)[idx].sum(1)
    with np.errstate(all="ignore"):
        return percentile_ci(top / np.asarray(den, float)[idx].sum(1), confidence)


def correlation_cis(hyp: np.ndarray, ref: np.ndarray, idx: np.ndarray, mode: str, confidence: float,
                    chunk: int = 64) -> dict:
    """Bootstrap CIs (over examples) of Pearson, Spearman and footrule."""
    hyp = np.asarray(hyp, dtype=float)
    ref = np.asarray(ref, dtype=float)
    if not len(hyp):
        return {k: (float("nan"), float("nan")) for k in ("pearson", "spearman", "footrule")}
    foot = np.abs(hyp - ref).sum(axis=1)
    draws = {"pearson": [], "spearman": [], "footrule": []}
    for start in range(0, len(idx), chunk):
        block = idx[start:start + chunk]
        h, r = hyp[block], ref[block]  # (b, n, k)
        axis = 1 if mode == "per_candidate" else 2
        p = _pearson(h, r, axis)
        s = _pearson(rankdata(h, axis=axis), rankdata(r, axis=axis), axis)
        with np.errstate(all="ignore"):
            draws["pearson"].extend(100 * np.nanmean(p, axis=1))
            draws["spearman"].extend(100 * np.nanmean(s, axis=1))
        draws["footrule"].extend(foot[block].mean(axis=1))
    return {k: percentile_ci(np.array(v), confidence) for k, v in draws.items()}
