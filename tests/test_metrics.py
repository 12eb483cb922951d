"""Each metric against a direct computation, on tiny random-weight models built from a config.

Checked per metric: the formula (by hand), the maximum for identical texts where one exists, input
order, batching (< 1e-5), empty texts (defined, finite) and the truncation rule with its count.
"""

from __future__ import annotations

import math

import pytest
import torch

from llmblend.errors import LLMBlendError
from llmblend.metrics import scorers
from metrics_models import bert_tokenizer_dir, tiny_bart, tiny_bert, tiny_llama  # noqa: F401 (fixtures)

CANDS = ["The cat sat on the mat.", "A dog runs in the park every morning before work.", "42",
         "Paris is the capital of France. It is large.", "", "the the the the the the the the"]
REFS = ["The cat is sitting on the mat.", "Every morning a dog runs in the park.", "The answer is 42.",
        "The capital of France is Paris.", "Something.", "A short reference"]


def _bart(d, **kw):
    return scorers.Seq2SeqLogLikelihood("bartscore", d, **kw)


TEMPLATE = "Answer: {candidate}\nSame answer again:"


def _clm(d, **kw):
    return scorers.CausalLogLikelihood("clm_logprob", d, TEMPLATE, **kw)


# --- the formula, by hand -------------------------------------------------------------------


@torch.inference_mode()
def _bartscore_by_hand(tok, model, cand, ref):
    """Decode the reference one token at a time and average log p(token | candidate, prefix)."""
    src = torch.tensor([tok(cand)["input_ids"]])
    tgt = tok(ref)["input_ids"]
    total = 0.0
    for t in range(len(tgt)):
        dec = torch.tensor([[model.config.decoder_start_token_id] + tgt[:t]])
        logits = model(input_ids=src, decoder_input_ids=dec).logits[0, -1]
        total += torch.log_softmax(logits, -1)[tgt[t]].item()
    return total / len(tgt)


@torch.inference_mode()
def _clm_by_hand(tok, model, cand, ref):
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"] if s else []  # noqa: E731
    head, tail = TEMPLATE.split("{candidate}")
    prompt = ids(head) + ids(cand) + ids(tail)
    target = ids(ref) + [tok.eos_token_id]
    total = 0.0
    for j in range(len(target)):
        logits = model(input_ids=torch.tensor([prompt + target[:j]])).logits[0, -1]
        total += torch.log_softmax(logits, -1)[target[j]].item()
    return total / len(target)


def test_bartscore_equals_mean_token_logprob_by_hand(tiny_bart):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(tiny_bart), AutoModelForSeq2SeqLM.from_pretrained(tiny_bart).eval()
    got = _bart(tiny_bart, batch_size=4).compute(CANDS, REFS)["bartscore"]
    for c, r, g in zip(CANDS, REFS, got):
        assert g == pytest.approx(_bartscore_by_hand(tok, model, c, r), abs=1e-5)


@pytest.mark.parametrize("keeps_logits", [True, False], ids=["logits_to_keep", "all-logits"])
def test_clm_logprob_equals_mean_token_logprob_by_hand(tiny_llama, keeps_logits):
    """Batched, with prompts of several lengths: the vocabulary projection runs from the batch's
    shortest prompt on (or, for a model without `logits_to_keep`, over every position)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(tiny_llama), AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    clm = _clm(tiny_llama, batch_size=4)
    if not keeps_logits:  # a forward without the argument: every position's logits, then cut
        full = clm.model.forward
        clm.model.forward = lambda input_ids, attention_mask: full(input_ids=input_ids, attention_mask=attention_mask)
    assert len({len(clm.encode(c, r)[0]) for c, r in zip(CANDS, REFS)}) > 1
    got = clm.compute(CANDS, REFS)["clm_logprob"]
    for c, r, g in zip(CANDS, REFS, got):
        assert g == pytest.approx(_clm_by_hand(tok, model, c, r), abs=1e-5)


def test_bleu_and_rouge_match_the_libraries():
    from rouge_score import rouge_scorer
    from sacrebleu import sentence_bleu

    bleu = scorers.Bleu().compute(CANDS, REFS)["bleu"]
    rouge = scorers.Rouge().compute(CANDS, REFS)
    direct = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for i, (c, r) in enumerate(zip(CANDS, REFS)):
        if not c:
            continue
        assert bleu[i] == sentence_bleu(c, [r]).score
        s = direct.score(r, c)
        for key in ("rouge1", "rouge2", "rougeL"):
            assert rouge[key][i] == pytest.approx(s[key].fmeasure)
    # rougeLsum splits sentences: two sentences against one reorders the LCS union
    two = scorers.Rouge().compute(["France has Paris. Paris is big."], ["Paris is big. France has Paris."])
    assert two["rougeLsum"][0] == pytest.approx(1.0)
    assert two["rougeL"][0] < 1.0


def test_bertscore_matches_bert_score_directly(tiny_bert):
    import bert_score

    got = scorers.BertScore(tiny_bert, num_layers=2, batch_size=4).compute(CANDS, REFS)["bertscore"]
    keep = [i for i, c in enumerate(CANDS) if c]
    _, _, f1 = bert_score.score([CANDS[i] for i in keep], [REFS[i] for i in keep], model_type=str(tiny_bert),
                                num_layers=2, batch_size=64)
    for i, f in zip(keep, f1.tolist()):
        assert got[i] == pytest.approx(f, abs=1e-6)


# --- maxima, order, batching, empty texts ---------------------------------------------------


def test_identical_texts_give_the_maximum(tiny_bert):
    same = [c for c in CANDS if c]
    assert scorers.Bleu().compute(same, same)["bleu"] == pytest.approx([100.0] * len(same))
    rouge = scorers.Rouge().compute(same, same)
    for key in scorers.Rouge.names:
        # ROUGE-2 of a one-word text has no bigram to match: 0 by definition
        want = [0.0 if key == "rouge2" and len(t.split()) < 2 else 1.0 for t in same]
        assert rouge[key] == pytest.approx(want), key
    bs = scorers.BertScore(tiny_bert, num_layers=2).compute(same, same)["bertscore"]
    assert bs == pytest.approx([1.0] * len(same), abs=1e-5)


def test_loglikelihoods_are_at_most_zero(tiny_bart, tiny_llama):
    assert all(v <= 0 for v in _bart(tiny_bart).compute(CANDS, CANDS)["bartscore"])
    assert all(v <= 0 for v in _clm(tiny_llama).compute(CANDS, CANDS)["clm_logprob"])


def _all_metrics(tiny_bart, tiny_llama, tiny_bert, batch_size):
    return [_bart(tiny_bart, batch_size=batch_size), _clm(tiny_llama, batch_size=batch_size),
            scorers.BertScore(tiny_bert, num_layers=2, batch_size=batch_size), scorers.Bleu(), scorers.Rouge()]


def _scores(metrics, cands, refs):
    out = {}
    for m in metrics:
        out.update(m.compute(cands, refs))
    return out


def test_input_order_does_not_change_scores(tiny_bart, tiny_llama, tiny_bert):
    metrics = _all_metrics(tiny_bart, tiny_llama, tiny_bert, batch_size=3)
    base = _scores(metrics, CANDS, REFS)
    perm = [3, 0, 5, 1, 4, 2]
    shuffled = _scores(metrics, [CANDS[i] for i in perm], [REFS[i] for i in perm])
    for key, vals in base.items():
        assert [shuffled[key][perm.index(i)] for i in range(len(perm))] == pytest.approx(vals, abs=1e-5), key


def test_batching_changes_scores_less_than_1e5(tiny_bart, tiny_llama, tiny_bert):
    one = _scores(_all_metrics(tiny_bart, tiny_llama, tiny_bert, batch_size=1), CANDS, REFS)
    many = _scores(_all_metrics(tiny_bart, tiny_llama, tiny_bert, batch_size=5), CANDS, REFS)
    for key in one:
        assert max(abs(a - b) for a, b in zip(one[key], many[key])) < 1e-5, key


def test_empty_texts_have_defined_finite_scores(tiny_bart, tiny_llama, tiny_bert):
    cands, refs = ["", "some text", "", "   "], ["a reference", "", "", "x"]
    out = _scores(_all_metrics(tiny_bart, tiny_llama, tiny_bert, batch_size=2), cands, refs)
    for key in ("bleu", "rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore"):
        assert out[key] == [0.0] * 4, key
    for key in ("bartscore", "clm_logprob"):
        assert all(math.isfinite(v) and v < 0 for v in out[key]), key


def test_truncation_keeps_the_first_tokens_and_counts(tiny_bart, tiny_llama):
    long_c = " ".join(f"word{i}" for i in range(60))
    long_r = " ".join(f"ref{i}" for i in range(60))
    clm = _clm(tiny_llama, max_candidate_tokens=10, max_reference_tokens=12)
    got = clm.compute([long_c, "short"], [long_r, "short"])["clm_logprob"]
    assert clm.counts == {"truncated_candidate": 1, "truncated_reference": 1}
    # the same score as the texts cut by hand to their first tokens
    tok = clm.tok
    cut_c = tok.decode(tok(long_c, add_special_tokens=False)["input_ids"][:10])
    cut_r = tok.decode(tok(long_r, add_special_tokens=False)["input_ids"][:12])
    plain = _clm(tiny_llama)
    assert got[0] == pytest.approx(plain.compute([cut_c], [cut_r])["clm_logprob"][0], abs=1e-5)
    assert plain.counts == {}

    bart = _bart(tiny_bart, max_candidate_tokens=8, max_reference_tokens=8)
    bart.compute([long_c, "short"], [long_r, "short"])
    assert bart.counts == {"truncated_candidate": 1, "truncated_reference": 1}


def test_causal_template_must_hold_the_candidate(tiny_llama):
    with pytest.raises(LLMBlendError, match="candidate"):
        scorers.CausalLogLikelihood("clm_logprob", tiny_llama, "no placeholder")
