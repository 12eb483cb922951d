"""The evaluate stage: artifacts -> Table 2, Table 3, figures, DVC metrics and plots.

`evaluate(cfg, scored=..., judge=..., rankings={method: path}, fused=..., fused_judge=..., out_dir=...)`
writes, under out_dir (results/<run>):
  tables/table2.{csv,md,tex}, table3.{csv,md,tex}, table2_vs_paper.md, table3_vs_paper.md,
  tables/table2_readings.csv, table3_readings.csv (the other readings of the ambiguous choices),
  tables/summary.json (settings, roles, counts of everything missing or left out),
  figures/{figure1,gpt_rank_distribution,correlation_heatmap,tradeoff}.{png,svg},
  metrics/headline.json (DVC metrics), plots/{first_place,gpt_rank_distribution,tradeoff}.csv (DVC plots);
with `matrices` (rule rank_test_full's full comparison matrices of the test split) also the best-of-N
schedule curve, plots/select_curve.csv and figures/select_curve.{png,svg} (select_curve(); no model call).

compute() reads every input and computes every reading into one `Results` (a bad input fails before
anything is written); write_tables / write_figures / write_plots / write_metrics / summary_of only
format it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from llmblend.analysis import figures, render
from llmblend.analysis.inputs import load_inputs
from llmblend.analysis.tables import (GE_READINGS, PAIR_ORDER_COLUMNS, TABLE2_COLUMNS, TABLE3_COLUMNS, Evaluation,
                                      add_cis, first_place_shares, fused_method, pair_order, rank_correlation_matrix,
                                      settings_of, table3)
from llmblend.analysis.tables import select as select_in_pool
from llmblend.errors import InputError
from llmblend.io import read_json, write_json
from llmblend.ranker import aggregate
from llmblend.ranker import select as schedules

log = logging.getLogger("llmblend.evaluate")

FIGURES = ["figure1", "gpt_rank_distribution", "correlation_heatmap", "tradeoff"]
SELECT_CURVE_COLUMNS = ["schedule", "opponents", "refine_top", "z", "label", "prompts", "passes_per_prompt",
                        "passes_pct", "agreement_pct", "gpt_rank", "judged"]


def _pool_label(exclude) -> str:
    return "all candidates" if not exclude else "without " + ", ".join(exclude)


def _clean(v):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return None
    return round(float(v), 6)


def _why_not_comparable(st: dict) -> str | None:
    if not st["paper"].get("compare"):
        return st["paper"].get("reason") or "the profile does not declare its setting comparable to the paper's"
    differs = []
    if st["ge_reading"] != "paper":
        differs.append(f"evaluate.ge_reading is {st['ge_reading']!r}, the paper's is 'paper'")
    if st["correlation"] != "per_candidate":
        differs.append(f"evaluate.correlation is {st['correlation']!r}, the reference's is 'per_candidate'")
    if st["gpt_rank_exclude"]:
        differs.append("evaluate.gpt_rank_exclude leaves candidates out; the paper's numbers fit all 12")
    return "; ".join(differs) or None


def _paths(value):
    if isinstance(value, dict):
        return {k: str(v) for k, v in value.items()}
    return str(value) if value else None


def fusion_summary(inputs, st: dict) -> dict:
    """Per blended answer kind: its row, how many answers were judged, for verified fusion how often
    the fused answer was kept, and why labels are missing (the judge stage's note)."""
    out = {}
    for kind, f in inputs.fused.items():
        d = {"method": fused_method(kind, st), "answers": int(np.isfinite(f.lengths).sum()),
             "judged": int(f.judged.sum()) if f.judged is not None else 0, "notes": list(f.notes)}
        if f.kept is not None:
            n = int(np.isfinite(f.kept).sum())
            d.update(fused_kept=int(np.nansum(f.kept)), verified=n,
                     fused_kept_pct=round(100.0 * float(np.nansum(f.kept)) / n, 2) if n else None)
        out[kind] = d
    return out


def fusion_note(inputs, st: dict) -> str:
    """Table 2's note on the blended answer rows: the verified row's kept share, and why a row's GPT
    columns are empty when its answers could not be judged."""
    parts = []
    for kind, d in fusion_summary(inputs, st).items():
        if "fused_kept" in d:
            parts.append(f"'{d['method']}': the fused answer was kept on {d['fused_kept']} of {d['verified']} "
                         f"prompts ({d['fused_kept_pct']}%), the PairRanker's top-1 elsewhere.")
        if not d["judged"] and d["notes"]:
            parts.append(f"'{d['method']}' has empty GPT columns: {' '.join(d['notes'])}.")
    return (" " + " ".join(parts)) if parts else ""


def read_curve_matrices(path, inputs) -> tuple[list[int], list[np.ndarray]]:
    """The full matrices of the test split, aligned on the scored file: (row of each, matrix); every id
    must be a scored example and every matrix k x k. Examples without one are counted."""
    ids, mats = aggregate.read_matrices(path)
    row_of = {i: r for r, i in enumerate(inputs.ids)}
    rows = []
    for e, (i, m) in enumerate(zip(ids, mats)):
        if i not in row_of:
            raise InputError(path, field="ids", problem=f"{i!r} is not in the scored test split")
        if m.shape != (inputs.k, inputs.k):
            raise InputError(path, field=f"m{e}", problem=f"shape {m.shape} for {inputs.k} candidates")
        rows.append(row_of[i])
    if inputs.n - len(rows):
        inputs.counts["select_curve.examples_missing"] = inputs.n - len(rows)
    return rows, mats


def select_curve(rows_at: list[int], mats: list[np.ndarray], ev: Evaluation, seed: int, grid=None) -> list[dict]:
    """The best-of-N schedule grid (llmblend.ranker.select.simulate_grid) replayed on the full matrices:
    per cell the mean forward passes per prompt, their % of N(N-1), the top-1 agreement with full
    MaxLogits (%) and the mean GPT-Rank of the cell's picks, selected as Table 2 selects a ranker row's
    (the best rank inside the GPT-Rank pool, ties to the earlier candidate), over the judged examples.
    Example e of the matrices file plays make(..., seed, e), as rank_split's `select` methods do, so the
    cell of ranker.select's settings reproduces pairranker-sampled's picks."""
    out = []
    for r in schedules.simulate_grid(mats, seed, grid):
        ranks = np.full((ev.inputs.n, ev.inputs.k), np.nan)
        for row, sc in zip(rows_at, r["scores"]):
            ranks[row] = aggregate.ranks_from_scores(sc)
        gpt = ev.gpt_values(select_in_pool(ranks, ev.pool))["gpt_rank"]
        out.append({"schedule": r["schedule"], "opponents": r["opponents"], "refine_top": r["refine_top"],
                    "z": r["z"], "label": schedules.cell_label(r), "prompts": r["prompts"],
                    "passes_per_prompt": _clean(r["passes_per_prompt"]), "passes_pct": _clean(r["passes_pct"]),
                    "agreement_pct": _clean(100 * r["top1_agreement"]),
                    "gpt_rank": _clean(np.nanmean(gpt)) if np.isfinite(gpt).any() else None,
                    "judged": int(np.isfinite(gpt).sum())})
    return out


@dataclass
class Results:
    """Everything the stage computes, once (compute()); the writers below only format it."""
    st: dict
    seed: int
    inputs: object
    ev: Evaluation
    rows: list            # Table 2, the configured reading
    t3: list              # Table 3
    pairs: list           # how each ranking orders the judge's pairs (tables/pair_order)
    readings2: list       # (label, rows) of every reading of Table 2, the configured one first
    readings3: list
    why_not: str | None   # why the tables are not comparable to the paper's (None: they are)
    roles: dict           # vicuna, oa: the candidates that play them
    shares: dict          # Figure 1: first-place share per model
    dist: dict            # GPT-Rank values of each row's picks on the judged examples
    max_rank: int
    correlation: tuple    # (names, matrix) of the rank correlation heatmap
    points: list          # the trade-off curve
    curve: list | None    # the best-of-N schedule curve (with matrices)
    metrics_stage_report: dict | None
    paths: dict           # the input files, as the summary names them


def compute(cfg: dict, scored, judge=None, rankings: dict | None = None, fused=None, fused_judge=None,
            metrics_report=None, matrices=None) -> Results:
    """Read every input (a bad one raises before anything is written) and compute every reading."""
    st = settings_of(cfg)
    seed = int(cfg.get("seed", 0))
    inputs = load_inputs(scored, judge=judge, rankings=rankings, fused=fused, fused_judge=fused_judge,
                         fused_name=st["fused_model"])
    metrics_stage_report = read_json(metrics_report) if metrics_report else None
    curve_input = read_curve_matrices(matrices, inputs) if matrices else None
    log.info("evaluate: %d test examples, %d judged, %d candidates, %d ranking methods%s", inputs.n,
             int(inputs.judged.sum()), inputs.k, len(inputs.rankings), ", fused answers" if fused else "")

    # the configured reading fills the tables
    ev = Evaluation(inputs, st, st["gpt_rank_exclude"], st["ge_reading"])
    rows = ev.rows()
    add_cis(rows, inputs, st, seed)
    t3 = table3(inputs, ev, st, st["correlation"], seed)

    # the other readings, reported beside
    readings2 = [(f"pool={_pool_label(st['gpt_rank_exclude'])}; ge={st['ge_reading']} (configured)", rows)]
    readings2 += [(f"pool={_pool_label(st['gpt_rank_exclude'])}; ge={g}",
                   Evaluation(inputs, st, st["gpt_rank_exclude"], g).rows())
                  for g in GE_READINGS if g != st["ge_reading"]]
    other_corr = "per_example" if st["correlation"] == "per_candidate" else "per_candidate"
    readings3 = [(f"pool={_pool_label(st['gpt_rank_exclude'])}; correlation={st['correlation']} (configured)", t3),
                 (f"pool={_pool_label(st['gpt_rank_exclude'])}; correlation={other_corr}",
                  table3(inputs, ev, st, other_corr, seed, with_ci=False))]
    alt = st["gpt_rank_alt_exclude"]
    if alt is not None:
        ev_alt = Evaluation(inputs, st, alt, st["ge_reading"])
        readings2.append((f"pool={_pool_label(alt)}; ge={st['ge_reading']}", ev_alt.rows()))
        readings3.append((f"pool={_pool_label(alt)}; correlation={st['correlation']}",
                          table3(inputs, ev_alt, st, st["correlation"], seed, with_ci=False)))

    # what the figures and DVC plots show
    shares = first_place_shares(inputs, ev, st)
    judged_pos = np.flatnonzero(inputs.judged)
    dist = {r["method"]: r["gpt"]["gpt_rank"][judged_pos][np.isfinite(r["gpt"]["gpt_rank"][judged_pos])]
            for r in rows}
    by_key = {r["key"]: r for r in rows}
    points = [{"method": by_key[m]["method"], "key": m, "n_forward": by_key[m]["n_forward"],
               "gpt_rank": by_key[m]["values"]["gpt_rank"], "gpt_rank_ci": by_key[m]["ci"]["gpt_rank"],
               "top3": by_key[m]["values"]["top3"], "bartscore": by_key[m]["values"]["bartscore"]}
              for m in st["tradeoff_methods"] if m in by_key]
    return Results(
        st=st, seed=seed, inputs=inputs, ev=ev, rows=rows, t3=t3, readings2=readings2, readings3=readings3,
        pairs=pair_order(inputs, ev, st, seed),
        why_not=_why_not_comparable(st),
        roles={"vicuna": inputs.models[ev.roles["vicuna"]], "oa": inputs.models[ev.roles["oa"]]},
        shares=shares, dist=dist, max_rank=int(ev.pool.sum()) + (1 if inputs.fused else 0),
        correlation=rank_correlation_matrix(inputs, ev, st), points=points,
        # the best-of-N schedules replayed on the full matrices: no model call
        curve=select_curve(*curve_input, ev, seed) if curve_input is not None else None,
        metrics_stage_report=metrics_stage_report,
        paths={"scored": str(scored), "judge": str(judge) if judge else None,
               "rankings": {k: str(v) for k, v in (rankings or {}).items()},
               "fused": _paths(fused), "fused_judge": _paths(fused_judge),
               "matrices": str(matrices) if matrices else None})


def write_tables(res: Results, tables_dir: Path) -> None:
    """Tables 2 and 3 (csv, md, tex), their other readings and their comparison with the paper."""
    st, inputs, ev = res.st, res.inputs, res.ev
    note2 = (f"GPT-based columns over the {int(inputs.judged.sum())} judged of {inputs.n} test examples; GPT-Rank "
             f"pool: {_pool_label(st['gpt_rank_exclude'])} ({int(ev.pool.sum())} models); '>= Vic' is vs "
             f"{res.roles['vicuna']}, '>= OA' vs {res.roles['oa']}, reading '{st['ge_reading']}'. "
             f"BERTScore x{st['metric_scale'].get('bertscore', 1)}. "
             "pick_len_words: mean length in words of the row's picks over all test examples (GPT-4 judges "
             "favour long answers). An empty cell is a metric this profile does not compute. "
             "Other readings: table2_readings.csv." + fusion_note(inputs, st))
    note3 = (f"Pearson and Spearman x100, computed {st['correlation'].replace('_', ' ')} "
             "(reference: per candidate column across examples, averaged); footrule = mean over examples of "
             "sum |rank - GPT-Rank|. 95% CIs: bootstrap over examples. Other readings: table3_readings.csv.")
    note_pairs = (f"Of the GPT-Rank pool's pairs the judge orders (one answer won against the other) on the "
                  f"{int(inputs.judged.sum())} judged test examples: how many, and the % each ranking puts the "
                  "same way round (equal ranks count half); then the same for the pairs whose better answer is "
                  "the longer and those where it is the shorter (in words). A ranking by length alone is right "
                  "on every longer-better pair and on no shorter-better one; a coin is at 50 on both. 95% CIs: "
                  "bootstrap over judged examples.")
    render.write_table2(res.rows, tables_dir, note2)
    render.write_pair_order(res.pairs, tables_dir, note_pairs)
    render.write_table3(res.t3, tables_dir, note3)
    render.write_readings(res.readings2, ["gpt_rank", "ge_vic", "ge_oa", "top3"], tables_dir / "table2_readings.csv",
                          ("category", "method"))
    render.write_readings(res.readings3, list(TABLE3_COLUMNS), tables_dir / "table3_readings.csv", ("method",))
    comparable, why = res.why_not is None, res.why_not or ""
    render.write_vs_paper("table2", res.rows, st, comparable, why, tables_dir / "table2_vs_paper.md")
    render.write_vs_paper("table3", res.t3, st, comparable, why, tables_dir / "table3_vs_paper.md")


def write_figures(res: Results, fig_dir: Path) -> None:
    figures.figure1(res.shares, fig_dir)
    figures.gpt_rank_distribution(res.dist, res.max_rank, fig_dir)
    figures.correlation_heatmap(*res.correlation, fig_dir)
    figures.tradeoff(res.points, fig_dir)
    if res.curve is not None:
        figures.select_curve(res.curve, fig_dir, 100 * schedules.TARGET_AGREEMENT, schedules.TARGET_SHARE)


def write_plots(res: Results, plots: Path) -> None:
    """The DVC plots: the data behind each figure."""
    if res.curve is not None:
        df = pd.DataFrame(res.curve, columns=SELECT_CURVE_COLUMNS)
        df[["opponents", "refine_top"]] = df[["opponents", "refine_top"]].astype("Int64")  # 2, not 2.0
        render.write_csv(df, plots / "select_curve.csv")
    render.write_csv(pd.DataFrame([{"model": m, "share": _clean(s)} for m, s in res.shares.items()],
                                  columns=["model", "share"]), plots / "first_place.csv")
    render.write_csv(pd.DataFrame([{"method": n, "rank": k, "share": _clean(100 * float(np.mean(v == k)))}
                                   for n, v in res.dist.items() if len(v) for k in range(1, res.max_rank + 1)],
                                  columns=["method", "rank", "share"]), plots / "gpt_rank_distribution.csv")
    render.write_csv(pd.DataFrame([{"method": p["key"], "n_forward": _clean(p["n_forward"]),
                                    "gpt_rank": _clean(p["gpt_rank"]), "gpt_rank_lo": _clean(p["gpt_rank_ci"][0]),
                                    "gpt_rank_hi": _clean(p["gpt_rank_ci"][1]), "top3": _clean(p["top3"]),
                                    "bartscore": _clean(p["bartscore"])} for p in res.points],
                                  columns=["method", "n_forward", "gpt_rank", "gpt_rank_lo", "gpt_rank_hi", "top3",
                                           "bartscore"]), plots / "tradeoff.csv")


def write_metrics(res: Results, path: Path) -> None:
    """DVC metrics: every number of both tables, keyed by model / method id (absent = not computed)."""
    headline = {"n_test": res.inputs.n, "n_judged": int(res.inputs.judged.sum()),
                "table2": {r["key"]: {c: _clean(r["values"][c]) for c in TABLE2_COLUMNS
                                      if _clean(r["values"][c]) is not None} for r in res.rows},
                "table3": {r["key"]: {c: _clean(r["values"][c]) for c in TABLE3_COLUMNS
                                      if _clean(r["values"][c]) is not None} for r in res.t3},
                "pair_order": {r["key"]: {c: _clean(r["values"][c]) for c in PAIR_ORDER_COLUMNS
                                          if _clean(r["values"][c]) is not None} for r in res.pairs}}
    for r in res.rows:
        lo, hi = r["ci"]["gpt_rank"]
        if _clean(lo) is not None:
            headline["table2"][r["key"]].update(gpt_rank_lo=_clean(lo), gpt_rank_hi=_clean(hi))
    write_json(path, headline)


def summary_of(res: Results) -> dict:
    """tables/summary.json: settings, roles, counts of everything missing or left out, the inputs."""
    st, inputs, curve = res.st, res.inputs, res.curve
    summary = {
        "settings": st, "seed": res.seed, "roles": res.roles,
        "gpt_rank_pool": [m for m, p in zip(inputs.models, res.ev.pool) if p],
        "candidates_without_llm_row": [m for m in inputs.models if st["models"] and m not in st["models"]],
        "comparable_to_paper": res.why_not is None, "why_not_comparable": res.why_not,
        "counts": dict(sorted(inputs.counts.items())),
        "rows_gpt_examples": {r["key"]: r["n_gpt"] for r in res.rows},
        "table3_examples": {r["key"]: r["n"] for r in res.t3},
        "select_curve": None if curve is None else {"seed": res.seed, "prompts": curve[0]["prompts"] if curve else 0,
                                                    "cells": len(curve)},
        "fusion": fusion_summary(inputs, st),
        "inputs": res.paths,
    }
    if res.metrics_stage_report is not None:
        summary["metrics_stage_report"] = res.metrics_stage_report
    return summary


def evaluate(cfg: dict, scored, out_dir, judge=None, rankings: dict | None = None, fused=None,
             fused_judge=None, metrics_report=None, matrices=None) -> dict:
    res = compute(cfg, scored, judge, rankings, fused, fused_judge, metrics_report, matrices)
    out_dir = Path(out_dir)
    tables_dir, fig_dir, plots = out_dir / "tables", out_dir / "figures", out_dir / "plots"
    write_tables(res, tables_dir)
    write_figures(res, fig_dir)
    write_plots(res, plots)
    write_metrics(res, out_dir / "metrics" / "headline.json")
    summary = summary_of(res)
    write_json(tables_dir / "summary.json", summary)
    log.info("evaluate: wrote %s", ", ".join(str(p) for p in (tables_dir, fig_dir, out_dir / "metrics", plots)))
    return summary
