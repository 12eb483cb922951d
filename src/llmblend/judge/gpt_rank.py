"""GPT-Rank from pairwise labels, exactly as the reference computes it, and the ">= model X" helpers.

Reference rule (LLM-Blender `gpt_eval/utils.py::get_ranks_from_chatgpt_cmps`): for one example,
M[i][j] gets +1 / -1 when i is better / worse than j, +0.5 to both cells for "Same good", -0.5 to
both for "Same bad"; score_i = sum_j (M[i][j] - M[j][i]) (ties cancel, so the score is wins minus
losses); rank_i = 1 + number of candidates with a strictly higher score (ties share the better rank).
A model's GPT-Rank is its mean rank over the judged examples.

Failure labels and missing pairs add nothing to M (they are never read as ties). An output that is
not a candidate (the fused answer) is ranked by adding it as one more "model": its comparisons
against each candidate join the candidates' own comparisons (`rank_with_extra`).

">= X" (the paper's ">= Vic" / ">= OA" columns) has two readings, and both are given:
- "paper": x counts when it is better than X or tied with X (Same good or Same bad): 1 or 0;
- "issue6": the maintainer's recomputation in LLM-Blender issue #6: better = 1, Same good = 0.5,
  Same bad = 0, worse = 0.
x being X itself counts as a tie: 1 under "paper", 0.5 under "issue6".
"""

from __future__ import annotations

from llmblend.judge.labels import A_BETTER, B_BETTER, SAME_BAD, SAME_GOOD, label_for, split_key

READINGS = ("paper", "issue6")


def comparison_matrix(cmp_results: dict, models: list[str]) -> list[list[float]]:
    """M[i][j] per the reference rule, over `models` (keys naming other models are ignored)."""
    index = {m: i for i, m in enumerate(models)}
    n = len(models)
    mat = [[0.0] * n for _ in range(n)]
    for key, label in cmp_results.items():
        a, b = split_key(key, index)
        if a not in index or b not in index or a == b:
            continue
        i, j = index[a], index[b]
        if label == A_BETTER:
            mat[i][j] += 1
            mat[j][i] -= 1
        elif label == B_BETTER:
            mat[i][j] -= 1
            mat[j][i] += 1
        elif label == SAME_GOOD:
            mat[i][j] += 0.5
            mat[j][i] += 0.5
        elif label == SAME_BAD:
            mat[i][j] -= 0.5
            mat[j][i] -= 0.5
        # error / unparsable / inconsistent: no information, never a tie
    return mat


def scores(cmp_results: dict, models: list[str]) -> list[float]:
    """score_i = sum_j (M[i][j] - M[j][i]) = 2 * (wins - losses); ties cancel."""
    mat = comparison_matrix(cmp_results, models)
    n = len(models)
    return [sum(mat[i][j] - mat[j][i] for j in range(n)) for i in range(n)]


def ranks_from_scores(values: list[float]) -> list[int]:
    """1 + number strictly better; equal scores share the better rank."""
    return [1 + sum(1 for o in values if o > v) for v in values]


def gpt_ranks(cmp_results: dict, models: list[str]) -> list[int]:
    """GPT-Rank of each model in `models` for one example (1 = best)."""
    return ranks_from_scores(scores(cmp_results, models))


def rank_with_extra(cmp_results: dict, extra_results: dict, models: list[str], extra: str) -> int:
    """The rank of an extra output (e.g. "llm-blender") among the candidates plus itself.

    `cmp_results` holds the candidates' comparisons, `extra_results` the extra output's comparisons
    against each candidate (keys "<extra>,<model>" or "<model>,<extra>").
    """
    merged = {**cmp_results, **extra_results}
    return gpt_ranks(merged, list(models) + [extra])[-1]


def outcome(cmp_results: dict, x: str, y: str) -> str | None:
    """x vs y from x's side: "win", "loss", "same_good", "same_bad"; None without a usable label."""
    label = label_for(cmp_results, x, y)
    return {A_BETTER: "win", B_BETTER: "loss", SAME_GOOD: "same_good", SAME_BAD: "same_bad"}.get(label)


def beats_or_ties(cmp_results: dict, x: str, y: str, reading: str = "paper") -> float | None:
    """Credit for "x >= y" under a reading (see the module doc); None without a usable label."""
    if reading not in READINGS:
        raise ValueError(f"unknown reading {reading!r}; one of {READINGS}")
    if x == y:
        return 1.0 if reading == "paper" else 0.5
    out = outcome(cmp_results, x, y)
    if out is None:
        return None
    if reading == "paper":
        return 0.0 if out == "loss" else 1.0
    return {"win": 1.0, "same_good": 0.5, "same_bad": 0.0, "loss": 0.0}[out]


def beats_or_ties_rate(items, y: str, reading: str = "paper") -> dict:
    """Percent of examples where the chosen output is >= y.

    `items` yields (cmp_results, x) pairs: x is the model chosen for that example (a candidate's
    name, or the extra output's name when its comparisons are in cmp_results). Examples without a
    usable label for x vs y are skipped and counted, never scored.
    """
    total, used, skipped = 0.0, 0, 0
    for cmp_results, x in items:
        credit = beats_or_ties(cmp_results, x, y, reading)
        if credit is None:
            skipped += 1
            continue
        total += credit
        used += 1
    return {"percent": 100.0 * total / used if used else None, "examples": used, "skipped": skipped,
            "reading": reading}
