"""Offline judges (rubric, replay), schedules, fused answers and bad input."""

import json

import pytest

from llmblend.errors import InputError
from llmblend.judge import gpt_rank
from llmblend.judge.backends import alpaca_pair_label, rubric_label
from llmblend.judge.run import judge_fused, judge_split
from llmblend.judge.schedule import Knockout, shown_order

COMMIT = "c0ffee"


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def cfg(backend="rubric", sources=None, mirror=None, **judge):
    return {"run": "t", "seed": 3, "mirror": mirror,
            "data": {"sources": sources or [{"type": "demo", "name": "demo", "n_items": 5}]},
            "judge": {"backend": backend, "splits": ["test"], "pairs": "all", **judge}}


def paths(tmp_path, name="test"):
    return dict(out=tmp_path / "judge" / f"{name}.jsonl", metrics=tmp_path / f"m_{name}.json",
                cache=tmp_path / "cache" / f"{name}.sqlite")


@pytest.mark.parametrize("a,b,label", [
    ([True, True], [True, False], "A is better"), ([False, False], [True, False], "B is better"),
    ([True, True], [True, True], "Same good"), ([False, False], [False, False], "Same bad"),
    ([True, False], [False, True], "Same bad")])
def test_rubric_label(a, b, label):
    assert rubric_label(a, b) == label


@pytest.mark.parametrize("pa,pb,label", [
    (2, 2, "Same good"), (1, 1, "Same bad"), (1.5, 1.5, "Same good"), (2, 1, "A is better"), (1, 2, "B is better"),
    (1.5, 1, "A is better"), (1.5, 2, "B is better")])
def test_alpaca_pair_label(pa, pb, label):
    assert alpaca_pair_label(pa, pb) == label


def rubric_records():
    rub = [{"check": "number", "value": 7}, {"check": "max_words", "value": 5}]
    return [{"id": f"d{i}", "instruction": "3+4?", "input": "", "output": "7", "rubric": rub,
             "candidates": [{"model": "good", "text": "7"}, {"model": "wordy", "text": "it is 7 " + "very " * 9},
                            {"model": "wrong", "text": "8"}]} for i in range(4)]


def test_rubric_judge_split(tmp_path):
    cands = write_jsonl(tmp_path / "c.jsonl", rubric_records())
    m = judge_split(cfg(both_orders=True), cands, **paths(tmp_path))
    recs = [json.loads(x) for x in open(tmp_path / "judge" / "test.jsonl")]
    assert m["pairs_labelled"] == 12 and m["order_agreement"]["rate"] == 1.0
    models = ["good", "wordy", "wrong"]
    assert gpt_rank.gpt_ranks(recs[0]["cmp_results"], models) == [1, 2, 2]
    # wordy vs wrong: one check each -> Same bad (partial ties are never Same good)
    assert gpt_rank.outcome(recs[0]["cmp_results"], "wordy", "wrong") == "same_bad"


def test_missing_rubric_and_bad_candidates_are_located(tmp_path):
    recs = rubric_records()
    del recs[1]["rubric"]
    cands = write_jsonl(tmp_path / "c.jsonl", recs)
    with pytest.raises(InputError, match=r"c.jsonl:2: field 'rubric'"):
        judge_split(cfg(), cands, **paths(tmp_path))
    recs = rubric_records()
    recs[2]["candidates"][1]["model"] = "good"
    cands = write_jsonl(tmp_path / "c.jsonl", recs)
    with pytest.raises(InputError, match=r"c.jsonl:3: field 'candidates\[1\].model': duplicate"):
        judge_split(cfg(), cands, **paths(tmp_path))
    assert not (tmp_path / "judge" / "test.jsonl").exists()


def test_fused_against_every_candidate(tmp_path):
    cands = write_jsonl(tmp_path / "c.jsonl", rubric_records())
    fused = write_jsonl(tmp_path / "f.jsonl", [{"id": f"d{i}", "instruction": "3+4?", "input": "", "output": "7",
                                                "candidates": [{"model": "llm-blender", "text": "7"}]}
                                               for i in range(4)])
    m = judge_fused(cfg(), fused, cands, **paths(tmp_path, "fused_test"))
    recs = [json.loads(x) for x in open(tmp_path / "judge" / "fused_test.jsonl")]
    assert m["pairs_labelled"] == 12 and all(len(r["cmp_results"]) == 3 for r in recs)
    assert all("llm-blender" in k for r in recs for k in r["cmp_results"])
    own = {"good,wordy": "A is better", "good,wrong": "A is better", "wordy,wrong": "Same bad"}
    assert gpt_rank.rank_with_extra(own, recs[0]["cmp_results"], ["good", "wordy", "wrong"], "llm-blender") == 1
    assert gpt_rank.beats_or_ties(recs[0]["cmp_results"], "llm-blender", "good", "issue6") == 0.5
    # replay has no label for a new text: every pair dropped and counted, none invented
    mirror = tmp_path / "mirror"
    write_jsonl(mirror / "mix-instruct" / "main" / "test.jsonl",
                [{"id": f"d{i}", "instruction": "3+4?", "input": "", "output": "7",
                  "cmp_results": json.dumps({"good,wrong": "A is better"})} for i in range(4)])
    src = [{"type": "mixinstruct", "name": "mi", "revision": "main", "files": {"test": {"file": "test.jsonl"}}}]
    m = judge_fused(cfg("replay", src, str(mirror)), fused, cands, **paths(tmp_path, "fused_test"))
    assert m["pairs_labelled"] == 0 and m["dropped_pairs"] == 12 and "fused_backend" in m["note"]
    write_jsonl(fused, [{"id": "d0", "candidates": [{"model": "llm-blender", "text": "7"}]}])
    with pytest.raises(InputError, match="no fused answer"):
        judge_fused(cfg(), fused, cands, **paths(tmp_path, "fused_test"))


def test_replay_alpaca_eval(tmp_path):
    mirror = tmp_path / "mirror"
    models = ["m1", "m2", "m3"]
    prefs = {"m1": [2, 1, 2], "m2": [2, 2, 0], "m3": [1, 1.5, 1]}
    for m in models:
        rows = [{"instruction": f"q{i} ", "dataset": "koala", "output_1": "ref", "output_2": f"{m} says {i}",
                 "preference": prefs[m][i]} for i in range(3)]
        p = mirror / "alpaca_eval" / COMMIT / "results" / m / "alpaca_eval_gpt4" / "annotations.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps(rows))
    recs = [{"id": f"x{i}", "instruction": f"q{i}", "input": "", "output": "ref",
             "candidates": [{"model": m, "text": f"{m} says {i}"} for m in models]} for i in range(3)]
    cands = write_jsonl(tmp_path / "c.jsonl", recs)
    c = cfg("replay", [{"type": "alpaca_eval", "name": "ae", "commit": COMMIT, "models": models}], str(mirror))
    m = judge_split(c, cands, **paths(tmp_path))
    out = [json.loads(x) for x in open(tmp_path / "judge" / "test.jsonl")]
    assert gpt_rank.outcome(out[0]["cmp_results"], "m1", "m2") == "same_good"
    assert gpt_rank.outcome(out[0]["cmp_results"], "m3", "m1") == "loss"
    assert gpt_rank.outcome(out[1]["cmp_results"], "m3", "m1") == "win"  # a tie with the reference beats a loss
    assert gpt_rank.outcome(out[1]["cmp_results"], "m3", "m2") == "loss"
    # m2 has no usable judgment on q2: its two pairs are dropped and counted, never labelled
    assert len(out[2]["cmp_results"]) == 1 and m["dropped_pairs"] == 2
    assert m["backend_stats"]["unusable_annotations"] == 1 and m["pairs_labelled"] == 7
    assert "candidate_text_differs_from_annotated" not in m["backend_stats"]


def test_replay_mixinstruct(tmp_path):
    mirror = tmp_path / "mirror"
    released = [{"id": "a/1", "instruction": "i", "input": "", "output": "o",
                 "cmp_results": json.dumps({"y,x": "A is better", "x,z": "Same bad", "y,z": "Same good"})},
                {"id": "a/2", "instruction": "i", "input": "", "output": "o", "cmp_results": "null"}]
    write_jsonl(mirror / "mix-instruct" / "main" / "test.jsonl", released)
    recs = [{"id": r["id"], "instruction": "i", "input": "", "output": "o",
             "candidates": [{"model": m, "text": m} for m in "xyz"]} for r in released]
    cands = write_jsonl(tmp_path / "c.jsonl", recs)
    src = [{"type": "mixinstruct", "name": "mi", "revision": "main", "files": {"test": {"file": "test.jsonl"}}}]
    m = judge_split(cfg("replay", src, str(mirror)), cands, **paths(tmp_path))
    out = [json.loads(x) for x in open(tmp_path / "judge" / "test.jsonl")]
    assert gpt_rank.gpt_ranks(out[0]["cmp_results"], ["x", "y", "z"]) == [3, 1, 2]  # x lost to y; the ties cancel
    assert out[1]["cmp_results"] == {} and m["backend_stats"]["examples_without_released_labels"] == 1
    assert m["dropped_pairs"] == 3


def test_shown_order_is_seeded_and_balanced():
    orders = [shown_order(1, f"e{i}", "a", "b") for i in range(400)]
    assert orders == [shown_order(1, f"e{i}", "b", "a") for i in range(400)]
    assert 150 < sum(o == ("a", "b") for o in orders) < 250


def test_knockout_finds_the_best_in_n_minus_1_pairs():
    quality = {f"m{i}": i for i in range(11)}
    ko = Knockout(list(quality), seed=0, example_id="e")
    asked = 0
    while ko.pending():
        pairs = ko.pending()
        asked += len(pairs)
        ko.feed({(a, b): "A is better" if quality[a] > quality[b] else "B is better" for a, b in pairs})
    assert ko.winner == "m10" and asked == 10


class ScriptedJudge:
    """A backend stand-in: the result of each shown order (A, B) comes from `answer(a, b)`."""

    def __init__(self, answer):
        self.answer, self.shown = answer, []

    def judge(self, jobs):
        self.shown += [(a, b) for _, a, b, _, _ in jobs]
        return [self.answer(a, b) for _, a, b, _, _ in jobs]


def test_two_orders_combine_into_one_label():
    """judge.both_orders: a pair is asked as A,B and as B,A. Agreeing orders give the label; a reversal
    of the shown order that does not reverse the verdict is `inconsistent`; an order that failed makes
    the pair fail with that order's reason (never the other order's label); a missing answer drops it."""
    from llmblend.judge.labels import label_for
    from llmblend.judge.run import label_examples

    def answer(a, b):
        pair = frozenset((a, b))
        if pair == {"x", "y"}:  # x is better whichever is shown first
            return {"label": "A is better" if a == "x" else "B is better"}
        if pair == {"x", "z"}:  # always the first shown: position bias
            return {"label": "A is better"}
        if pair == {"y", "z"}:  # one order failed
            return {"label": "error", "reason": "HTTP 500 (after 3 attempts)"} if a == "y" else \
                {"label": "A is better"}
        if pair == {"x", "w"}:  # one order has no usable answer at all
            return {"label": None} if a == "w" else {"label": "B is better"}
        if pair == {"y", "w"}:
            return {"label": "unparsable", "reason": "unparsable reply"} if a == "w" else {"label": "Same bad"}
        return {"label": "Same good"}  # z, w

    rec = {"id": "e1", "candidates": [{"model": m, "text": m} for m in "xyzw"]}
    backend = ScriptedJudge(answer)
    state, counts = label_examples([rec], backend, "all", seed=5, both_orders=True)
    assert len(backend.shown) == 12 and set(backend.shown) == {(a, b) for a in "xyzw" for b in "xyzw" if a != b}
    cmp, errors = state[0]["cmp"], state[0]["errors"]
    assert label_for(cmp, "x", "y") == "A is better" and label_for(cmp, "z", "w") == "Same good"
    assert label_for(cmp, "x", "z") == "inconsistent"
    assert label_for(cmp, "y", "z") == "error" and label_for(cmp, "y", "w") == "unparsable"
    assert label_for(cmp, "x", "w") is None and len(cmp) == 5
    reasons = {frozenset(k.split(",")): v for k, v in errors.items()}
    assert reasons == {frozenset("yz"): "HTTP 500 (after 3 attempts)", frozenset("yw"): "unparsable reply",
                       frozenset("xz"): "order A,B said 'A is better'; order B,A said 'A is better'"}
    assert (counts["orders_agree"], counts["orders_disagree"], counts["dropped_pairs"]) == (2, 1, 1)
    assert (counts["A is better"] + counts["B is better"], counts["Same good"], counts["inconsistent"],
            counts["error"], counts["unparsable"]) == (1, 1, 1, 1, 1)
