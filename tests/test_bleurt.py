"""BLEURT through the bleurt-pytorch port (with llmblend.metrics.bleurt_compat under transformers 5),
on a tiny random-weight BLEURT built from a config: the score against a BERT forward written out
here, the (reference, candidate) order, batching and input order, empty texts, the truncation rule
and its count, the compatibility helpers, and the stage with BLEURT enabled."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from metrics_models import tiny_bleurt  # noqa: F401 (fixture)

from llmblend.errors import LLMBlendError
from llmblend.io import read_jsonl, write_jsonl
from llmblend.metrics import scorers
from llmblend.metrics.bleurt_compat import find_pruneable_heads_and_indices, import_bleurt

CANDS = ["The cat sat on the mat.", "A dog runs in the park every morning before work.", "42",
         "Paris is the capital of France. It is large.", "the the the the the the the", "cats"]
REFS = ["The cat is sitting on the mat.", "Every morning a dog runs in the park.", "The answer is 42.",
        "The capital of France is Paris.", "Something.", "A short reference"]


def _load(d):
    model_cls, tok_cls = import_bleurt()
    return tok_cls.from_pretrained(d), model_cls.from_pretrained(d).eval()


def _pair_ids(tok, ref: str, cand: str, max_tokens: int | None = None):
    """BLEURT's encoding: [CLS] reference [SEP] candidate [SEP]; segment 0 then 1. Over the limit,
    drop the last token of the longer side, one at a time (ties: the candidate), as BLEURT's
    `_truncate_seq_pair`."""
    a = tok(ref, add_special_tokens=False)["input_ids"]
    b = tok(cand, add_special_tokens=False)["input_ids"]
    while max_tokens is not None and len(a) + len(b) + 3 > max_tokens:
        if len(a) > len(b):
            a = a[:-1]
        else:
            b = b[:-1]
    ids = [tok.cls_token_id, *a, tok.sep_token_id, *b, tok.sep_token_id]
    return ids, [0] * (len(a) + 2) + [1] * (len(b) + 1)


@torch.inference_mode()
def _bleurt_by_hand(model, ids, types) -> float:
    """The port's BERT + pooler + regression head written out from its weights (no padding, one pair)."""
    w = {k.removeprefix("bleurt."): v for k, v in model.state_dict().items()}
    cfg = model.config
    n_heads, eps = cfg.num_attention_heads, cfg.layer_norm_eps
    ln = lambda x, p: torch.nn.functional.layer_norm(x, x.shape[-1:], w[f"{p}.weight"], w[f"{p}.bias"], eps)  # noqa: E731
    lin = lambda x, p: x @ w[f"{p}.weight"].T + w[f"{p}.bias"]  # noqa: E731
    ids, types = torch.tensor(ids), torch.tensor(types)
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][types]
         + w["embeddings.position_embeddings.weight"][: len(ids)])
    x = ln(x, "embeddings.LayerNorm")
    t, hs = len(ids), cfg.hidden_size // n_heads
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}"
        q, k, v = (lin(x, f"{p}.attention.self.{n}").view(t, n_heads, hs).transpose(0, 1) for n in ("query", "key", "value"))
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hs), dim=-1)
        ctx = (att @ v).transpose(0, 1).reshape(t, -1)
        x = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        h = torch.nn.functional.gelu(lin(x, f"{p}.intermediate.dense"))
        x = ln(lin(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    pooled = torch.tanh(lin(x[0], "pooler.dense"))
    return float(lin(pooled, "classifier")[0])


def test_score_is_the_regression_output_for_reference_then_candidate(tiny_bleurt):
    tok, model = _load(tiny_bleurt)
    got = scorers.Bleurt(tiny_bleurt, batch_size=4).compute(CANDS, REFS)["bleurt"]
    for c, r, g in zip(CANDS, REFS, got):
        assert g == pytest.approx(_bleurt_by_hand(model, *_pair_ids(tok, r, c)), abs=1e-5)
    # the order is part of the metric: (candidate, reference) gives other values
    swapped = [_bleurt_by_hand(model, *_pair_ids(tok, c, r)) for c, r in zip(CANDS, REFS)]
    assert max(abs(a - b) for a, b in zip(got, swapped)) > 1e-3
    assert len({round(g, 4) for g in got}) == len(got)  # the inputs are told apart


def test_batching_and_input_order_change_less_than_1e5(tiny_bleurt):
    metric = scorers.Bleurt(tiny_bleurt, batch_size=1)
    one = metric.compute(CANDS, REFS)["bleurt"]
    metric.batch_size = 4
    four = metric.compute(CANDS, REFS)["bleurt"]
    rev = metric.compute(CANDS[::-1], REFS[::-1])["bleurt"][::-1]
    assert max(abs(a - b) for a, b in zip(one, four)) < 1e-5
    assert max(abs(a - b) for a, b in zip(one, rev)) < 1e-5


def test_empty_texts_score_the_pair_as_it_is(tiny_bleurt):
    tok, model = _load(tiny_bleurt)
    cands, refs = ["", "The cat sat.", "", "  "], ["The cat sat.", "", "", "Paris."]
    got = scorers.Bleurt(tiny_bleurt, batch_size=4).compute(cands, refs)["bleurt"]
    assert all(math.isfinite(g) for g in got)
    for c, r, g in zip(cands, refs, got):
        assert g == pytest.approx(_bleurt_by_hand(model, *_pair_ids(tok, r, c)), abs=1e-5)
    assert _pair_ids(tok, "", "")[0] == [tok.cls_token_id, tok.sep_token_id, tok.sep_token_id]


def test_over_long_pairs_lose_tokens_from_the_longer_side_and_are_counted(tiny_bleurt):
    tok, model = _load(tiny_bleurt)
    cands = ["the cat sat on the mat " * 3, "42", "the dog", "the cat sat on the mat"]
    refs = ["a dog", "the capital of france is paris " * 3, "every morning the dog runs in the park", "the cat"]
    metric = scorers.Bleurt(tiny_bleurt, batch_size=2, max_tokens=12)
    got = metric.compute(cands, refs)["bleurt"]
    lengths = [len(_pair_ids(tok, r, c)[0]) for c, r in zip(cands, refs)]
    assert metric.counts["truncated_pair"] == sum(n > 12 for n in lengths) == 3
    for c, r, g in zip(cands, refs, got):
        ids, types = _pair_ids(tok, r, c, max_tokens=12)
        assert len(ids) <= 12
        assert g == pytest.approx(_bleurt_by_hand(model, ids, types), abs=1e-5)


def test_max_tokens_beyond_the_positions_is_refused(tiny_bleurt):
    with pytest.raises(LLMBlendError, match="max_tokens"):
        scorers.Bleurt(tiny_bleurt, max_tokens=129)


def test_pruning_a_head_equals_masking_it(tiny_bleurt):
    """The two transformers-4 helpers the shim supplies: head pruning indices and the head mask."""
    tok, model = _load(tiny_bleurt)
    enc = tok(REFS[:2], CANDS[:2], padding="longest", return_tensors="pt")
    mask = torch.ones(model.config.num_hidden_layers, model.config.num_attention_heads)
    mask[0, 1] = 0
    with torch.inference_mode():
        masked = model(**enc, head_mask=mask).logits
        model.bleurt._prune_heads({0: [1]})
        pruned = model(**enc).logits
    assert torch.allclose(masked, pruned, atol=1e-5)
    heads, index = find_pruneable_heads_and_indices([0, 2], n_heads=3, head_size=2, already_pruned={0})
    # the layer has 3 heads left of 4 (head 0 went before): head 2 is now the second, rows 2-3 go
    assert heads == {2} and index.tolist() == [0, 1, 4, 5]


def test_a_port_that_cannot_be_imported_fails_clearly(tiny_bleurt, monkeypatch):
    monkeypatch.setitem(sys.modules, "bleurt_pytorch", None)  # `import bleurt_pytorch` raises ImportError
    with pytest.raises(LLMBlendError, match="bleurt-pytorch"):
        scorers.Bleurt(tiny_bleurt)


def test_stage_scores_bleurt_and_reports_truncation(tiny_bleurt, tmp_path):
    from llmblend.metrics.stage import score_file

    recs = [{"id": f"t/{i}", "instruction": "q", "input": "", "output": r,
             "candidates": [{"model": "m0", "text": c}, {"model": "m1", "text": ""}]} for i, (c, r) in
            enumerate(zip(CANDS, REFS))]
    write_jsonl(tmp_path / "in.jsonl", recs)
    off = {"enabled": False, "reason": "off in this test", "model": None}
    cfg = {"run": "t", "seed": 1, "metrics": {
        "recompute": False, "shards": 1, "batch_size": 4, "device": "cpu",
        "bartscore": off, "clm_logprob": off, "bertscore": off, "bleu": off, "rouge": off,
        "bleurt": {"enabled": True, "model": "x", "max_tokens": 10}}}
    rep = score_file(cfg, {"bleurt": f"dir:{tiny_bleurt}"}, tmp_path / "in.jsonl", tmp_path / "out.jsonl")
    direct = scorers.Bleurt(tiny_bleurt, max_tokens=10).compute([c for c in CANDS], REFS)["bleurt"]
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [r["candidates"][0]["scores"]["bleurt"] for r in out] == pytest.approx(direct, abs=1e-5)
    assert rep["counts"]["computed.bleurt"] == 12 and rep["counts"]["empty_candidate"] == 6
    assert rep["counts"]["truncated_pair.bleurt"] >= 1
    assert rep["settings"]["bleurt"]["library"] == "bleurt-pytorch 0.0.1"
