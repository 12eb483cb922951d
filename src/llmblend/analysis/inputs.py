"""Read the evaluate stage's inputs into arrays aligned on the scored test split.

Every input is checked against the contract in docs/architecture.md; a bad record raises InputError
naming the file, line and field. Nothing is dropped silently: what is missing (an example without
judge labels or without a ranking, a metric value that is null, a failed judge label) is counted in
`Inputs.counts`, which the stage writes to its summary and the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmblend.analysis.judged import MISSING, fill_outcomes
from llmblend.errors import InputError
from llmblend.io import iter_jsonl
from llmblend.ranker.baselines import word_count as words


@dataclass
class Fused:
    """One kind of blended answer (llmblend.fuser.kinds): fused, verified or aggregated."""

    name: str                      # its name in the judge's pair keys
    col: int                       # its index in Inputs.outcomes (k, k+1, ...)
    metrics: dict = field(default_factory=dict)    # metric -> (n,), NaN where absent
    lengths: np.ndarray | None = None              # (n,) words of the answer, NaN where absent
    judged: np.ndarray | None = None               # (n,) bool: the answer has labels against candidates
    kept: np.ndarray | None = None                 # (n,) verified: 1 the fused answer kept, 0 the top-1, NaN absent
    notes: list = field(default_factory=list)      # why examples have no label (the judge file says)


@dataclass
class Inputs:
    ids: list                      # test example ids, in the scored file's order
    models: list                   # candidate models, in candidate order
    metrics: dict                  # metric -> (n, k) float, NaN where absent
    judged: np.ndarray             # (n,) bool: the example has candidate-vs-candidate labels
    outcomes: np.ndarray           # (n, k+F, k+F) int8 outcome codes; index k+f is blended answer kind f
    rankings: dict = field(default_factory=dict)   # method -> {"ranks": (n, k), "n_forward": (n,)}
    fused: dict = field(default_factory=dict)      # kind -> Fused, for the blended answers given
    counts: dict = field(default_factory=dict)
    lengths: np.ndarray | None = None              # (n, k) words of each candidate's text, NaN where absent

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def k(self) -> int:
        return len(self.models)


def _number(value, path, line, fld):
    if value is None:
        return np.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(path, line, fld, f"expected a number or null, got {type(value).__name__}")
    return float(value)


def word_count(text, path, line, fld) -> float:
    """Words of a text (whitespace split, as the `longest` ranker counts); NaN when the text is absent."""
    if text is None:
        return np.nan
    if not isinstance(text, str):
        raise InputError(path, line, fld, f"expected a string or null, got {type(text).__name__}")
    return float(words(text))


def read_scored(path) -> tuple[list, list, dict, dict, np.ndarray]:
    """ids, models, metric arrays, counts and candidate lengths (words) from data/<run>/scored/test.jsonl."""
    ids, models, rows = [], None, []
    seen = set()
    for line, rec in iter_jsonl(path, required={"id": str, "candidates": list}):
        if rec["id"] in seen:
            raise InputError(path, line, "id", f"duplicate id {rec['id']!r}")
        seen.add(rec["id"])
        cands = rec["candidates"]
        names = []
        for c_i, cand in enumerate(cands):
            fld = f"candidates[{c_i}]"
            if not isinstance(cand, dict) or not isinstance(cand.get("model"), str):
                raise InputError(path, line, f"{fld}.model", "missing or not a string")
            if not isinstance(cand.get("scores"), dict):
                raise InputError(path, line, f"{fld}.scores", "missing or not an object (run the metrics stage first)")
            names.append(cand["model"])
        if models is None:
            models = names
            if not models:
                raise InputError(path, line, "candidates", "empty: no candidate to evaluate")
        elif names != models:
            raise InputError(path, line, "candidates",
                             f"models {names} differ from the first record's {models} (same order expected)")
        rows.append((line, cands))
        ids.append(rec["id"])
    if models is None:
        raise InputError(path, problem="no records")
    names = sorted({m for _, cands in rows for c in cands for m in c["scores"]})
    metrics, counts = {}, {}
    for m in names:
        arr = np.full((len(rows), len(models)), np.nan)
        for r, (line, cands) in enumerate(rows):
            for c_i, cand in enumerate(cands):
                if m in cand["scores"]:
                    arr[r, c_i] = _number(cand["scores"][m], path, line, f"candidates[{c_i}].scores.{m}")
        missing = int(np.isnan(arr).sum())
        if missing:
            counts[f"metric_values_missing.{m}"] = missing
        metrics[m] = arr
    lengths = np.array([[word_count(c.get("text"), path, line, f"candidates[{c_i}].text")
                         for c_i, c in enumerate(cands)] for line, cands in rows], dtype=float)
    if np.isnan(lengths).any():
        counts["candidate_texts_missing"] = int(np.isnan(lengths).sum())
    return ids, models, metrics, counts, lengths


def _cmp_results(rec, path, line):
    """cmp_results as a dict, or None for an example the judge did not label (MixInstruct: "null")."""
    value = rec["cmp_results"]
    if isinstance(value, str):  # MixInstruct stores it as a JSON string
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise InputError(path, line, "cmp_results", f"a string that is not JSON ({e.msg})") from None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InputError(path, line, "cmp_results", f"expected an object, got {type(value).__name__}")
    return value


def read_judge(path, inputs: Inputs, names: list, fused: str | None = None) -> None:
    """Fill `inputs.outcomes` from a judge file; `names` are the outcome columns (models, + blended
    answers). `fused`: the blended answer kind whose labels against the candidates the file holds."""
    index = {m: i for i, m in enumerate(names)}
    row_of = {i: r for r, i in enumerate(inputs.ids)}
    counts = inputs.counts
    tag = ("fused_judge" if fused == "fused" else f"{fused}_judge") if fused else "judge"
    mask = np.zeros(inputs.n, dtype=bool)
    seen = set()
    k = inputs.k
    fused_col = inputs.fused[fused].col if fused else None
    for line, rec in iter_jsonl(path, required={"id": str, "cmp_results": None}):
        if rec["id"] not in row_of:
            raise InputError(path, line, "id", f"{rec['id']!r} is not in the scored test split")
        if rec["id"] in seen:
            raise InputError(path, line, "id", f"duplicate id {rec['id']!r}")
        seen.add(rec["id"])
        cmp = _cmp_results(rec, path, line)
        if fused and isinstance(rec.get("note"), str) and rec["note"] not in inputs.fused[fused].notes:
            inputs.fused[fused].notes.append(rec["note"])  # the judge stage's reason for no label
        if cmp is None:
            counts[f"{tag}.examples_unlabelled"] = counts.get(f"{tag}.examples_unlabelled", 0) + 1
            continue
        r = row_of[rec["id"]]
        block = np.full((len(names), len(names)), MISSING, dtype=np.int8)
        local: dict = {}
        try:
            fill_outcomes(block, cmp, index, local)
        except ValueError as e:
            raise InputError(path, line, "cmp_results", str(e)) from None
        for key, v in local.items():
            counts[f"{tag}.{key}"] = counts.get(f"{tag}.{key}", 0) + v
        if fused:
            # keep only this blended answer's pairs against the candidates
            inputs.outcomes[r, fused_col, :k] = block[fused_col, :k]
            inputs.outcomes[r, :k, fused_col] = block[:k, fused_col]
            mask[r] = (block[fused_col, :k] != MISSING).any()
        else:
            inputs.outcomes[r, :k, :k] = block[:k, :k]
            mask[r] = (block != MISSING).any()
    counts[f"{tag}.examples_labelled"] = int(mask.sum())
    counts[f"{tag}.examples_without_labels"] = int(inputs.n - mask.sum())
    if fused:
        inputs.fused[fused].judged = mask
    else:
        inputs.judged = mask


def read_ranking(path, inputs: Inputs, method: str) -> None:
    row_of = {i: r for r, i in enumerate(inputs.ids)}
    ranks = np.full((inputs.n, inputs.k), np.nan)
    n_forward = np.full(inputs.n, np.nan)
    seen = set()
    for line, rec in iter_jsonl(path, required={"id": str, "ranks": list, "n_forward": (int, float)}):
        if rec["id"] not in row_of:
            raise InputError(path, line, "id", f"{rec['id']!r} is not in the scored test split")
        if rec["id"] in seen:
            raise InputError(path, line, "id", f"duplicate id {rec['id']!r}")
        seen.add(rec["id"])
        if len(rec["ranks"]) != inputs.k:
            raise InputError(path, line, "ranks", f"{len(rec['ranks'])} ranks for {inputs.k} candidates")
        r = row_of[rec["id"]]
        for c_i, v in enumerate(rec["ranks"]):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 1:
                raise InputError(path, line, f"ranks[{c_i}]", f"expected a rank >= 1, got {v!r}")
            ranks[r, c_i] = v
        n_forward[r] = rec["n_forward"]
    missing = inputs.n - len(seen)
    if missing:
        inputs.counts[f"ranking.{method}.examples_missing"] = missing
    inputs.rankings[method] = {"ranks": ranks, "n_forward": n_forward}


def read_fused(path, inputs: Inputs, kind: str = "fused") -> None:
    """The blended answers with scores: the metrics stage's output for a fuser file, i.e. records
    {id, candidates: [one fused candidate with scores]} (a top-level `scores` object is read too).
    A verified answer's `kept` ("fused" | "top1") is read into Fused.kept."""
    row_of = {i: r for r, i in enumerate(inputs.ids)}
    rows = {}
    lengths = np.full(inputs.n, np.nan)
    kept = np.full(inputs.n, np.nan)
    for line, rec in iter_jsonl(path, required={"id": str}):
        if rec["id"] not in row_of:
            raise InputError(path, line, "id", f"{rec['id']!r} is not in the scored test split")
        if rec["id"] in rows:
            raise InputError(path, line, "id", f"duplicate id {rec['id']!r}")
        if "candidates" in rec:
            cands = rec["candidates"]
            if not isinstance(cands, list) or len(cands) != 1 or not isinstance(cands[0], dict):
                raise InputError(path, line, "candidates", "expected exactly one fused candidate")
            scores, fld = cands[0].get("scores"), "candidates[0].scores"
            words = word_count(cands[0].get("text"), path, line, "candidates[0].text")
            if "kept" in cands[0]:
                if cands[0]["kept"] not in ("fused", "top1"):
                    raise InputError(path, line, "candidates[0].kept", f"expected 'fused' or 'top1', got "
                                     f"{cands[0]['kept']!r}")
                kept[row_of[rec["id"]]] = cands[0]["kept"] == "fused"
        else:
            scores, fld = rec.get("scores"), "scores"
            words = word_count(rec.get("text"), path, line, "text")
        if not isinstance(scores, dict):
            raise InputError(path, line, fld, "missing or not an object (score the fused answers first)")
        rows[rec["id"]] = (line, scores, fld)
        lengths[row_of[rec["id"]]] = words
    metrics = {}
    for m in sorted({m for _, s, _ in rows.values() for m in s}):
        arr = np.full(inputs.n, np.nan)
        for i, (line, scores, fld) in rows.items():
            if m in scores:
                arr[row_of[i]] = _number(scores[m], path, line, f"{fld}.{m}")
        metrics[m] = arr
    missing = inputs.n - len(rows)
    if missing:
        inputs.counts[f"{kind}.examples_missing"] = missing
    if np.isnan(lengths).sum() > missing:
        inputs.counts[f"{kind}.texts_missing"] = int(np.isnan(lengths).sum()) - missing
    f = inputs.fused[kind]
    f.metrics, f.lengths = metrics, lengths
    if np.isfinite(kept).any():
        f.kept = kept  # the evaluate summary's `fusion` section counts it


def _by_kind(value, what) -> dict:
    """A path (the GenFuser's answers, kind "fused") or {kind: path}."""
    from llmblend.fuser.kinds import KINDS

    out = value if isinstance(value, dict) else ({"fused": value} if value else {})
    for kind in out:
        if kind not in KINDS:
            raise InputError(out[kind], problem=f"{what}: unknown blended answer kind {kind!r} (one of "
                             f"{', '.join(KINDS)})")
    return out


def load_inputs(scored, judge=None, rankings: dict | None = None, fused=None, fused_judge=None,
                fused_name: str = "llm-blender") -> Inputs:
    """`fused` / `fused_judge`: the GenFuser's files (a path), or {kind: path} for several blended
    answer kinds (llmblend.fuser.kinds); `fused_name` is the GenFuser answer's name in the labels."""
    from llmblend.fuser.kinds import KINDS

    fused, fused_judge = _by_kind(fused, "fused"), _by_kind(fused_judge, "fused_judge")
    for kind in fused_judge:
        if kind not in fused:
            raise InputError(fused_judge[kind], problem=f"labels of the {kind} answers without their scored file")
    ids, models, metrics, counts, lengths = read_scored(scored)
    kinds = [kind for kind in KINDS if kind in fused]
    names = [fused_name if kind == "fused" else KINDS[kind]["model"] for kind in kinds]
    for name in names:
        if name in models:
            raise InputError(scored, problem=f"a candidate model is named {name!r}, a blended answer's name")
    n, k = len(ids), len(models)
    size = k + len(kinds)
    inputs = Inputs(ids=ids, models=models, metrics=metrics, judged=np.zeros(n, dtype=bool),
                    outcomes=np.full((n, size, size), MISSING, dtype=np.int8), counts=counts, lengths=lengths,
                    fused={kind: Fused(name, k + f) for f, (kind, name) in enumerate(zip(kinds, names))})
    inputs.counts["test_examples"] = n
    if judge:
        read_judge(judge, inputs, models + names)
    for method, path in (rankings or {}).items():
        read_ranking(Path(path), inputs, method)
    for kind in kinds:
        read_fused(fused[kind], inputs, kind)
        if kind in fused_judge:
            read_judge(fused_judge[kind], inputs, models + names, fused=kind)
    return inputs
