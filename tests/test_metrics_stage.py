"""The metrics stage: scores written into the records, shards + gather, imported scores, the
summary table (metrics not computed, with the reason), counts, and bad input."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest
from collections import Counter
from metrics_models import bert_tokenizer_dir, tiny_llama  # noqa: F401 (fixtures)
from sacrebleu import sentence_bleu

from llmblend.cli import main
from llmblend.errors import InputError
from llmblend.io import read_json, read_jsonl, write_json, write_jsonl
from llmblend.metrics.stage import build_metrics, gather_shards, score_file, summarize

REFS = ["The capital of France is Paris.", "Seven.", "Red, green and blue.", "Water boils at 100 C."]
TEXTS = [["Paris is the capital.", "", "London"], ["7", "Seven.", "eight"], ["red green blue", "colors", "x y"],
         ["It boils at 100 degrees.", "100", "   "]]


def _records():
    return [{"id": f"t/{i}", "instruction": "q", "input": "", "output": ref, "source": "t",
             "candidates": [{"model": f"m{k}", "text": t, "flags": []} for k, t in enumerate(texts)]}
            for i, (ref, texts) in enumerate(zip(REFS, TEXTS))]


def _cfg(**over):
    m = {"recompute": False, "shards": 1, "batch_size": 4, "device": "cpu",
         "bartscore": {"enabled": False, "reason": "no BART checkpoint offline", "model": None},
         "clm_logprob": {"enabled": False, "reason": "off in this test", "model": None, "template": "{candidate}"},
         "bleurt": {"enabled": False, "reason": "no BLEURT checkpoint offline", "model": None},
         "bertscore": {"enabled": False, "reason": "off in this test", "model": None, "num_layers": 1},
         "bleu": {"enabled": True}, "rouge": {"enabled": True}}
    for k, v in over.items():
        m[k] = v
    return {"run": "t", "seed": 1, "metrics": m}


@pytest.fixture
def cands(tmp_path):
    p = tmp_path / "candidates.jsonl"
    write_jsonl(p, _records())
    return p


def test_scores_are_written_into_each_candidate(cands, tmp_path):
    rep = score_file(_cfg(), {}, cands, tmp_path / "out.jsonl", tmp_path / "rep.json")
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in out] == [r["id"] for r in _records()]
    for rec in out:
        for c in rec["candidates"]:
            assert set(c["scores"]) == {"bleu", "rouge1", "rouge2", "rougeL", "rougeLsum"}
            assert c["flags"] == []  # everything else is kept as it was
    assert out[1]["candidates"][1]["scores"]["bleu"] == pytest.approx(100.0)
    c = rep["counts"]
    assert (c["records"], c["candidates"], c["empty_candidate"], c["empty_reference"]) == (4, 12, 2, 0)
    assert c["computed.bleu"] == 12 and c["computed.rouge"] == 12
    assert rep["not_computed"]["bleurt"] == "no BLEURT checkpoint offline"


def test_shards_gathered_equal_one_job(cands, tmp_path):
    score_file(_cfg(), {}, cands, tmp_path / "whole.jsonl")
    parts = []
    for k in range(3):
        score_file(_cfg(), {}, cands, tmp_path / f"s{k}.jsonl", tmp_path / f"s{k}.json", shard=k, n_shards=3)
        parts.append(k)
    rep = gather_shards([tmp_path / f"s{k}.jsonl" for k in parts], [tmp_path / f"s{k}.json" for k in parts],
                        tmp_path / "gathered.jsonl", tmp_path / "gathered.json")
    assert (tmp_path / "gathered.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    assert rep["counts"]["candidates"] == 12 and rep["shards"] == 3


def test_imported_scores_kept_unless_recompute_and_they_agree(tmp_path):
    """Imported data (MixInstruct-like) carries bleu computed by the reference code's call,
    sentence_bleu(hypo, [ref]); it is kept as is, and recomputing gives the same values."""
    recs = _records()
    for rec in recs:
        for c in rec["candidates"]:
            c["scores"] = {"bleu": sentence_bleu(c["text"], [rec["output"]]).score if c["text"].strip() else 0.0,
                           "logprobs": -3.5}
    write_jsonl(tmp_path / "imported.jsonl", recs)
    cfg = _cfg(rouge={"enabled": False, "reason": "not in this test"})
    rep = score_file(cfg, {}, tmp_path / "imported.jsonl", tmp_path / "kept.jsonl")
    assert rep["counts"]["kept_existing.bleu"] == 12 and "computed.bleu" not in rep["counts"]
    assert read_jsonl(tmp_path / "kept.jsonl") == recs
    write_json(tmp_path / "kept.report.json", rep)
    summarize(cfg, {"test": tmp_path / "kept.jsonl"}, {"test": tmp_path / "kept.report.json"},
              tmp_path / "m.json", tmp_path / "t.csv")
    status = {(r["metric"], r["status"]) for r in csv.DictReader(open(tmp_path / "t.csv", encoding="utf-8"))}
    assert ("bleu", "imported") in status and ("logprobs", "imported") in status
    assert not any(st == "computed" for _, st in status)

    cfg["metrics"]["recompute"] = True
    rep = score_file(cfg, {}, tmp_path / "imported.jsonl", tmp_path / "recomputed.jsonl")
    assert rep["counts"]["computed.bleu"] == 12
    for old, new in zip(recs, read_jsonl(tmp_path / "recomputed.jsonl")):
        for a, b in zip(old["candidates"], new["candidates"]):
            assert b["scores"]["bleu"] == pytest.approx(a["scores"]["bleu"], abs=1e-9)
            assert b["scores"]["logprobs"] == -3.5  # keys of other metrics stay


def test_model_metric_counts_truncations_in_the_report(cands, tmp_path, tiny_llama):
    cfg = _cfg(clm_logprob={"enabled": True, "model": "x", "template": "A: {candidate}\nB:",
                            "max_candidate_tokens": 2, "max_reference_tokens": 3})
    rep = score_file(cfg, {"clm_logprob": f"dir:{tiny_llama}"}, cands, tmp_path / "o.jsonl", tmp_path / "r.json")
    c = rep["counts"]
    assert c["computed.clm_logprob"] == 12
    assert c["truncated_candidate.clm_logprob"] >= 3 and c["truncated_reference.clm_logprob"] >= 3
    assert rep["settings"]["clm_logprob"]["max_candidate_tokens"] == 2
    vals = [cand["scores"]["clm_logprob"] for r in read_jsonl(tmp_path / "o.jsonl") for cand in r["candidates"]]
    assert all(v < 0 for v in vals)


def test_enabled_model_metric_without_a_model_is_a_config_error():
    from llmblend.errors import ConfigError

    cfg = _cfg(bertscore={"enabled": True, "model": "minilm", "num_layers": 1})
    with pytest.raises(ConfigError, match="bertscore"):
        build_metrics(cfg["metrics"], {})


def test_summary_table_lists_means_and_metrics_not_computed(cands, tmp_path):
    cfg = _cfg()
    score_file(cfg, {}, cands, tmp_path / "test.jsonl", tmp_path / "test.report.json")
    s = summarize(cfg, {"test": tmp_path / "test.jsonl"}, {"test": tmp_path / "test.report.json"},
                  tmp_path / "metrics" / "candidate_scores.json", tmp_path / "scores.csv", tmp_path / "report.json")
    rows = list(csv.DictReader(open(tmp_path / "scores.csv", encoding="utf-8")))
    m1_bleu = [r for r in rows if r["model"] == "m1" and r["metric"] == "bleu"][0]
    expect = sum(sentence_bleu(t[1], [ref]).score if t[1] else 0.0 for t, ref in zip(TEXTS, REFS)) / 4
    assert float(m1_bleu["mean"]) == pytest.approx(expect, abs=1e-5) and m1_bleu["status"] == "computed"
    bleurt = [r for r in rows if r["metric"] == "bleurt"]
    assert len(bleurt) == 3 and all(r["status"] == "not_computed" and "BLEURT" in r["note"] for r in bleurt)
    assert s["splits"]["test"]["m1"]["bleu"] == pytest.approx(expect, abs=1e-5)
    assert read_json(tmp_path / "report.json")["not_computed"]["bartscore"] == "no BART checkpoint offline"


def test_bad_input_names_file_line_field_and_writes_nothing(tmp_path):
    recs = _records()
    bad = copy.deepcopy(recs)
    del bad[2]["candidates"][1]["text"]
    write_jsonl(tmp_path / "bad.jsonl", bad)
    with pytest.raises(InputError) as e:
        score_file(_cfg(), {}, tmp_path / "bad.jsonl", tmp_path / "out.jsonl")
    assert e.value.line == 3 and e.value.field == "candidates[1].text"
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_exits_2_on_bad_input_without_output(tmp_path, capsys):
    (tmp_path / "in.jsonl").write_text(json.dumps({"id": "a", "output": 3, "candidates": []}) + "\n")
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    rc = main(["score-candidates", "--config", str(params), "--in", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "o.jsonl")])
    assert rc == 2
    assert "in.jsonl:1: field 'output'" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def _many(tmp_path, n=10):
    recs = [dict(r, id=f"t/{k}") for k in range(n) for r in [_records()[k % 4]]]
    write_jsonl(tmp_path / "many.jsonl", recs)
    return tmp_path / "many.jsonl"


class _Killed(Exception):
    pass


def _interrupt_after(monkeypatch, n_chunks, scored):
    """score_records that records which ids it scores and raises when chunk `n_chunks` + 1 starts."""
    from llmblend.metrics import stage

    real = getattr(stage.score_records, "real", stage.score_records)  # not a flaky one of an earlier call

    def flaky(records, *a, **kw):
        if n_chunks is not None and len(scored) == n_chunks:
            raise _Killed
        scored.append([r["id"] for r in records])
        return real(records, *a, **kw)

    flaky.real = real
    monkeypatch.setattr(stage, "score_records", flaky)


@pytest.mark.parametrize("with_model", [False, True])
def test_a_killed_job_resumes_without_rescoring_and_gives_the_same_bytes(tmp_path, monkeypatch, tiny_llama,
                                                                         with_model):
    cfg = _cfg()
    models = {}
    if with_model:  # batched float scores: resumed chunks must batch as the uninterrupted run does
        cfg = _cfg(clm_logprob={"enabled": True, "model": "x", "template": "A: {candidate}\nB:"})
        models = {"clm_logprob": f"dir:{tiny_llama}"}
    inp = _many(tmp_path)
    whole = score_file(cfg, models, inp, tmp_path / "whole.jsonl", tmp_path / "whole.json", chunk_records=3)

    scored: list = []
    out, partial = tmp_path / "out.jsonl", tmp_path / "out.jsonl.partial.jsonl"
    _interrupt_after(monkeypatch, 2, scored)
    with pytest.raises(_Killed):
        score_file(cfg, models, inp, out, tmp_path / "out.json", chunk_records=3)
    assert not out.exists() and not (tmp_path / "out.json").exists()
    key_line, *chunks = read_jsonl(partial)  # the answer log: its key, then one line a finished chunk
    assert "answers_for" in key_line and [r["id"] for c in chunks for r in c["chunk"]["records"]] == \
        [f"t/{k}" for k in range(6)]
    # a kill in the middle of writing the next chunk leaves a torn tail: it is cut off on resume
    with open(partial, "ab") as f:
        f.write(b'{"id":"t/6","instruction"')

    _interrupt_after(monkeypatch, None, scored)
    rep = score_file(cfg, models, inp, out, tmp_path / "out.json", chunk_records=3)
    ids = [i for chunk in scored for i in chunk]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 10  # every record scored exactly once
    assert out.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    assert (tmp_path / "out.json").read_text() == (tmp_path / "whole.json").read_text().replace("whole", "out")
    assert rep["counts"] == whole["counts"]
    assert not partial.exists() and not (tmp_path / "out.jsonl.partial.json").exists()


def test_a_partial_file_from_other_settings_is_not_reused(tmp_path, monkeypatch):
    inp = _many(tmp_path)
    scored: list = []
    _interrupt_after(monkeypatch, 2, scored)
    with pytest.raises(_Killed):
        score_file(_cfg(), {}, inp, tmp_path / "out.jsonl", chunk_records=3)
    _interrupt_after(monkeypatch, None, scored)
    cfg = _cfg(rouge={"enabled": False, "reason": "changed between the runs"})
    score_file(cfg, {}, inp, tmp_path / "out.jsonl", chunk_records=3)
    assert [i for chunk in scored[2:] for i in chunk] == [f"t/{k}" for k in range(10)]  # all over again
    score_file(cfg, {}, inp, tmp_path / "fresh.jsonl", chunk_records=3)
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "fresh.jsonl").read_bytes()
    assert all("rouge1" not in c["scores"] for r in read_jsonl(tmp_path / "out.jsonl") for c in r["candidates"])


class _CountingMetric:
    """A metric that scores a text by its length and records every (text, reference) it was given."""

    def __init__(self):
        self.counts, self.seen = Counter(), []

    def compute(self, predictions, references):
        self.seen += list(zip(predictions, references))
        return {"bleu": [float(len(p) + 100 * len(r)) for p, r in zip(predictions, references)]}


def test_a_text_given_twice_for_one_reference_is_scored_once_and_both_copies_get_it():
    from llmblend.metrics.stage import score_records

    recs = _records()
    recs[0]["candidates"][2]["text"] = recs[0]["candidates"][0]["text"]  # same answer twice, one prompt
    recs[1]["candidates"][0]["text"] = recs[0]["candidates"][0]["text"]  # same text, another reference
    metric = _CountingMetric()
    counts = score_records(recs, {"bleu": metric}, recompute=False)
    assert len(metric.seen) == 11 and len(set(metric.seen)) == 11
    assert counts["computed.bleu"] == 12 and counts["duplicate_of_another.bleu"] == 1
    for rec in recs:
        for cand in rec["candidates"]:
            assert cand["scores"]["bleu"] == len(cand["text"]) + 100 * len(rec["output"])
