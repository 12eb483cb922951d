"""The evaluate stage on synthetic artifacts that follow docs/architecture.md (upstream stages not needed)."""

import csv
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from llmblend.analysis import judged as J
from llmblend.analysis.evaluate import evaluate
from llmblend.analysis.inputs import load_inputs
from llmblend.analysis.stats import correlations
from llmblend.analysis.tables import Evaluation, settings_of
from llmblend.cli import main
from llmblend.errors import InputError

MODELS = ["alpha", "beta", "gamma", "delta"]
METHODS = ["random", "pairranker", "pairranker-bubble", "oracle-gpt_rank", "oracle-bartscore"]


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _label(qa, qb, rng):
    d = qa - qb + rng.normal(scale=0.3)
    if abs(d) < 0.25:
        return "Same good" if qa + qb > 0 else "Same bad"
    return "A is better" if d > 0 else "B is better"


def _ranks_desc(x):
    """1 + number of strictly larger values (ties share the better rank)."""
    return [1 + int(np.sum(x > v)) for v in x]


def make_artifacts(root, n=40, seed=0):
    """Scored test split, judge labels, rankings, fused answers and their labels, all synthetic."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, len(MODELS))) + np.array([0.6, 0.3, 0.0, -0.6])
    ids = [f"syn/{i:03d}" for i in range(n)]
    scored, judge, fused, fused_judge = [], [], [], []
    ranks = {m: [] for m in METHODS}
    for i, ex in enumerate(ids):
        cands = []
        for c, m in enumerate(MODELS):
            s = {"bertscore": 0.6 + 0.05 * q[i, c] + rng.normal(scale=0.01), "bartscore": -3.5 + 0.3 * q[i, c],
                 "bleu": max(0.0, 20 + 5 * q[i, c]), "rouge2": 0.2 + 0.05 * q[i, c] + rng.normal(scale=0.02)}
            cands.append({"model": m, "decoding_method": "greedy", "text": f"answer {m} {i}", "scores": s})
        scored.append({"id": ex, "instruction": "q", "input": "", "output": "ref", "candidates": cands})
        cmp = {}
        for a, b in itertools.combinations(range(len(MODELS)), 2):
            if rng.random() < 0.5:
                a, b = b, a
            cmp[f"{MODELS[a]},{MODELS[b]}"] = _label(q[i, a], q[i, b], rng)
        if i == 3:
            cmp[next(iter(cmp))] = "unparsable"
        judge.append({"id": ex, "cmp_results": None if i == 5 else cmp})
        fq = q[i].max() + 0.2
        fcmp = {}
        for c, m in enumerate(MODELS):
            fcmp[f"llm-blender,{m}" if c % 2 else f"{m},llm-blender"] = (
                _label(fq, q[i, c], rng) if c % 2 else _label(q[i, c], fq, rng))
        fused.append({"id": ex, "candidates": [{"model": "llm-blender", "text": "fused",
                                                "scores": {"bertscore": 0.7, "bartscore": -3.0 + 0.01 * i}}]})
        fused_judge.append({"id": ex, "cmp_results": fcmp})
        ranks["random"].append(list(rng.permutation(len(MODELS)) + 1))
        ranks["pairranker"].append(_ranks_desc(q[i] + rng.normal(scale=0.3, size=len(MODELS))))
        ranks["pairranker-bubble"].append(_ranks_desc(q[i] + rng.normal(scale=0.8, size=len(MODELS))))
        ranks["oracle-bartscore"].append(_ranks_desc(np.array([c["scores"]["bartscore"] for c in cands])))
        ranks["oracle-gpt_rank"].append(None)  # filled from the labels below
    paths = {"scored": root / "scored.jsonl", "judge": root / "judge.jsonl", "fused": root / "fused.jsonl",
             "fused_judge": root / "fused_judge.jsonl"}
    _write(paths["scored"], scored)
    _write(paths["judge"], judge)
    _write(paths["fused"], fused)
    _write(paths["fused_judge"], fused_judge)
    # the GPT-Rank oracle ranks by the judge's own rule (what the ranker stage's oracle does)
    inputs = load_inputs(paths["scored"], judge=paths["judge"])
    gr = J.gpt_ranks(inputs.outcomes[:, :4, :4], np.ones(4, bool))
    ranks["oracle-gpt_rank"] = [list(map(int, r)) if inputs.judged[i] else [1, 2, 3, 4] for i, r in enumerate(gr)]
    n_forward = {"random": 0, "pairranker": 12, "pairranker-bubble": 6, "oracle-gpt_rank": 0, "oracle-bartscore": 0}
    rankings = {}
    for m in METHODS:
        p = root / "rankings" / m / "test.jsonl"
        _write(p, [{"id": ex, "ranks": [int(v) for v in ranks[m][i]], "scores": [0.0] * 4, "n_forward": n_forward[m]}
                   for i, ex in enumerate(ids)])
        rankings[m] = p
    paths["rankings"] = rankings
    return paths


PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
CFG = {"run": "syn", "seed": 7, "evaluate": {"vicuna": "alpha", "oa": "beta", "bootstrap": {"samples": 200}}}


def run_eval(tmp_path, cfg=CFG, **over):
    paths = make_artifacts(tmp_path / "in")
    kw = dict(judge=paths["judge"], rankings=paths["rankings"], fused=paths["fused"], fused_judge=paths["fused_judge"])
    kw.update(over)
    out = tmp_path / "results"
    summary = evaluate(cfg, paths["scored"], out, **kw)
    return out, summary, paths


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# the reference's rules --------------------------------------------------------------------------
def test_gpt_rank_follows_the_reference_rule():
    o = np.zeros((3, 3), dtype=np.int8)
    idx = {"a": 0, "b": 1, "c": 2}
    counts = {}
    J.fill_outcomes(o, {"a,b": "A is better", "c,b": "A is better", "a,c": "Same good"}, idx, counts)
    # a: +2 (beats b) 0 (tie c); c: +2 (beats b); b: -4 -> a and c share rank 1
    assert J.gpt_ranks(o, np.ones(3, bool)).tolist() == [1, 3, 1]
    J.fill_outcomes(o, {"a,c": "B is better"}, idx, counts)
    assert J.gpt_ranks(o, np.ones(3, bool)).tolist() == [2, 3, 1]
    # leaving c out of the pool re-ranks a and b only
    assert J.gpt_ranks(o, np.array([True, True, False]))[:2].tolist() == [1, 2]
    J.fill_outcomes(o, {"a,b": "error", "x,a": "Same bad"}, idx, counts)
    assert counts == {"error": 1, "pairs_outside": 1}
    with pytest.raises(ValueError, match="not one of"):
        J.fill_outcomes(o, {"a,b": "tie"}, idx, counts)


def test_vectorised_gpt_rank_and_ge_agree_with_the_judge_stage_helpers(tmp_path):
    from llmblend.judge import gpt_rank as ref

    paths = make_artifacts(tmp_path, n=25, seed=3)
    inputs = load_inputs(paths["scored"], judge=paths["judge"], fused=paths["fused"],
                         fused_judge=paths["fused_judge"])
    st = settings_of(CFG)
    ev = Evaluation(inputs, st, [], "head_to_head")
    fused_rows = {r["key"]: r for r in ev.rows()}
    labels = {json.loads(l)["id"]: json.loads(l)["cmp_results"] for l in paths["judge"].read_text().splitlines()}
    flabels = {json.loads(l)["id"]: json.loads(l)["cmp_results"]
               for l in paths["fused_judge"].read_text().splitlines()}
    for i, ex in enumerate(inputs.ids):
        if labels[ex] is None:
            assert np.isnan(ev.ranks[i]).all()
            continue
        assert ev.ranks[i].tolist() == ref.gpt_ranks(labels[ex], MODELS)
        assert ev.ext_ranks["fused"][i, -1] == ref.rank_with_extra(labels[ex], flabels[ex], MODELS, "llm-blender")
        for m in MODELS:
            want = ref.beats_or_ties(labels[ex], m, "alpha", "paper")
            got = fused_rows[m]["gpt"]["ge_vic"][i]
            assert (np.isnan(got) if want is None or m == "alpha" else got == 100 * want), (ex, m)


def test_correlations_match_the_reference_per_candidate_average():
    rng = np.random.default_rng(0)
    ref = np.array([rng.permutation(5) + 1 for _ in range(30)], dtype=float)
    hyp = np.array([rng.permutation(5) + 1 for _ in range(30)], dtype=float)
    hyp[:15] = ref[:15]
    got = correlations(hyp, ref, "per_candidate")
    want_p = np.mean([pearsonr(hyp[:, j], ref[:, j])[0] for j in range(5)]) * 100
    want_s = np.mean([spearmanr(hyp[:, j], ref[:, j])[0] for j in range(5)]) * 100
    assert got["pearson"] == pytest.approx(want_p)
    assert got["spearman"] == pytest.approx(want_s)
    assert got["footrule"] == pytest.approx(np.abs(hyp - ref).sum(1).mean())
    per_ex = correlations(hyp, ref, "per_example")
    assert per_ex["pearson"] == pytest.approx(np.mean([pearsonr(hyp[i], ref[i])[0] for i in range(30)]) * 100)
    same = correlations(ref, ref)
    assert same["pearson"] == pytest.approx(100) and same["footrule"] == 0


def test_ge_readings_on_a_hand_checked_example(tmp_path):
    # one example, three models; judge: alpha beats beta, beta vs gamma Same good, alpha vs gamma Same bad
    _write(tmp_path / "s.jsonl", [{"id": "e", "candidates": [{"model": m, "scores": {"bertscore": 0.5}}
                                                              for m in ("alpha", "beta", "gamma")]}])
    _write(tmp_path / "j.jsonl", [{"id": "e", "cmp_results": {"alpha,beta": "A is better", "beta,gamma": "Same good",
                                                              "gamma,alpha": "Same bad"}}])
    inputs = load_inputs(tmp_path / "s.jsonl", judge=tmp_path / "j.jsonl")
    st = settings_of({"evaluate": {"vicuna": "alpha", "oa": "beta"}})
    rows = {r["key"]: r["values"] for r in Evaluation(inputs, st, [], "paper").rows()}
    # scores: alpha +2, beta -2, gamma 0 -> ranks 1, 3, 2
    assert [rows[m]["gpt_rank"] for m in ("alpha", "beta", "gamma")] == [1, 3, 2]
    assert rows["alpha"]["ge_vic"] is None and rows["beta"]["ge_oa"] is None  # a model against itself: N/A
    assert rows["gamma"]["ge_vic"] == 0 and rows["gamma"]["ge_oa"] == 100  # by rank: 2 > 1, 2 <= 3
    issue6 = {r["key"]: r["values"] for r in Evaluation(inputs, st, [], "issue6").rows()}
    assert issue6["gamma"]["ge_vic"] == 0 and issue6["gamma"]["ge_oa"] == 50  # Same bad 0, Same good 0.5
    assert issue6["beta"]["ge_vic"] == 0
    h2h = {r["key"]: r["values"] for r in Evaluation(inputs, st, [], "head_to_head").rows()}
    assert h2h["gamma"]["ge_vic"] == 100 and h2h["beta"]["ge_vic"] == 0  # Same bad counts as a tie here
    assert rows["beta"]["top3"] == 100 and rows["alpha"]["bertscore"] == pytest.approx(50)


# the stage end to end ---------------------------------------------------------------------------
EXPECTED = ["tables/table2.csv", "tables/table2.md", "tables/table2.tex", "tables/table3.csv", "tables/table3.md",
            "tables/table3.tex", "tables/table2_vs_paper.md", "tables/table3_vs_paper.md",
            "tables/table2_readings.csv", "tables/table3_readings.csv", "tables/summary.json",
            "tables/pair_order.csv", "tables/pair_order.md",
            "metrics/headline.json", "plots/first_place.csv", "plots/gpt_rank_distribution.csv", "plots/tradeoff.csv"] + [
    f"figures/{f}.{e}" for f in ("figure1", "gpt_rank_distribution", "correlation_heatmap", "tradeoff")
    for e in ("png", "svg")]


def test_evaluate_writes_every_output_with_the_contract_columns(tmp_path):
    out, summary, _ = run_eval(tmp_path)
    for rel in EXPECTED:
        assert (out / rel).stat().st_size > 0, rel
    with open(out / "tables/table2.csv", encoding="utf-8") as f:
        assert f.readline().strip() == \
            "category,method,bertscore,bartscore,bleurt,gpt_rank,ge_vic,ge_oa,top3,pick_len_words"
    with open(out / "tables/table3.csv", encoding="utf-8") as f:
        assert f.readline().strip() == "method,pearson,spearman,footrule"
    t2 = {r["method"]: r for r in read_csv(out / "tables/table2.csv")}
    assert [r["category"] for r in read_csv(out / "tables/table2.csv")] == \
        ["LLMs"] * 4 + ["Analysis"] * 2 + ["Rankers"] * 3 + ["LLM-Blender"]
    # BLEURT is not computed here: every cell empty, never zero
    assert all(r["bleurt"] == "" for r in t2.values())
    assert t2["Oracle (GPT-Rank)"]["gpt_rank"] == "1.0"
    assert float(t2["Oracle (GPT-Rank)"]["ge_vic"]) == 100 and float(t2["Oracle (GPT-Rank)"]["top3"]) == 100
    assert t2["alpha"]["ge_vic"] == "" and t2["beta"]["ge_oa"] == ""
    # the latent quality order shows through: the best model beats the worst, PairRanker beats Random
    assert float(t2["alpha"]["gpt_rank"]) < float(t2["delta"]["gpt_rank"])
    assert float(t2["PairRanker"]["gpt_rank"]) < float(t2["Random"]["gpt_rank"])
    assert float(t2["PR (K=3) + GF"]["bertscore"]) == pytest.approx(70)
    assert t2["alpha"]["pick_len_words"] == "3.0" and t2["PR (K=3) + GF"]["pick_len_words"] == "1.0"
    t3 = {r["method"]: r for r in read_csv(out / "tables/table3.csv")}
    assert list(t3) == ["Random", "BLEU", "Rouge2", "BERTScore", "BLEURT", "BARTScore", "PairRanker",
                        "PairRanker (Bubble)"]
    assert t3["BLEURT"]["pearson"] == "" and t3["BLEURT"]["footrule"] == ""
    assert float(t3["PairRanker"]["spearman"]) > float(t3["Random"]["spearman"])
    assert float(t3["PairRanker"]["footrule"]) < float(t3["Random"]["footrule"])
    # counts of what was missing: one unlabelled example, one unparsable label
    assert summary["counts"]["judge.examples_unlabelled"] == 1
    assert summary["counts"]["judge.unparsable"] == 1
    assert summary["rows_gpt_examples"]["alpha"] == 39
    head = json.loads((out / "metrics/headline.json").read_text())
    assert head["n_judged"] == 39 and "bleurt" not in head["table2"]["alpha"]
    assert head["table2"]["pairranker"]["gpt_rank_lo"] <= head["table2"]["pairranker"]["gpt_rank"] \
        <= head["table2"]["pairranker"]["gpt_rank_hi"]
    trade = read_csv(out / "plots/tradeoff.csv")
    assert [(r["method"], r["n_forward"]) for r in trade] == [("pairranker", "12.0"), ("pairranker-bubble", "6.0")]
    # no full comparison matrices given: no best-of-N curve
    assert summary["select_curve"] is None and not (out / "plots/select_curve.csv").exists()
    assert not (out / "figures/select_curve.png").exists()
    assert "Not comparable" in (out / "tables/table2_vs_paper.md").read_text()
    shares = read_csv(out / "plots/first_place.csv")
    assert sum(float(r["share"]) for r in shares) == pytest.approx(100)


def curve_matrices(paths, path, drop=0):
    """Full comparison matrices (what rule rank_test_full keeps) consistent with the fixture's pairranker
    ranks: M_ij = r_j - r_i + 0.2, so MaxLogits picks what the pairranker ranking picks. `drop`: leave
    the last examples out."""
    from llmblend.ranker import infer

    recs = [json.loads(x) for x in paths["rankings"]["pairranker"].read_text().splitlines()]
    recs = recs[: len(recs) - drop]
    mats = []
    for rec in recs:
        r = np.asarray(rec["ranks"], dtype=float)
        m = r[None, :] - r[:, None] + 0.2
        np.fill_diagonal(m, 0.0)
        mats.append(m)
    infer.write_matrices(path, [rec["id"] for rec in recs], mats)
    return path


CURVE_COLUMNS = "schedule,opponents,refine_top,z,label,prompts,passes_per_prompt,passes_pct,agreement_pct,gpt_rank,judged"


def test_select_curve_replays_the_schedules_on_the_full_matrices(tmp_path):
    out, summary, paths = run_eval(tmp_path / "a", matrices=curve_matrices(make_artifacts(tmp_path / "m"),
                                                                           tmp_path / "m.npz"))
    with open(out / "plots/select_curve.csv", encoding="utf-8") as f:
        assert f.readline().strip() == CURVE_COLUMNS
    rows = {r["label"]: r for r in read_csv(out / "plots/select_curve.csv")}
    assert list(rows) == ["full", "knockout"] + [f"o{o} k{k}" for o in (1, 2, 3) for k in (2, 3, 4, 5)] + [
        f"race z{z}" for z in ("1", "1.5", "2", "2.5", "3")]
    full, knock = rows["full"], rows["knockout"]
    assert (full["schedule"], full["opponents"], full["refine_top"]) == ("full", "", "")
    assert (rows["o2 k3"]["opponents"], rows["o2 k3"]["refine_top"]) == ("2", "3")  # integers, not 2.0
    assert (rows["race z1.5"]["schedule"], rows["race z1.5"]["z"], rows["o2 k3"]["z"]) == ("race", "1.5", "")
    assert [float(full[c]) for c in ("passes_per_prompt", "passes_pct", "agreement_pct")] == [12.0, 100.0, 100.0]
    assert float(knock["passes_per_prompt"]) == 6.0 and float(knock["passes_pct"]) == 50.0  # 2(N-1) of N(N-1)
    assert float(rows["o1 k5"]["passes_per_prompt"]) == 12.0  # refine_top >= N: the full matrix
    # consistent matrices: every schedule finds MaxLogits' pick; GPT-Rank over the judged examples, by
    # Table 2's rule, so the full row's is the PairRanker row's (its ranks give the same picks)
    assert all(float(r["agreement_pct"]) == 100.0 and r["prompts"] == "40" and r["judged"] == "39"
               for r in rows.values())
    t2 = {r["method"]: r for r in read_csv(out / "tables/table2.csv")}
    assert float(full["gpt_rank"]) == pytest.approx(float(t2["PairRanker"]["gpt_rank"]), abs=1e-4)
    assert all(float(r["gpt_rank"]) == pytest.approx(float(full["gpt_rank"]), abs=1e-4) for r in rows.values())
    for ext in ("png", "svg"):
        assert (out / f"figures/select_curve.{ext}").stat().st_size > 0
    assert summary["select_curve"] == {"seed": 7, "prompts": 40, "cells": 19}
    # byte-reproducible, like every figure
    out2, _, _ = run_eval(tmp_path / "b", matrices=tmp_path / "m.npz")
    for rel in ("plots/select_curve.csv", "figures/select_curve.png", "figures/select_curve.svg"):
        assert (out / rel).read_bytes() == (out2 / rel).read_bytes(), rel
    # an example without a matrix is counted; a matrix of another split is an error, before any output
    _, summary, _ = run_eval(tmp_path / "c", matrices=curve_matrices(paths, tmp_path / "short.npz", drop=2))
    assert summary["counts"]["select_curve.examples_missing"] == 2
    assert read_csv(tmp_path / "c/results/plots/select_curve.csv")[0]["prompts"] == "38"
    from llmblend.ranker import infer

    infer.write_matrices(tmp_path / "bad.npz", ["other/1"], [np.zeros((4, 4))])
    with pytest.raises(InputError, match="bad.npz: field 'ids': 'other/1' is not in the scored test split"):
        run_eval(tmp_path / "d", matrices=tmp_path / "bad.npz")
    assert not (tmp_path / "d/results").exists()


def test_the_other_readings_are_reported_beside(tmp_path):
    cfg = {**CFG, "evaluate": {**CFG["evaluate"], "gpt_rank_alt_exclude": ["delta"]}}
    out, _, _ = run_eval(tmp_path, cfg)
    readings = read_csv(out / "tables/table2_readings.csv")
    labels = sorted({r["reading"] for r in readings})
    assert labels == ["pool=all candidates; ge=head_to_head", "pool=all candidates; ge=issue6",
                      "pool=all candidates; ge=paper (configured)", "pool=without delta; ge=paper"]
    by = {(r["reading"], r["method"]): r for r in readings}
    # with delta (the weakest) left out, every rank can only improve
    assert float(by["pool=without delta; ge=paper", "alpha"]["gpt_rank"]) <= \
        float(by["pool=all candidates; ge=paper (configured)", "alpha"]["gpt_rank"])
    assert by["pool=without delta; ge=paper", "delta"]["gpt_rank"] == ""
    t3r = {r["reading"] for r in read_csv(out / "tables/table3_readings.csv")}
    assert "pool=all candidates; correlation=per_example" in t3r


def test_evaluate_is_byte_deterministic(tmp_path):
    out1, _, _ = run_eval(tmp_path / "a")
    out2, _, _ = run_eval(tmp_path / "b")
    for rel in EXPECTED:
        if rel.endswith("summary.json"):
            continue  # names the input paths, which differ here
        assert (out1 / rel).read_bytes() == (out2 / rel).read_bytes(), rel


def test_vs_paper_when_the_profile_declares_it_comparable(tmp_path):
    cfg = {**CFG, "evaluate": {**CFG["evaluate"], "models": {"alpha": "Vicuna", "beta": "Open Assistant",
                                                             "gamma": "Alpaca", "delta": "Flan-T5"},
                               "paper": {"compare": True}}}
    out, _, _ = run_eval(tmp_path, cfg)
    text = (out / "tables/table2_vs_paper.md").read_text()
    assert "| Vicuna | Vicuna | gpt_rank | 4.13 |" in text
    assert "PairRanker (Bubble)" in text  # a row of ours without a paper row is named
    assert "| PairRanker | PairRanker | pearson | 46.98 |" in (out / "tables/table3_vs_paper.md").read_text()
    cfg["evaluate"]["ge_reading"] = "issue6"
    out, _, _ = run_eval(tmp_path / "b", cfg)
    assert "Not comparable: evaluate.ge_reading" in (out / "tables/table2_vs_paper.md").read_text()


def test_without_fused_answers_there_is_no_blender_row(tmp_path):
    out, _, _ = run_eval(tmp_path, fused=None, fused_judge=None)
    assert "LLM-Blender" not in {r["category"] for r in read_csv(out / "tables/table2.csv")}


# bad input --------------------------------------------------------------------------------------
def test_a_bad_judge_label_names_file_line_and_field_and_writes_nothing(tmp_path):
    paths = make_artifacts(tmp_path / "in")
    lines = paths["judge"].read_text().splitlines()
    rec = json.loads(lines[6])
    rec["cmp_results"][next(iter(rec["cmp_results"]))] = "maybe"
    lines[6] = json.dumps(rec)
    paths["judge"].write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"judge.jsonl:7: field 'cmp_results': label 'maybe'"):
        evaluate(CFG, paths["scored"], tmp_path / "out", judge=paths["judge"], rankings=paths["rankings"])
    assert not (tmp_path / "out").exists()


def test_a_missing_metrics_report_fails_before_any_table_is_written(tmp_path):
    paths = make_artifacts(tmp_path / "in")
    with pytest.raises(InputError, match=r"candidate_scores.json: file not found"):
        evaluate(CFG, paths["scored"], tmp_path / "out", judge=paths["judge"], rankings=paths["rankings"],
                 metrics_report=tmp_path / "candidate_scores.json")
    assert not (tmp_path / "out").exists()


def test_a_short_ranking_and_mismatched_candidates_are_errors(tmp_path):
    paths = make_artifacts(tmp_path / "in")
    p = paths["rankings"]["pairranker"]
    lines = p.read_text().splitlines()
    rec = json.loads(lines[2])
    rec["ranks"] = rec["ranks"][:3]
    lines[2] = json.dumps(rec)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"test.jsonl:3: field 'ranks': 3 ranks for 4 candidates"):
        load_inputs(paths["scored"], rankings={"pairranker": p})
    lines = paths["scored"].read_text().splitlines()
    rec = json.loads(lines[1])
    rec["candidates"] = rec["candidates"][::-1]
    lines[1] = json.dumps(rec)
    paths["scored"].write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"scored.jsonl:2: field 'candidates': models"):
        load_inputs(paths["scored"])


def test_cli_runs_the_stage_and_exits_2_on_bad_input(tmp_path, capsys):
    paths = make_artifacts(tmp_path / "in")
    cfg = tmp_path / "p.yaml"
    cfg.write_text("run: syn\nevaluate: {vicuna: alpha, oa: beta, bootstrap: {samples: 50}}\n")
    args = ["evaluate", "--config", str(PARAMS), "--config", str(cfg), "--scored", str(paths["scored"]), "--judge", str(paths["judge"]),
            "--out-dir", str(tmp_path / "out")]
    args += [f"--ranking={m}={p}" for m, p in paths["rankings"].items()]
    assert main(args) == 0
    assert (tmp_path / "out/tables/table2.csv").exists()
    bad = args[:5] + ["--scored", str(tmp_path / "nope.jsonl")] + args[7:]
    assert main(bad) == 2
    assert "nope.jsonl: file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--scored"])
    assert main(args + ["--ranking", "x"]) == 2


def test_bootstrap_ci_brackets_the_estimate_and_tightens_with_more_examples(tmp_path):
    _, s_small, _ = run_eval(tmp_path / "a")
    out, _, _ = run_eval(tmp_path / "b")
    head = json.loads((out / "metrics/headline.json").read_text())["table2"]["alpha"]
    assert head["gpt_rank_lo"] <= head["gpt_rank"] <= head["gpt_rank_hi"]
    paths = make_artifacts(tmp_path / "big", n=160)
    evaluate(CFG, paths["scored"], tmp_path / "big_out", judge=paths["judge"])
    big = json.loads((tmp_path / "big_out/metrics/headline.json").read_text())["table2"]["alpha"]
    assert big["gpt_rank_hi"] - big["gpt_rank_lo"] < head["gpt_rank_hi"] - head["gpt_rank_lo"]
    assert not math.isnan(big["gpt_rank"])


def _two_examples_three_models(tmp_path) -> dict:
    """2 examples x 3 models, hand-checkable. Words: e1 alpha 3, beta 1, gamma 5; e2 alpha 1, beta 4,
    gamma 0 (empty). The judge on both: alpha beats beta and gamma, beta and gamma tie ("Same good",
    no order). Three rankings, the same on every call; returns evaluate's keyword arguments."""
    texts = {"e1": ["a b c", "one", "w x  y\tz q"], "e2": ["a", "b c d e", ""]}
    _write(tmp_path / "s.jsonl", [{"id": i, "candidates": [{"model": m, "text": t, "scores": {"bleu": 1.0}}
                                                           for m, t in zip(("alpha", "beta", "gamma"), ts)]}
                                  for i, ts in texts.items()])
    _write(tmp_path / "j.jsonl", [{"id": i, "cmp_results": {"alpha,beta": "A is better", "beta,gamma": "Same good",
                                                            "gamma,alpha": "B is better"}} for i in texts])
    ranks = {"pairranker": [[2, 1, 3], [3, 2, 1]],
             "longest": [[2, 3, 1], [2, 1, 3]],
             "simcls": [[1, 1, 3], [2, 1, 1]]}
    rankings = {}
    for m, rs in ranks.items():
        rankings[m] = tmp_path / m / "test.jsonl"
        _write(rankings[m], [{"id": i, "ranks": r, "n_forward": 0} for i, r in zip(texts, rs)])
    return {"scored": tmp_path / "s.jsonl", "judge": tmp_path / "j.jsonl", "rankings": rankings}


SMALL_CFG = {"run": "t", "seed": 1, "evaluate": {"vicuna": "alpha", "oa": "beta", "bootstrap": {"samples": 20}}}


def test_pick_length_column_is_the_mean_words_of_each_rows_picks(tmp_path):
    """Mean words over all candidates would be 14/6; each row must average its own picks instead:
    PairRanker picks beta (1 word), gamma (0): 0.5; Longest gamma (5), beta (4): 4.5; SimCLS's ties go
    to the earlier: alpha (3), beta (4): 3.5."""
    inputs = _two_examples_three_models(tmp_path)
    _write(tmp_path / "f.jsonl", [{"id": "e1", "candidates": [{"model": "llm-blender", "text": "f g", "scores": {}}]},
                                  {"id": "e2", "candidates": [{"model": "llm-blender", "text": "h i j k l m",
                                                               "scores": {}}]}])
    evaluate(SMALL_CFG, out_dir=tmp_path / "out", fused=tmp_path / "f.jsonl", **inputs)
    t2 = {r["method"]: float(r["pick_len_words"]) for r in read_csv(tmp_path / "out/tables/table2.csv")}
    assert t2 == {"alpha": 2.0, "beta": 2.5, "gamma": 2.5, "PairRanker": 0.5, "Longest": 4.5, "SimCLS": 3.5,
                  "PR (K=3) + GF": 4.0}
    md = (tmp_path / "out/tables/table2.md").read_text()
    assert "| top3 | pick_len_words | gpt_rank 95% CI |" in md and "| Longest |" in md and "| 4.50 |" in md
    tex = (tmp_path / "out/tables/table2.tex").read_text()
    assert "{llrrrrrrrr}" in tex and "pick\\_len\\_words" in tex and "4.50" in tex
    head = json.loads((tmp_path / "out/metrics/headline.json").read_text())["table2"]
    assert head["longest"]["pick_len_words"] == 4.5 and head["llm-blender"]["pick_len_words"] == 4.0


def test_pair_order_reads_each_ranking_on_the_judges_pairs_split_by_the_better_answers_length(tmp_path):
    """The four ordered pairs: e1 alpha>beta and e2 alpha>gamma (the better answer is the longer), e1
    alpha>gamma and e2 alpha>beta (it is the shorter). Longest is right on both longer-better pairs and
    wrong on both others; PairRanker right only on e1 alpha>gamma; SimCLS half on e1 alpha=beta, right
    on e1 alpha>gamma, wrong on both of e2."""
    evaluate(SMALL_CFG, out_dir=tmp_path / "out", **_two_examples_three_models(tmp_path))
    rows = {r["method"]: r for r in read_csv(tmp_path / "out/tables/pair_order.csv")}
    got = {m: (float(r["pairs"]), float(r["right"]), float(r["longer_better_pairs"]), float(r["longer_better_right"]),
               float(r["shorter_better_pairs"]), float(r["shorter_better_right"])) for m, r in rows.items()}
    assert got == {"Longest": (4, 50, 2, 100, 2, 0), "PairRanker": (4, 25, 2, 0, 2, 50),
                   "SimCLS": (4, 37.5, 2, 25, 2, 50)}
    lo, hi = float(rows["SimCLS"]["right_lo"]), float(rows["SimCLS"]["right_hi"])
    assert 0 <= lo <= 37.5 <= hi <= 75  # resampling the two examples: e1 alone 75, e2 alone 0
    md = (tmp_path / "out/tables/pair_order.md").read_text()
    assert "| Longest | 4 | 50.0 [" in md and "| 2 | 0.0 [0.0, 0.0] |" in md
    head = json.loads((tmp_path / "out/metrics/headline.json").read_text())["pair_order"]
    assert head["pairranker"]["shorter_better_right"] == 50 and head["longest"]["longer_better_right"] == 100


def test_ordered_pairs_count_only_the_pools_ranked_pairs_that_the_judge_orders():
    o = np.zeros((1, 3, 3), dtype=np.int8)
    o[0, 0, 1], o[0, 1, 0] = J.WIN, J.LOSS          # 0 beat 1
    o[0, 2, 0], o[0, 0, 2] = J.WIN, J.LOSS          # 2 beat 0
    o[0, 1, 2] = o[0, 2, 1] = J.SAME_GOOD           # no order
    ranks, words = np.array([[1.0, 2.0, 3.0]]), np.array([[5.0, 10.0, 20.0]])
    every = J.ordered_pairs(o, ranks, np.ones(3, bool), words)
    assert {k: (float(r[0]), float(n[0])) for k, (r, n) in every.items()} == \
        {"all": (1.0, 2.0), "longer": (0.0, 1.0), "shorter": (1.0, 1.0)}
    # a candidate outside the pool, or unranked, takes its pairs with it
    assert float(J.ordered_pairs(o, ranks, np.array([True, True, False]))["all"][1][0]) == 1.0
    assert float(J.ordered_pairs(o, np.array([[1.0, np.nan, 3.0]]), np.ones(3, bool))["all"][1][0]) == 1.0
