"""Blended answers beside the GenFuser's (llmblend.fuser.kinds): verified fusion, the LLM aggregator
(against the loopback OpenAI-compatible server and a tiny local model), the AlpacaEval judge of new
answers against the reference, and their Table 2 rows."""

from __future__ import annotations

import json
import re

import pytest

import llmblend
from llmblend.errors import ConfigError, InputError, LLMBlendError
from llmblend.io import read_jsonl, write_jsonl

from test_analysis import CFG as EVAL_CFG
from test_analysis import MODELS as EVAL_MODELS
from test_analysis import make_artifacts, read_csv
from test_blender import INPUTS, saved_pairranker  # noqa: F401  (fixture)
from test_ranker import tiny_backbone, tiny_cfg  # noqa: F401  (fixture)

KEY = "sk-agg-SECRET-42"


# --- verified fusion ----------------------------------------------------------------------------------

@pytest.fixture
def longer_wins(monkeypatch):
    """A stand-in PairRanker that prefers the longer answer (logit = len(i) - len(j) per ordered pair),
    so which answer verification keeps is known in advance."""
    from llmblend.ranker import infer

    def pair_logits(model, tokenizer, sources, candidates, pairs, **kw):
        return [[float(len(c[i]) - len(c[j])) for i, j in p] for c, p in zip(candidates, pairs)]

    monkeypatch.setattr(infer, "pair_logits", pair_logits)


def test_verify_keeps_the_fused_answer_only_where_the_ranker_prefers_it(saved_pairranker, longer_wins):  # noqa: F811
    b = llmblend.Blender(ranker=saved_pairranker)
    fused, top1 = ["a longer fused answer", "short", "same"], ["top-1", "a longer top-1 answer", "same"]
    res = b.verify_fused(INPUTS + ["x"], fused, top1, ["", "", ""])
    # both orders: logit(fused first) - logit(top-1 first) = 2 x the length difference
    assert res["logits"] == [2.0 * (len(f) - len(t)) for f, t in zip(fused, top1)]
    assert res["kept_fused"] == [True, False, False]  # a tie keeps the top-1
    assert res["texts"] == ["a longer fused answer", "a longer top-1 answer", "same"]

    class Fuser:  # stands in for llmblend.fuser.api's Fuser
        def fuse(self, instructions, inputs, topk, **kw):
            return ["a much longer fused answer than any candidate", "no"]

    b.fuser = Fuser()
    cands = [["blue", "the green tree house"], ["yes", "the cat sat on a mat"]]
    assert b.rank_and_fuse(INPUTS, cands, verify=True) == ["a much longer fused answer than any candidate",
                                                           "the cat sat on a mat"]
    assert b.rank_and_fuse(INPUTS, cands) == ["a much longer fused answer than any candidate", "no"]


def _fused_files(tmp_path, texts, tops):
    """A test split and the GenFuser's output over it: record i's top-1 (fused_from[0]) is tops[i]."""
    split, fused = [], []
    for i, (text, top) in enumerate(zip(texts, tops)):
        cands = [{"model": m, "text": f"{m} answer {i}" + " padded" * (3 if m == "m1" else 0),
                  "scores": {"bleu": 10.0 * i + k}} for k, m in enumerate(("m0", "m1", "m2"))]
        split.append({"id": f"e{i}", "instruction": f"question {i}", "input": "", "output": "ref", "source": "t",
                      "candidates": cands})
        fused.append({"id": f"e{i}", "instruction": f"question {i}", "input": "", "output": "ref", "source": "t",
                      "candidates": [{"model": "llm-blender", "text": text, "fused_from": [top, "m2"],
                                      "scores": {"bleu": 100.0 + i}}]})
    write_jsonl(tmp_path / "split.jsonl", split)
    write_jsonl(tmp_path / "fused.jsonl", fused)
    for name, n in (("split", 3 * len(texts)), ("fused", len(texts))):  # as gather_scores/score_fused report
        (tmp_path / f"{name}.report.json").write_text(json.dumps({"counts": {"computed.bleu": n}}))
    return tmp_path / "fused.jsonl", tmp_path / "split.jsonl"


def test_verify_stage_writes_one_answer_per_record_and_counts_what_it_kept(tmp_path, saved_pairranker,  # noqa: F811
                                                                         longer_wins):
    from llmblend.fuser.verify import verify_split

    texts = ["a fused answer that is long enough", "tiny", "another long fused answer here"]
    fused, split = _fused_files(tmp_path, texts, ["m0", "m1", "m2"])
    rep = verify_split(tiny_cfg(), fused, split, saved_pairranker, tmp_path / "v.jsonl", tmp_path / "v.json")
    rows = read_jsonl(tmp_path / "v.jsonl")
    c = [r["candidates"][0] for r in rows]
    assert [x["model"] for x in c] == ["llm-blender-verified"] * 3
    assert [x["kept"] for x in c] == ["fused", "top1", "fused"]
    # the top-1 kept is the candidate the fused answer names first, not any other
    assert c[1]["text"] == "m1 answer 1 padded padded padded" and c[1]["top1_model"] == "m1"
    assert [x["text"] for x in c[::2]] == texts[::2]
    # each kept answer carries the scores of the text it is (the metrics stage keeps them, not rescoring)
    assert [x["scores"] for x in c] == [{"bleu": 100.0}, {"bleu": 11.0}, {"bleu": 102.0}]
    # scores kept from imported data (other metric models): none carried, every answer scored afresh
    (tmp_path / "split.report.json").write_text(json.dumps({"counts": {"computed.bleu": 3, "kept_existing.bleu": 6}}))
    verify_split(tiny_cfg(), fused, split, saved_pairranker, tmp_path / "v2.jsonl")
    assert all("scores" not in r["candidates"][0] for r in read_jsonl(tmp_path / "v2.jsonl"))
    assert rep == json.loads((tmp_path / "v.json").read_text())
    assert (rep["fused_kept"], rep["top1_kept"], rep["fused_kept_pct"], rep["forward_passes"]) == (2, 1, 66.67, 6)
    assert set(rows[0]) == {"id", "instruction", "input", "output", "source", "candidates"}


def test_verify_stage_with_the_real_tiny_ranker_and_bad_input(tmp_path, saved_pairranker):  # noqa: F811
    from llmblend.fuser.verify import verify_split

    fused, split = _fused_files(tmp_path, ["fused one", "fused two"], ["m0", "m2"])
    verify_split(tiny_cfg(), fused, split, saved_pairranker, tmp_path / "v.jsonl")
    b = llmblend.Blender(ranker=saved_pairranker)
    logits = b.compare(["", ""], ["fused one", "fused two"], ["m0 answer 0", "m2 answer 1"],
                       ["question 0", "question 1"], return_logits=True)
    got = [r["candidates"][0] for r in read_jsonl(tmp_path / "v.jsonl")]
    assert [g["kept"] == "fused" for g in got] == [x > 0 for x in logits]
    assert [g["verify_logit"] for g in got] == pytest.approx(logits, abs=1e-5)
    # a fused file without `fused_from`, or naming a model the record lacks: file, line and field named
    rows = read_jsonl(fused)
    del rows[1]["candidates"][0]["fused_from"]
    write_jsonl(fused, rows)
    with pytest.raises(InputError, match=r"fused\.jsonl:2.*fused_from"):
        verify_split(tiny_cfg(), fused, split, saved_pairranker, tmp_path / "bad.jsonl")
    rows[1]["candidates"][0]["fused_from"] = ["m9"]
    write_jsonl(fused, rows)
    with pytest.raises(InputError, match=r"split\.jsonl:2.*'m9'"):
        verify_split(tiny_cfg(), fused, split, saved_pairranker, tmp_path / "bad.jsonl")
    assert not (tmp_path / "bad.jsonl").exists()


# --- the LLM aggregator --------------------------------------------------------------------------------

def _agg_records(n=4):
    """Records whose candidates are ranked by the rankings file: m2 best, then m0, then m1, then m3."""
    rows = [{"id": f"a{i}", "instruction": f"Explain thing {i}.", "input": "in" if i == 0 else "", "output": "ref",
             "source": "t", "candidates": [{"model": m, "text": f"{m} on thing {i}" + (" word" * 30 if m == "m0" else "")}
                                           for m in ("m0", "m1", "m2", "m3")]} for i in range(n)]
    ranks = [{"id": r["id"], "ranks": [2, 3, 1, 4], "scores": [0, 0, 0, 0], "n_forward": 12} for r in rows]
    return rows, ranks


def agg_cfg(base_url, **over):
    gen = {"name": "agg-api", "backend": "openai", "decoding": {"method": "greedy", "max_new_tokens": 20},
           "openai": {"base_url": base_url, "model": "served-agg", "api_key_env": "LLMBLEND_AGG_KEY",
                      "concurrency": 2, "max_retries": 3, "timeout": 5.0, "backoff_s": 0.01, "max_backoff_s": 0.05}}
    agg = {"top_k": 3, "candidate_max_words": 10, "generator": gen, **over}
    return {"run": "t", "seed": 5, "generate": {"shards": 1, "splits": ["test"], "generators": []},
            "fuser": {"ranker": "pairranker", "aggregator": agg}}


@pytest.fixture
def agg(tmp_path, fake_openai, monkeypatch):
    monkeypatch.setenv("LLMBLEND_AGG_KEY", KEY)
    fake_openai.reply_fn = lambda req: "synthesis of " + re.search(r"Instruction:\n(.*)", req["messages"][-1]["content"]).group(1)
    rows, ranks = _agg_records()
    write_jsonl(tmp_path / "split.jsonl", rows)
    write_jsonl(tmp_path / "ranks.jsonl", ranks)

    def run(cfg, out="agg.jsonl", **kw):
        from llmblend.fuser.aggregate import aggregate_split

        return aggregate_split(cfg, tmp_path / "split.jsonl", tmp_path / out, tmp_path / "cache.sqlite",
                               tmp_path / "ranks.jsonl", report_path=tmp_path / "agg.report.json", **kw)

    return run, fake_openai, tmp_path


def test_aggregator_prompt_output_and_a_rerun_that_makes_no_call(agg):
    from llmblend.fuser.aggregate import HEADER, PROMPT_VERSION

    run, fake, tmp = agg
    rep = run(agg_cfg(fake.base_url))
    assert fake.count() == 4 and rep["asked"] == 4 and rep["cached"] == 0
    body = next(r.body for r in fake.requests if "thing 0" in r.body["messages"][-1]["content"])
    assert body["model"] == "served-agg" and body["max_tokens"] == 20 and body["temperature"] == 0.0
    text = body["messages"][-1]["content"]
    assert text.startswith(HEADER) and "Instruction:\nExplain thing 0.\n\nInput:\nin" in text
    # the top K of the ranking, best first, each cut to candidate_max_words with "..."
    assert text.index("Answer 1:\nm2 on thing 0") < text.index("Answer 2:\nm0 on thing 0") \
        < text.index("Answer 3:\nm1 on thing 0")
    assert "Answer 2:\nm0 on thing 0 word word word word word word...\n" in text  # 10 words kept
    assert "m3 on thing" not in text and "Answer 4" not in text
    rows = read_jsonl(tmp / "agg.jsonl")
    c = rows[1]["candidates"][0]
    assert c["text"] == "synthesis of Explain thing 1." and c["model"] == "llm-aggregator"
    assert c["aggregated_from"] == ["m2", "m0", "m1"] and c["prompt_version"] == PROMPT_VERSION
    assert json.loads((tmp / "agg.report.json").read_text())["candidates_cut"] == 4
    # a rerun asks nothing and writes the same bytes; the key is in no artifact
    first = (tmp / "agg.jsonl").read_bytes()
    rep = run(agg_cfg(fake.base_url))
    assert fake.count() == 4 and rep["asked"] == 0 and rep["cached"] == 4
    assert (tmp / "agg.jsonl").read_bytes() == first
    assert KEY not in first.decode() + (tmp / "agg.report.json").read_text()
    # a changed setting (K) is a new prompt: asked again
    run(agg_cfg(fake.base_url, top_k=2), out="agg2.jsonl")
    assert fake.count() == 8


def test_aggregator_retries_the_endpoints_faults(agg):
    run, fake, tmp = agg
    fake.queue_fault("429", times=2, retry_after=0.01)
    fake.queue_fault("500")
    run(agg_cfg(fake.base_url))
    assert fake.count() == 4 + 3 and fake.pending_faults() == 0
    assert all(r["candidates"][0]["text"].startswith("synthesis") for r in read_jsonl(tmp / "agg.jsonl"))


def test_aggregator_cost_cap_refuses_then_stops_and_keeps_what_was_paid(agg, capsys):
    from llmblend.fuser.aggregate import BudgetExhausted

    run, fake, tmp = agg
    priced = dict(prompt_usd_per_1m=1000.0, completion_usd_per_1m=1000.0)  # 0.001 USD a token
    with pytest.raises(LLMBlendError, match="estimate is above the cap"):
        run(agg_cfg(fake.base_url, max_usd=0.01, **priced))
    assert fake.count() == 0 and not (tmp / "agg.jsonl").exists()
    assert "aggregator cost estimate: 4 calls" in capsys.readouterr().out
    # past the estimate: the first 2 calls (concurrency 2) spend over the cap, the run stops there
    with pytest.raises(BudgetExhausted, match="2 answers are missing"):
        run(agg_cfg(fake.base_url, max_usd=0.01, **priced), allow_over_budget=True)
    assert fake.count() == 2 and not (tmp / "agg.jsonl").exists()
    rep = run(agg_cfg(fake.base_url, max_usd=10.0, **priced))
    assert fake.count() == 4 and rep["cached"] == 2 and rep["asked"] == 2


def test_aggregator_without_the_key_names_the_variable_and_asks_nothing(agg, monkeypatch):
    run, fake, tmp = agg
    monkeypatch.delenv("LLMBLEND_AGG_KEY")
    with pytest.raises(ConfigError, match="LLMBLEND_AGG_KEY"):
        run(agg_cfg(fake.base_url))
    assert fake.count() == 0


def test_aggregator_on_a_local_model_answers_from_the_cache_on_a_rerun(tmp_path, monkeypatch):
    from test_fuser import make_model_dir

    from llmblend.fuser import aggregate
    from llmblend.generate import shards

    model = make_model_dir(tmp_path, "causal_lm")
    rows, ranks = _agg_records(3)
    write_jsonl(tmp_path / "split.jsonl", rows)
    write_jsonl(tmp_path / "ranks.jsonl", ranks)
    gen = {"name": "agg-local", "backend": "hf", "model": "tiny", "prompt": "chat",
           "decoding": {"method": "greedy", "max_new_tokens": 6}, "hf": {"batch_size": 2}}
    cfg = {"run": "t", "seed": 5, "models": {"tiny": {"spec": f"dir:{model}", "kind": "causal_lm"}},
           "fuser": {"ranker": "pairranker", "aggregator": {"generator": gen}}}
    args = (tmp_path / "split.jsonl", tmp_path / "out.jsonl", tmp_path / "c.sqlite", tmp_path / "ranks.jsonl")
    rep = aggregate.aggregate_split(cfg, *args)
    assert rep["asked"] == 3 and rep["backend"] == "hf"
    first = (tmp_path / "out.jsonl").read_bytes()
    assert all(r["candidates"][0]["n_tokens"] > 0 for r in read_jsonl(tmp_path / "out.jsonl"))

    def no_model(*a, **kw):
        raise AssertionError("the rerun loaded the model")

    monkeypatch.setattr(shards, "make_backend", no_model)
    rep = aggregate.aggregate_split(cfg, *args)
    assert rep["asked"] == 0 and (tmp_path / "out.jsonl").read_bytes() == first


# --- judging blended answers on AlpacaEval: against the reference -------------------------------------

COMMIT = "c0ffee"
PREFS = {"m1": [2, 1, 1.5], "m2": [1, 1, 2]}  # each model's released GPT-4 verdict against the reference


def _alpaca(tmp_path):
    mirror = tmp_path / "mirror"
    for m, prefs in PREFS.items():
        p = mirror / "alpaca_eval" / COMMIT / "results" / m / "alpaca_eval_gpt4" / "annotations.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps([{"instruction": f"q{i}", "dataset": "koala", "output_1": f"ref {i}",
                                  "output_2": f"{m} says {i}", "preference": v} for i, v in enumerate(prefs)]))
    recs = [{"id": f"x{i}", "instruction": f"q{i}", "input": "", "output": f"ref {i}",
             "candidates": [{"model": m, "text": f"{m} says {i}"} for m in PREFS]} for i in range(3)]
    write_jsonl(tmp_path / "c.jsonl", recs)
    # the blended answers: better than the reference on x0, worse on x1, tied on x2
    write_jsonl(tmp_path / "v.jsonl", [{"id": f"x{i}", "candidates": [{"model": "llm-blender-verified", "text": t}]}
                                       for i, t in enumerate(["GOOD", "BAD", "TIE"])])
    return {"run": "t", "seed": 3, "mirror": str(mirror),
            "data": {"sources": [{"type": "alpaca_eval", "name": "ae", "commit": COMMIT, "models": list(PREFS)}]}}


def verdict(req):
    """Judges blended answer vs reference by a tag in the blended text, whatever the shown order."""
    text = req["messages"][-1]["content"]
    a, b = re.search(r"Candidate A:\n(.*?)\n\nCandidate B:\n(.*?)\n\n", text, re.S).groups()
    blended_is_a = not a.startswith("ref ")
    tag = a if blended_is_a else b
    if tag == "TIE":
        return "Same good"
    return "A is better" if (tag == "GOOD") == blended_is_a else "B is better"


def test_alpaca_eval_blended_answers_are_judged_against_the_reference(tmp_path, fake_openai, monkeypatch):
    from llmblend.judge import gpt_rank
    from llmblend.judge.run import judge_fused

    base = _alpaca(tmp_path)
    fake_openai.reply_fn = verdict
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    cfg = {**base, "judge": {"backend": "replay", "fused_backend": "openai", "splits": ["test"], "max_usd": 1.0,
                             "openai": {"model": "cheap", "base_url": fake_openai.base_url, "backoff_s": 0.01},
                             "fused_openai": {"model": "strong"}}}
    out = tmp_path / "verified_test.jsonl"
    m = judge_fused(cfg, tmp_path / "v.jsonl", tmp_path / "c.jsonl", out, tmp_path / "m.json",
                    tmp_path / "cache.sqlite")
    # one call per example, to judge.fused_openai's model, with no reference answer shown
    assert fake_openai.count() == 3 and {r.body["model"] for r in fake_openai.requests} == {"strong"}
    text = fake_openai.requests[0].body["messages"][-1]["content"]
    assert "Reference answer" not in text and "ref " in text
    recs = [json.loads(x) for x in open(out)]
    assert [r["vs_reference"]["preference"] for r in recs] == [2.0, 1.0, 1.5]
    assert m["pairs"] == "fused-vs-reference" and m["backend"]["prompt_version"] == "pairwise-noref-v1"
    # labels against each candidate by the replay rule on the two verdicts (2 > 1.5 > 1; equal: Same)
    want = {("x0", "m1"): "same_good", ("x0", "m2"): "win", ("x1", "m1"): "same_bad", ("x1", "m2"): "same_bad",
            ("x2", "m1"): "same_good", ("x2", "m2"): "loss"}
    for r in recs:
        for mdl in PREFS:
            assert gpt_rank.outcome(r["cmp_results"], "llm-blender-verified", mdl) == want[(r["id"], mdl)]
    # a rerun is answered from the cache
    judge_fused(cfg, tmp_path / "v.jsonl", tmp_path / "c.jsonl", out, tmp_path / "m.json", tmp_path / "cache.sqlite")
    assert fake_openai.count() == 3


def test_without_a_key_blended_answers_stay_unjudged_and_the_table_says_why(tmp_path, fake_openai, monkeypatch):
    from llmblend.judge.run import judge_fused

    base = _alpaca(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = {**base, "judge": {"backend": "replay", "fused_backend": "openai", "splits": ["test"],
                             "openai": {"base_url": fake_openai.base_url}}}
    m = judge_fused(cfg, tmp_path / "v.jsonl", tmp_path / "c.jsonl", tmp_path / "j.jsonl", tmp_path / "m.json",
                    tmp_path / "cache.sqlite")
    assert fake_openai.count() == 0 and m["pairs_labelled"] == 0 and "OPENAI_API_KEY" in m["note"]
    recs = [json.loads(x) for x in open(tmp_path / "j.jsonl")]
    assert all(r["cmp_results"] == {} and "OPENAI_API_KEY" in r["note"] for r in recs)
    # the rule's command (llmblend judge-fused) finishes too and prints the note (it crashed on the
    # missing label counts in the 2026-12-01 alpaca_eval run)
    import argparse

    from llmblend.judge import cli as judge_cli

    monkeypatch.setattr(judge_cli, "config_of", lambda args: cfg)
    judge_cli.run_fused(argparse.Namespace(fused=tmp_path / "v.jsonl", candidates=tmp_path / "c.jsonl",
                                           out=tmp_path / "j3.jsonl", metrics=tmp_path / "m3.json",
                                           cache=tmp_path / "cache.sqlite", allow_over_budget=False))
    assert (tmp_path / "j3.jsonl").read_bytes() == (tmp_path / "j.jsonl").read_bytes()
    # the label cache is a declared output of the DVC stage: it exists though nothing was judged (dvc
    # repro failed on the missing file), and so it does after judge-pairs with an offline judge
    assert (tmp_path / "cache.sqlite").is_file()
    judge_cli.run_pairs(argparse.Namespace(candidates=tmp_path / "c.jsonl", out=tmp_path / "p.jsonl",
                                           metrics=tmp_path / "pm.json", cache=tmp_path / "pairs.sqlite",
                                           split="test", allow_over_budget=False))
    assert (tmp_path / "pairs.sqlite").is_file()
    # the profile's own judge needs the key: there a missing key is an error, as before
    cfg["judge"]["backend"] = "openai"
    with pytest.raises(LLMBlendError, match="OPENAI_API_KEY"):
        judge_fused(cfg, tmp_path / "v.jsonl", tmp_path / "c.jsonl", tmp_path / "j2.jsonl", tmp_path / "m2.json",
                    tmp_path / "cache.sqlite")


def test_the_cost_plan_prices_the_blended_answers_of_alpaca_eval():
    from llmblend.config import load_config
    from llmblend.fuser.kinds import enabled_kinds
    from llmblend.workflow import cost

    from workflow_utils import ROOT

    files = [str(ROOT / "params.yaml"), str(ROOT / "config" / "alpaca_eval.yaml")]
    cfg = load_config(files)
    j = cost.plan_profile(files).judge
    kinds = enabled_kinds(cfg)
    assert kinds == ["fused", "verified", "aggregated"]
    assert j["fused_calls"] == j["paid_calls"] == 3 * 200  # one call per answer: against the reference
    fo = cfg["judge"]["fused_openai"]
    r = cfg["resources"]["judge"]
    per_call = (r["prompt_tokens"] * fo["prompt_usd_per_1m"] + r["completion_tokens"] * fo["completion_usd_per_1m"]) / 1e6
    assert j["fused_model"] == fo["model"] and j["usd"] == pytest.approx(600 * per_call, abs=0.01)


# --- Table 2 rows of every kind ------------------------------------------------------------------------

def _kind_files(paths, root, kind, name, label, kept=None, note=None):
    """A blended answer kind over the synthetic test split: scored answers, and labels where it beats
    (`label` "A is better") or loses to every candidate; without labels when `note` is given."""
    scored, judge = [], []
    for i, r in enumerate(read_jsonl(paths["scored"])):
        cand = {"model": name, "text": "one two", "scores": {"bertscore": 0.5 + 0.01 * (i % 2)}}
        if kept is not None:
            cand["kept"] = kept[i]
        scored.append({"id": r["id"], "candidates": [cand]})
        cmp = {} if note else {f"{name},{m}": label for m in EVAL_MODELS}
        judge.append({"id": r["id"], "cmp_results": cmp, **({"note": note} if note else {})})
    write_jsonl(root / f"{kind}.jsonl", scored)
    write_jsonl(root / f"{kind}_judge.jsonl", judge)
    return root / f"{kind}.jsonl", root / f"{kind}_judge.jsonl"


def test_every_blended_kind_gets_its_row_with_its_own_labels(tmp_path):
    from llmblend.analysis.evaluate import evaluate

    paths = make_artifacts(tmp_path / "in")
    kept = ["fused" if i % 4 else "top1" for i in range(40)]
    v, vj = _kind_files(paths, tmp_path, "verified", "llm-blender-verified", "A is better", kept=kept)
    a, aj = _kind_files(paths, tmp_path, "aggregated", "llm-aggregator", None,
                        note="judge.fused_backend is openai but OPENAI_API_KEY holds no API key")
    out = tmp_path / "results"
    summary = evaluate(EVAL_CFG, paths["scored"], out, judge=paths["judge"], rankings=paths["rankings"],
                       fused={"fused": paths["fused"], "verified": v, "aggregated": a},
                       fused_judge={"fused": paths["fused_judge"], "verified": vj, "aggregated": aj})
    t2 = {r["method"]: r for r in read_csv(out / "tables/table2.csv")}
    assert [r["category"] for r in read_csv(out / "tables/table2.csv")][-3:] == ["LLM-Blender"] * 3
    ver, agg, gf = t2["PR + GF, verified"], t2["PR (K=3) + LLM aggregator"], t2["PR (K=3) + GF"]
    # verified beats every candidate on every judged example: rank 1; its metric is its own file's
    assert float(ver["gpt_rank"]) == 1.0 and float(ver["bertscore"]) == pytest.approx(50.5)
    assert float(gf["gpt_rank"]) != 1.0  # the GenFuser's row keeps its own labels
    assert agg["gpt_rank"] == "" and agg["top3"] == "" and float(agg["bertscore"]) == pytest.approx(50.5)
    f = summary["fusion"]
    assert (f["verified"]["fused_kept"], f["verified"]["verified"], f["verified"]["fused_kept_pct"]) == (30, 40, 75.0)
    assert f["aggregated"]["judged"] == 0 and "OPENAI_API_KEY" in f["aggregated"]["notes"][0]
    note = (out / "tables/table2.md").read_text()
    assert "the fused answer was kept on 30 of 40 prompts (75.0%)" in note
    assert "'PR (K=3) + LLM aggregator' has empty GPT columns: judge.fused_backend is openai" in note
    head = json.loads((out / "metrics/headline.json").read_text())["table2"]
    assert head["llm-blender-verified"]["gpt_rank"] == 1.0 and "gpt_rank" not in head["llm-aggregator"]
    from llmblend.analysis.report import build_report
    from workflow_utils import ROOT

    html = build_report({"run": "syn"}, out, ROOT / "workflow" / "report", tmp_path / "r.html").read_text()
    assert "the fused answer was kept on 30 of 40 prompts" in html


def test_the_evaluate_cli_takes_one_file_pair_per_kind(tmp_path):
    from llmblend.cli import main
    from workflow_utils import ROOT

    paths = make_artifacts(tmp_path / "in")
    v, vj = _kind_files(paths, tmp_path, "verified", "llm-blender-verified", "B is better", kept=["top1"] * 40)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("run: syn\nevaluate: {vicuna: alpha, oa: beta, bootstrap: {samples: 50}}\n")
    args = ["evaluate", "--config", str(ROOT / "params.yaml"), "--config", str(cfg), "--scored", str(paths["scored"]), "--judge", str(paths["judge"]),
            "--fused", str(paths["fused"]), "--fused-judge", str(paths["fused_judge"]),
            "--fused", f"verified={v}", "--fused-judge", f"verified={vj}", "--out-dir", str(tmp_path / "o")]
    assert main(args) == 0
    t2 = {r["method"]: r for r in read_csv(tmp_path / "o/tables/table2.csv")}
    # loses to every candidate: the last of 5 in the pool with it
    assert float(t2["PR + GF, verified"]["gpt_rank"]) == 5.0 and "PR (K=3) + GF" in t2
    assert main(args + ["--fused", f"verified={v}"]) == 2  # a kind given twice
