"""Table 2 (main results), Table 3 (correlation with GPT-Rank), Figure 1 and the curves, from arrays.

A "reading" fixes the two choices the reference left ambiguous: which candidates form the GPT-Rank
pool (all candidates, e.g. 12 for MixInstruct, or fewer) and how ">= Vic / >= OA" is counted:
"paper": the selection's GPT-Rank is at most the reference model's (ties count; the only reading
under which the paper's GPT-Rank oracle scores exactly 100%); "head_to_head": the judge's label for
the pair, a win or either tie counts (llmblend.judge.gpt_rank's "paper" reading); "issue6": the
head-to-head label, win 1 / "Same good" 0.5 / "Same bad" or loss 0 (LLM-Blender issue #6).
The configured reading fills table2; the other readings are reported beside it.
"""

from __future__ import annotations

import copy

import numpy as np

from llmblend.analysis import judged as J
from llmblend.analysis import stats
from llmblend.config import schema_defaults
from llmblend.errors import ConfigError

TABLE2_COLUMNS = ["bertscore", "bartscore", "bleurt", "gpt_rank", "ge_vic", "ge_oa", "top3", "pick_len_words"]
METRIC_COLUMNS = ["bertscore", "bartscore", "bleurt"]
GPT_COLUMNS = ["gpt_rank", "ge_vic", "ge_oa", "top3"]
# mean length in words of the row's picks (a model's own answers, a ranker's top-1, the fused answers),
# over all test examples: GPT-4 judges favour long answers, so a ranker that learned length shows here
LENGTH_COLUMN = "pick_len_words"
TABLE3_COLUMNS = ["pearson", "spearman", "footrule"]
# which way each column is better (the report marks the best value of a column); the pick length is neither
LOWER_IS_BETTER = {"gpt_rank", "footrule"}
NOT_RANKED = {LENGTH_COLUMN}
GE_READINGS = ("paper", "head_to_head", "issue6")
# how each ranking orders the judge's pairs (tables/pair_order): of the pairs the judge orders, all of
# them and those whose better answer is the longer / the shorter, how many and the % the ranks put the
# same way round; a ranker that learned only length is at 100 and 0 on the two, a coin at 50 on both
PAIR_SIDES = ("all", "longer", "shorter")
PAIR_ORDER_COLUMNS = ["pairs", "right", "longer_better_pairs", "longer_better_right", "shorter_better_pairs",
                      "shorter_better_right"]
CORRELATION_MODES = ("per_candidate", "per_example")

# the evaluate section's defaults live in its schema (src/llmblend/schemas/evaluate.schema.yaml)
DEFAULTS = schema_defaults("evaluate")

METHOD_NAMES = {
    "random": "Random", "mlm_scoring": "MLM-Scoring", "clm_scoring": "CLM-Scoring", "simcls": "SimCLS",
    "summareranker": "SummaReranker", "pairranker": "PairRanker", "pairranker-maxlogits": "PairRanker",
    "pairranker-maxwins": "PairRanker (MaxWins)", "pairranker-bubble": "PairRanker (Bubble)",
    "pairranker-sampled": "PairRanker (sampled)", "pairranker-knockout": "PairRanker (knockout)",
    "pairranker-race": "PairRanker (race)",
    "oracle-gpt_rank": "Oracle (GPT-Rank)", "oracle-bertscore": "Oracle (BERTScore)",
    "oracle-bartscore": "Oracle (BARTScore)", "oracle-bleurt": "Oracle (BLEURT)",
    "longest": "Longest", "consensus": "Consensus (MBR)", "pairranker-consensus": "PairRanker + consensus",
}


def settings_of(cfg: dict) -> dict:
    """The evaluate section over its schema's defaults."""
    out = copy.deepcopy(DEFAULTS)
    for key, value in (cfg.get("evaluate") or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("models", "method_names",
                                                                                      "table3_metrics"):
            out[key].update(value)
        else:
            out[key] = value
    if out["ge_reading"] not in GE_READINGS:
        raise ConfigError(f"config key 'evaluate.ge_reading': {out['ge_reading']!r} is not one of {GE_READINGS}")
    if out["correlation"] not in CORRELATION_MODES:
        raise ConfigError(f"config key 'evaluate.correlation': {out['correlation']!r} is not one of "
                          f"{CORRELATION_MODES}")
    return out


def method_name(method: str, st: dict) -> str:
    if method in st["method_names"]:
        return st["method_names"][method]
    if method in METHOD_NAMES:
        return METHOD_NAMES[method]
    if method.startswith("oracle-"):
        metric = method[len("oracle-"):]
        return f"Oracle ({st['table3_metrics'].get(metric, metric)})"
    return method


def fused_method(kind: str, st: dict) -> str:
    """A blended answer kind's Table 2 row name (the GenFuser's: evaluate.fused_method)."""
    from llmblend.fuser.kinds import KINDS

    if kind == "fused":
        return st["fused_method"]
    return st["method_names"].get(KINDS[kind]["model"], KINDS[kind]["method"])


def category_of(method: str) -> str:
    return "Analysis" if method.startswith("oracle-") else "Rankers"


def _model_index(inputs, name, key):
    if name not in inputs.models:
        raise ConfigError(f"config key 'evaluate.{key}': {name!r} is not a candidate model ({inputs.models})")
    return inputs.models.index(name)


def roles(inputs, st) -> dict:
    """Which candidate plays Vicuna and which Open Assistant (default: the first and second candidate)."""
    vic = st["vicuna"] if st["vicuna"] is not None else inputs.models[0]
    oa = st["oa"] if st["oa"] is not None else inputs.models[min(1, inputs.k - 1)]
    return {"vicuna": _model_index(inputs, vic, "vicuna"), "oa": _model_index(inputs, oa, "oa")}


def pool_mask(inputs, exclude) -> np.ndarray:
    for m in exclude or []:
        if m not in inputs.models:
            raise ConfigError(f"config key 'evaluate.gpt_rank_exclude': {m!r} is not a candidate model")
    return np.array([m not in (exclude or []) for m in inputs.models])


def select(ranks: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """The selected candidate per example: best rank inside the pool, ties to the earlier candidate;
    -1 where the example has no ranking."""
    r = np.where(pool[None, :] & np.isfinite(ranks), ranks, np.inf)
    sel = np.argmin(r, axis=1)
    return np.where(np.isfinite(r).any(axis=1), sel, -1)


def _pick(arr: np.ndarray, sel: np.ndarray) -> np.ndarray:
    out = arr[np.arange(len(sel)), np.maximum(sel, 0)]
    return np.where(sel >= 0, out, np.nan)


class Evaluation:
    """Everything the tables and figures need, for one reading (pool + ge reading)."""

    def __init__(self, inputs, st: dict, exclude, ge_reading: str):
        self.inputs, self.st, self.ge_reading = inputs, st, ge_reading
        self.pool = pool_mask(inputs, exclude)
        self.roles = roles(inputs, st)
        k = inputs.k
        # GPT-Rank over the pool, on the judged examples only
        self.ranks = J.gpt_ranks(inputs.outcomes[:, :k, :k], self.pool)
        self.ranks[~inputs.judged] = np.nan
        # each blended answer joins the pool alone ("pool" mode), on examples where both label files
        # cover it: kind -> (n, k+1) ranks, the answer's in the last column
        self.ext_pool = np.append(self.pool, True)
        self.fused_ok, self.ext_ranks = {}, {}
        for kind, f in inputs.fused.items():
            self.fused_ok[kind] = inputs.judged & (f.judged if f.judged is not None else np.zeros(inputs.n, bool))
            cols = list(range(k)) + [f.col]
            self.ext_ranks[kind] = J.gpt_ranks(inputs.outcomes[:, cols][:, :, cols], self.ext_pool)
            self.ext_ranks[kind][~self.fused_ok[kind]] = np.nan

    # per-example GPT values of a selection -------------------------------------------------------
    def gpt_values(self, sel: np.ndarray) -> dict:
        ok = sel >= 0
        sel_in_pool = np.where(ok, self.pool[np.maximum(sel, 0)], False)
        sel = np.where(sel_in_pool, sel, -1)
        rank = _pick(self.ranks, sel)
        out = {"gpt_rank": rank, "top3": np.where(np.isnan(rank), np.nan, (rank <= 3) * 100.0)}
        for col, role in (("ge_vic", "vicuna"), ("ge_oa", "oa")):
            ref = self.roles[role]
            if self.ge_reading == "paper":
                ref_rank = self.ranks[:, ref]
                v = np.where(np.isnan(rank) | np.isnan(ref_rank), np.nan, (rank <= ref_rank) * 100.0)
            else:
                v = J.head_to_head(self.inputs.outcomes, np.maximum(sel, 0), ref, self.ge_reading) * 100.0
                v = np.where((sel >= 0) & self.inputs.judged, v, np.nan)
            out[col] = v
        return out

    def fused_gpt_values(self, kind: str = "fused") -> dict:
        k, c = self.inputs.k, self.inputs.fused[kind].col
        o = self.inputs.outcomes
        ok = self.fused_ok[kind]
        if self.st["fused_rank"] == "direct":
            # 1 + the pool candidates judged better than the blended answer head to head
            lost = ((o[:, c, :k] == J.LOSS) & self.pool[None, :]).sum(1)
            rank = np.where(ok, 1.0 + lost, np.nan)
        else:
            rank = self.ext_ranks[kind][:, k]
        out = {"gpt_rank": rank, "top3": np.where(np.isnan(rank), np.nan, (rank <= 3) * 100.0)}
        for col, role in (("ge_vic", "vicuna"), ("ge_oa", "oa")):
            ref = self.roles[role]
            if self.ge_reading == "paper" and self.st["fused_rank"] != "direct":
                ref_rank = self.ext_ranks[kind][:, ref]
                v = np.where(np.isnan(rank) | np.isnan(ref_rank), np.nan, (rank <= ref_rank) * 100.0)
            else:  # a head-to-head reading ("direct" has no ranks to compare: any tie counts)
                reading = "head_to_head" if self.ge_reading == "paper" else self.ge_reading
                v = J.head_to_head(o, np.full(self.inputs.n, c), ref, reading) * 100.0
            out[col] = np.where(ok, v, np.nan)
        return out

    # rows ----------------------------------------------------------------------------------------
    def rows(self) -> list[dict]:
        inputs, st = self.inputs, self.st
        rows = []
        llm_models = list(st["models"]) if st["models"] else list(inputs.models)
        for m in llm_models:
            c = _model_index(inputs, m, f"models.{m}")
            sel = np.full(inputs.n, c)
            gpt = self.gpt_values(sel)
            for col, role in (("ge_vic", "vicuna"), ("ge_oa", "oa")):
                if c == self.roles[role]:
                    gpt[col] = np.full(inputs.n, np.nan)  # "N/A" in the paper: a model against itself
            rows.append(self._row("LLMs", m, st["models"].get(m, m) if st["models"] else m, sel, gpt))
        methods = list(inputs.rankings)
        for cat in ("Analysis", "Rankers"):
            for method in methods:
                if category_of(method) != cat:
                    continue
                sel = select(inputs.rankings[method]["ranks"], self.pool)
                rows.append(self._row(cat, method, method_name(method, st), sel, self.gpt_values(sel),
                                      n_forward=inputs.rankings[method]["n_forward"]))
        for kind, f in inputs.fused.items():
            rows.append(self._row("LLM-Blender", f.name, fused_method(kind, st), None, self.fused_gpt_values(kind),
                                  kind=kind))
        return rows

    def _row(self, category, key, name, sel, gpt, n_forward=None, kind=None) -> dict:
        inputs, st = self.inputs, self.st
        values = {}
        for col in METRIC_COLUMNS:
            if sel is None:
                arr = inputs.fused[kind].metrics.get(col)
            else:
                arr = _pick(inputs.metrics[col], sel) if col in inputs.metrics else None
            if arr is None or not np.isfinite(arr).any():
                values[col] = None  # not computed in this profile: empty, never zero
            else:
                values[col] = float(np.nanmean(arr)) * st["metric_scale"].get(col, 1)
        for col in GPT_COLUMNS:
            arr = gpt[col]
            values[col] = float(np.nanmean(arr)) if np.isfinite(arr).any() else None
        if sel is None:
            arr = inputs.fused[kind].lengths
        else:
            arr = _pick(inputs.lengths, sel) if inputs.lengths is not None else None
        values[LENGTH_COLUMN] = float(np.nanmean(arr)) if arr is not None and np.isfinite(arr).any() else None
        return {"category": category, "key": key, "method": name, "values": values, "gpt": gpt,
                "n_gpt": int(np.isfinite(gpt["gpt_rank"]).sum()),
                "n_forward": None if n_forward is None or not np.isfinite(n_forward).any()
                else float(np.nanmean(n_forward))}


def add_cis(rows: list[dict], inputs, st: dict, seed: int) -> None:
    """Bootstrap CIs of every row's GPT-Rank, resampling the judged examples (same draws for all rows)."""
    pos = np.flatnonzero(inputs.judged)
    idx = stats.bootstrap_indices(len(pos), st["bootstrap"]["samples"], seed)
    for row in rows:
        row["ci"] = {"gpt_rank": stats.mean_ci(row["gpt"]["gpt_rank"][pos], idx, st["bootstrap"]["confidence"])}


def pair_order(inputs, ev: Evaluation, st: dict, seed: int) -> list[dict]:
    """Every ranking method (the oracles too): of the GPT-Rank pool's pairs the judge orders, the % its
    ranks put the same way round (judged.ordered_pairs), all and split by the better answer's length,
    each with a bootstrap CI that resamples judged examples (the same draws for every row). Reads what
    the pick's GPT-Rank cannot: the whole ranking, and whether it only orders by length."""
    pos = np.flatnonzero(inputs.judged)
    idx = stats.bootstrap_indices(len(pos), st["bootstrap"]["samples"], seed)
    names = dict(zip(PAIR_SIDES, zip(PAIR_ORDER_COLUMNS[::2], PAIR_ORDER_COLUMNS[1::2])))
    rows = []
    for method, ranking in inputs.rankings.items():
        per = J.ordered_pairs(inputs.outcomes[pos], ranking["ranks"][pos], ev.pool,
                              None if inputs.lengths is None else inputs.lengths[pos])
        values, ci = dict.fromkeys(PAIR_ORDER_COLUMNS), {}
        for side, (right, n) in per.items():
            count, share = names[side]
            values[count] = float(n.sum())
            values[share] = 100 * float(right.sum() / n.sum()) if n.sum() else None
            ci[share] = (tuple(100 * x for x in stats.ratio_ci(right, n, idx, st["bootstrap"]["confidence"]))
                         if n.sum() else None)
        rows.append({"key": method, "method": method_name(method, st), "values": values, "ci": ci})
    return rows


# Table 3 -----------------------------------------------------------------------------------------
def table3(inputs, ev: Evaluation, st: dict, mode: str, seed: int, with_ci: bool = True) -> list[dict]:
    """Correlation of each ranking method and metric with GPT-Rank, on the judged examples."""
    pool = ev.pool
    ref_all = ev.ranks
    hyps = []
    methods = [m for m in inputs.rankings if not m.startswith("oracle-")]
    if "random" in methods:
        methods.remove("random")
        hyps.append(("random", method_name("random", st), inputs.rankings["random"]["ranks"]))
    for metric, name in st["table3_metrics"].items():
        if metric in inputs.metrics:
            hyps.append((metric, name, J.ranks_from_scores(np.where(pool, inputs.metrics[metric], np.nan))))
        else:
            hyps.append((metric, name, None))
    for m in methods:
        hyps.append((m, method_name(m, st), inputs.rankings[m]["ranks"]))
    out = []
    for b, (key, name, hyp) in enumerate(hyps):
        row = {"key": key, "method": name, "values": {c: None for c in TABLE3_COLUMNS}, "n": 0,
               "ci": {c: (float("nan"), float("nan")) for c in TABLE3_COLUMNS}}
        if hyp is not None:
            h = J.ranks_from_ranks(hyp, pool)[:, pool]
            r = ref_all[:, pool]
            ok = inputs.judged & np.isfinite(h).all(1) & np.isfinite(r).all(1)
            row["n"] = int(ok.sum())
            if ok.any():
                res = stats.correlations(h[ok], r[ok], mode)
                row["values"] = {c: (None if np.isnan(res[c]) else res[c]) for c in TABLE3_COLUMNS}
                row["undefined"] = res["undefined"]
                if with_ci:
                    idx = stats.bootstrap_indices(int(ok.sum()), st["bootstrap"]["samples"], seed + 1 + b)
                    row["ci"] = stats.correlation_cis(h[ok], r[ok], idx, mode, st["bootstrap"]["confidence"])
        out.append(row)
    return out


def rank_correlation_matrix(inputs, ev: Evaluation, st: dict) -> tuple[list, np.ndarray]:
    """Per-candidate Spearman (x100) between every pair of rankings (methods, metrics, GPT-Rank)."""
    pool = ev.pool
    named = [("GPT-Rank", ev.ranks)]
    for metric, name in st["table3_metrics"].items():
        if metric in inputs.metrics:
            named.append((name, J.ranks_from_scores(np.where(pool, inputs.metrics[metric], np.nan))))
    for m in inputs.rankings:
        if m != "oracle-gpt_rank":
            named.append((method_name(m, st), inputs.rankings[m]["ranks"]))
    ranked = [J.ranks_from_ranks(r, pool)[:, pool] for _, r in named]
    ok = inputs.judged.copy()
    for r in ranked:
        ok &= np.isfinite(r).all(1)
    mat = np.full((len(named), len(named)), np.nan)
    if ok.sum() >= 2:
        for i in range(len(named)):
            for j in range(len(named)):
                mat[i, j] = stats.correlations(ranked[i][ok], ranked[j][ok], st["correlation"])["spearman"]
    return [n for n, _ in named], mat


def first_place_shares(inputs, ev: Evaluation, st: dict) -> dict:
    """Figure 1: % of judged examples where each pool model ranks first by GPT-Rank.
    first_ties "split": k models tied first get 1/k each (sums to 100); "all": each gets 1."""
    r = ev.ranks[inputs.judged][:, ev.pool]
    models = [m for m, p in zip(inputs.models, ev.pool) if p]
    if not len(r):
        return {m: None for m in models}
    first = (r == 1).astype(float)
    if st["first_ties"] == "split":
        first = first / np.maximum(first.sum(1, keepdims=True), 1)
    share = 100 * first.sum(0) / len(r)
    return {m: float(s) for m, s in zip(models, share)}
