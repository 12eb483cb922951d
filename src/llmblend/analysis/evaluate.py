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
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from llmblend.analysis import figures, render, stats
from llmblend.analysis.inputs import load_inputs
from llmblend.analysis.tables import (GE_READINGS, TABLE2_COLUMNS, TABLE3_COLUMNS, Evaluation, add_cis,
                                      first_place_shares, rank_correlation_matrix, settings_of, table3)
from llmblend.analysis.tables import select as select_in_pool
from llmblend.errors import InputError
from llmblend.io import read_json, write_json
from llmblend.ranker import aggregate
from llmblend.ranker import select as schedules

log = logging.getLogger("llmblend.evaluate")

FIGURES = ["figure1", "gpt_rank_distribution", "correlation_heatmap", "tradeoff"]
SELECT_CURVE_COLUMNS = ["schedule", "opponents", "refine_top", "label", "prompts", "passes_per_prompt",
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
                    "label": schedules.cell_label(r), "prompts": r["prompts"],
                    "passes_per_prompt": _clean(r["passes_per_prompt"]), "passes_pct": _clean(r["passes_pct"]),
                    "agreement_pct": _clean(100 * r["top1_agreement"]),
                    "gpt_rank": _clean(np.nanmean(gpt)) if np.isfinite(gpt).any() else None,
                    "judged": int(np.isfinite(gpt).sum())})
    return out


def evaluate(cfg: dict, scored, out_dir, judge=None, rankings: dict | None = None, fused=None,
             fused_judge=None, metrics_report=None, matrices=None) -> dict:
    st = settings_of(cfg)
    seed = int(cfg.get("seed", 0))
    out_dir = Path(out_dir)
    tables_dir, fig_dir = out_dir / "tables", out_dir / "figures"
    inputs = load_inputs(scored, judge=judge, rankings=rankings, fused=fused, fused_judge=fused_judge,
                         fused_name=st["fused_model"])
    # every input is read before the first output is written: a bad one leaves no partial tables
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

    why_not = _why_not_comparable(st)
    vic, oa = inputs.models[ev.roles["vicuna"]], inputs.models[ev.roles["oa"]]
    note2 = (f"GPT-based columns over the {int(inputs.judged.sum())} judged of {inputs.n} test examples; GPT-Rank "
             f"pool: {_pool_label(st['gpt_rank_exclude'])} ({int(ev.pool.sum())} models); '>= Vic' is vs "
             f"{vic}, '>= OA' vs {oa}, reading '{st['ge_reading']}'. BERTScore x{st['metric_scale'].get('bertscore', 1)}. "
             "pick_len_words: mean length in words of the row's picks over all test examples (GPT-4 judges "
             "favour long answers). An empty cell is a metric this profile does not compute. "
             "Other readings: table2_readings.csv.")
    note3 = (f"Pearson and Spearman x100, computed {st['correlation'].replace('_', ' ')} "
             "(reference: per candidate column across examples, averaged); footrule = mean over examples of "
             "sum |rank - GPT-Rank|. 95% CIs: bootstrap over examples. Other readings: table3_readings.csv.")
    render.write_table2(rows, tables_dir, note2)
    render.write_table3(t3, tables_dir, note3)
    render.write_readings(readings2, ["gpt_rank", "ge_vic", "ge_oa", "top3"], tables_dir / "table2_readings.csv",
                          ("category", "method"))
    render.write_readings(readings3, list(TABLE3_COLUMNS), tables_dir / "table3_readings.csv", ("method",))
    render.write_vs_paper("table2", rows, st, why_not is None, why_not or "", tables_dir / "table2_vs_paper.md")
    render.write_vs_paper("table3", t3, st, why_not is None, why_not or "", tables_dir / "table3_vs_paper.md")

    # figures and DVC plots
    shares = first_place_shares(inputs, ev, st)
    figures.figure1(shares, fig_dir)
    judged_pos = np.flatnonzero(inputs.judged)
    dist = {r["method"]: r["gpt"]["gpt_rank"][judged_pos][np.isfinite(r["gpt"]["gpt_rank"][judged_pos])]
            for r in rows}
    max_rank = int(ev.pool.sum()) + (1 if fused else 0)
    figures.gpt_rank_distribution(dist, max_rank, fig_dir)
    names, mat = rank_correlation_matrix(inputs, ev, st)
    figures.correlation_heatmap(names, mat, fig_dir)
    by_key = {r["key"]: r for r in rows}
    points = [{"method": by_key[m]["method"], "key": m, "n_forward": by_key[m]["n_forward"],
               "gpt_rank": by_key[m]["values"]["gpt_rank"], "gpt_rank_ci": by_key[m]["ci"]["gpt_rank"],
               "top3": by_key[m]["values"]["top3"], "bartscore": by_key[m]["values"]["bartscore"]}
              for m in st["tradeoff_methods"] if m in by_key]
    figures.tradeoff(points, fig_dir)

    plots = out_dir / "plots"
    curve = None
    if curve_input is not None:  # the best-of-N schedules replayed on the full matrices: no model call
        curve = select_curve(*curve_input, ev, seed)
        figures.select_curve(curve, fig_dir, 100 * schedules.TARGET_AGREEMENT, schedules.TARGET_SHARE)
        df = pd.DataFrame(curve, columns=SELECT_CURVE_COLUMNS)
        df[["opponents", "refine_top"]] = df[["opponents", "refine_top"]].astype("Int64")  # 2, not 2.0
        render.write_csv(df, plots / "select_curve.csv")
    render.write_csv(pd.DataFrame([{"model": m, "share": _clean(s)} for m, s in shares.items()],
                                  columns=["model", "share"]), plots / "first_place.csv")
    render.write_csv(pd.DataFrame([{"method": n, "rank": k, "share": _clean(100 * float(np.mean(v == k)))}
                                   for n, v in dist.items() if len(v) for k in range(1, max_rank + 1)],
                                  columns=["method", "rank", "share"]), plots / "gpt_rank_distribution.csv")
    render.write_csv(pd.DataFrame([{"method": p["key"], "n_forward": _clean(p["n_forward"]),
                                    "gpt_rank": _clean(p["gpt_rank"]), "gpt_rank_lo": _clean(p["gpt_rank_ci"][0]),
                                    "gpt_rank_hi": _clean(p["gpt_rank_ci"][1]), "top3": _clean(p["top3"]),
                                    "bartscore": _clean(p["bartscore"])} for p in points],
                                  columns=["method", "n_forward", "gpt_rank", "gpt_rank_lo", "gpt_rank_hi", "top3",
                                           "bartscore"]), plots / "tradeoff.csv")

    # DVC metrics: every number of both tables, keyed by model / method id (absent = not computed)
    headline = {"n_test": inputs.n, "n_judged": int(inputs.judged.sum()),
                "table2": {r["key"]: {c: _clean(r["values"][c]) for c in TABLE2_COLUMNS
                                      if _clean(r["values"][c]) is not None} for r in rows},
                "table3": {r["key"]: {c: _clean(r["values"][c]) for c in TABLE3_COLUMNS
                                      if _clean(r["values"][c]) is not None} for r in t3}}
    for r in rows:
        lo, hi = r["ci"]["gpt_rank"]
        if _clean(lo) is not None:
            headline["table2"][r["key"]].update(gpt_rank_lo=_clean(lo), gpt_rank_hi=_clean(hi))
    write_json(out_dir / "metrics" / "headline.json", headline)

    left_out = [m for m in inputs.models if st["models"] and m not in st["models"]]
    summary = {
        "settings": st, "seed": seed, "roles": {"vicuna": vic, "oa": oa},
        "gpt_rank_pool": [m for m, p in zip(inputs.models, ev.pool) if p],
        "candidates_without_llm_row": left_out,
        "comparable_to_paper": why_not is None, "why_not_comparable": why_not,
        "counts": dict(sorted(inputs.counts.items())),
        "rows_gpt_examples": {r["key"]: r["n_gpt"] for r in rows},
        "table3_examples": {r["key"]: r["n"] for r in t3},
        "select_curve": None if curve is None else {"seed": seed, "prompts": curve[0]["prompts"] if curve else 0,
                                                    "cells": len(curve)},
        "inputs": {"scored": str(scored), "judge": str(judge) if judge else None,
                   "rankings": {k: str(v) for k, v in (rankings or {}).items()},
                   "fused": str(fused) if fused else None, "fused_judge": str(fused_judge) if fused_judge else None,
                   "matrices": str(matrices) if matrices else None},
    }
    if metrics_stage_report is not None:
        summary["metrics_stage_report"] = metrics_stage_report
    write_json(tables_dir / "summary.json", summary)
    log.info("evaluate: wrote %s", ", ".join(str(p) for p in (tables_dir, fig_dir, out_dir / "metrics", plots)))
    return summary
