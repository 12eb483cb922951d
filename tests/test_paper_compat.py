"""The `paper` and `mixinstruct` profiles against the paper-era reference code (yuchenlin/LLM-Blender,
4594f09; docs/paper-mapping.md). Each expectation is written from the reference's code, case by case:
get_mixinstruct.py for the data, pair_ranker/collator.py for the cuts, pair_ranker/loss.py for SimCLS,
train_ranker.sh for the epoch choice, gen_fuser/fuse_infer.py + model_utils.py for the fuser's input.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import paper_fixture as F
from llmblend.config import load_config, setting
from llmblend.data.prepare import prepare_splits
from llmblend.data.sources.paper import load_dolly, load_gpt4all, load_sharegpt, sharegpt_exchange
from llmblend.errors import ConfigError, InputError, LLMBlendError
from llmblend.ranker import infer
from llmblend.ranker.data import attach_signal, load_examples, sources
from llmblend.ranker.model import PairEncoder, build_ranker, load_ranker
from test_ranker import tiny_backbone, tiny_cfg, write_split  # noqa: F401  (tiny_backbone: a fixture)

ROOT = Path(__file__).resolve().parents[1]
REF = "reference-4594f09"
# 4594f09:llm_blender/download_dataset/get_mixinstruct.py, the ShareGPT `ban_words`, as written there
REFERENCE_BAN_WORDS = ["i'm sorry", "i'am here", "i'am ready", "sure", "okay", "ok", "yes", "no", "yeah", "nope",
                       "yep", "yup", "no problem", "no worries", "how can i", "of course"]
CTX = {"seed": 42, "mirror": None}


def conv(*turns, cid="c"):
    return {"id": cid, "conversations": [{"from": f, "value": v} for f, v in turns]}


def write_json(path, obj):
    path.write_text(json.dumps(obj))
    return path


# ------------------------------------------------------------------ ShareGPT (point 1: fixed outright)

@pytest.mark.parametrize("turns, expected", [
    ([("human", "Q"), ("gpt", "A")], ("", "Q", "A")),
    # the case: the reference answer is the gpt turn after the prompt, the first gpt turn is context
    ([("gpt", "Context"), ("human", "Tell me about lakes."), ("gpt", "Lakes are")],
     ("Context", "Tell me about lakes.", "Lakes are")),
    ([("system", "Be brief."), ("human", "Q"), ("gpt", "A")], ("Be brief.", "Q", "A")),
    ([("human", "Q"), ("gpt", "A"), ("human", "Q2"), ("gpt", "A2")], ("", "Q", "A")),  # the first exchange only
    ([("human", "Q")], "sharegpt_one_turn"),
    ([], "sharegpt_one_turn"),
    ([("gpt", "Context"), ("human", "Q")], "sharegpt_other_shape"),  # two turns, not human -> gpt
    ([("human", "Q"), ("human", "Q2"), ("gpt", "A")], "sharegpt_other_shape"),
    ([("gpt", "C"), ("gpt", "C2"), ("human", "Q")], "sharegpt_other_shape"),
    ([("gpt", "C"), ("human", "Q"), ("human", "Q2")], "sharegpt_other_shape"),
    ([("bing", "C"), ("human", "Q"), ("gpt", "A")], "sharegpt_other_shape"),  # only gpt or system as context
])
def test_sharegpt_conversation_shapes(turns, expected):
    got = sharegpt_exchange([{"from": f, "value": v} for f, v in turns], "f[0]")
    assert got == expected


def test_sharegpt_malformed_turn_is_located():
    with pytest.raises(InputError, match=r"f\[3\].*conversations\[1\]"):
        sharegpt_exchange([{"from": "human", "value": "Q"}, {"from": "gpt"}], "f[3]")


@pytest.mark.parametrize("word", REFERENCE_BAN_WORDS)
def test_each_reference_ban_word_drops_the_answer(tmp_path, word):
    p = write_json(tmp_path / "s.json", [conv(("human", "Q"), ("gpt", f"Lakes {word.upper()} hold water"))])
    assert [r for r, _ in load_sharegpt({"path": str(p)}, CTX)] == [{"_drop": "sharegpt_ban_word"}]


@pytest.mark.parametrize("answer", ["As an AI I can help with lakes", "I can't help with that", "Lakes hold water"])
def test_answers_without_a_reference_ban_word_are_kept(tmp_path, answer):
    # "as an ai" and "i can't" were on the project's list, not the reference's
    p = write_json(tmp_path / "s.json", [conv(("human", "Q"), ("gpt", answer))])
    assert [r["output"] for r, _ in load_sharegpt({"path": str(p)}, CTX)] == [answer]


def test_sharegpt_draw_is_a_seeded_shuffle_then_the_first_n(tmp_path):
    convs = [conv(("human", f"Q{i}"), ("gpt", f"Lakes {i}"), cid=f"k{i}") for i in range(8)]
    convs.insert(3, conv(("human", "Q"), ("gpt", "Yes"), cid="banned"))  # dropped before the draw
    p = write_json(tmp_path / "s.json", convs)
    out = [r for r, _ in load_sharegpt({"path": str(p), "sample": 3}, CTX)]
    # get_mixinstruct.py: random.seed(42); random.shuffle(DS_data); DS_data[:sharegpt_num]
    ds_data = [f"sharegpt/k{i}" for i in range(8)]
    random.seed(42)
    random.shuffle(ds_data)
    assert [r["id"] for r in out if "id" in r] == ds_data[:3]
    assert sum(r.get("_drop") == "sharegpt_beyond_sample" for r in out) == 5
    assert sum(r.get("_drop") == "sharegpt_ban_word" for r in out) == 1


def test_gpt4all_and_dolly_ids_count_per_source_in_file_order(tmp_path):
    g = tmp_path / "g.jsonl"
    g.write_text("".join(json.dumps({"prompt": f"p{i}", "response": f"r{i}", "source": s}) + "\n" for i, s in
                         enumerate(["unified_chip2", "laion/unified_chip2", "other", "unified_chip2"])))
    got = {r["input"]: r["id"] for r, _ in load_gpt4all({"path": str(g)}, CTX) if "id" in r}
    # x['id'] = x['source'] + '/' + str(source_nums.get(x['source'], 0)), counted before the shuffle
    assert got == {"p0": "unified_chip2/0", "p1": "laion/unified_chip2/0", "p3": "unified_chip2/1"}
    d = tmp_path / "d.jsonl"
    d.write_text("".join(json.dumps({"instruction": f"i{i}", "input": "", "output": f"o{i}", "category": c}) + "\n"
                         for i, c in enumerate(["open_qa", "closed_qa", "open_qa"])))
    got = {r["instruction"]: r["id"] for r, _ in load_dolly({"path": str(d)}, CTX)}
    assert got == {"i0": "dolly_15k/open_qa/0", "i1": "dolly_15k/closed_qa/0", "i2": "dolly_15k/open_qa/1"}


def test_dolly_cap_keeps_the_first_n_of_the_seeded_shuffle(tmp_path):
    d = tmp_path / "d.jsonl"
    d.write_text("".join(json.dumps({"instruction": f"i{i}", "input": "", "output": "o", "category": "c"}) + "\n"
                         for i in range(10)))
    out = [r for r, _ in load_dolly({"path": str(d), "sample": 4}, CTX)]
    ids = [f"dolly_15k/c/{i}" for i in range(10)]
    random.seed(42)
    random.shuffle(ids)
    assert [r["id"] for r in out if "id" in r] == ids[:4]
    assert sum(r.get("_drop") == "dolly_beyond_sample" for r in out) == 6


# ------------------------------------------------------------------ data.compat (point 2)

def fixture_cfg(tmp_path, compat=REF, order=("gpt4all", "dolly", "alpaca_gpt4", "sharegpt"), samples=None):
    paths = F.write_sources(tmp_path / "src")
    tok = F.make_tokenizer_dir(tmp_path / "tok")
    data = {"sources": F.sources(paths, order, samples or {}), "compat": compat,
            "filters": dict(F.PAPER_FILTERS, length_unit=f"tokenizer:dir:{tok}"),
            "split": {"mode": "shuffle", "sizes": {"val": 2, "test": 2, "train": "rest"}}}
    p = tmp_path / "profile.yaml"
    p.write_text(yaml.safe_dump({"run": "t", "data": data}))
    return load_config([str(ROOT / "params.yaml"), str(p)])


def read_ids(path):
    return [json.loads(line)["id"] for line in open(path, encoding="utf-8")]


# the fixture's rows in file order (paper_fixture.py), and what the reference keeps of them with the
# paper's bounds: 10 < len(tokenizer.encode(output)) < 128 and 5 <= len(encode(instruction + input)) < 128,
# encode() adding <s>; prompts repeated under other ids stay (its dedupe key has the id)
FIXTURE_ROWS = {
    "gpt4all": ["unified_chip2/0", "laion/unified_chip2/0", "unified_chip2/1", "unified_chip2/2", "unified_chip2/3",
                "unified_chip2/4", "unified_chip2/5", "laion/unified_chip2/1", "laion/unified_chip2/2",
                "unified_chip2/6", "unified_chip2/7"],
    "dolly": ["dolly_15k/open_qa/0", "dolly_15k/closed_qa/0", "dolly_15k/open_qa/1", "dolly_15k/brainstorming/0",
              "dolly_15k/closed_qa/1", "dolly_15k/general_qa/0", "dolly_15k/open_qa/2", "dolly_15k/closed_qa/2"],
    "alpaca_gpt4": [f"itwgpt4/{i}" for i in range(7)],
    "sharegpt": ["sharegpt/c0", "sharegpt/c1", "sharegpt/c2", "sharegpt/c6", "sharegpt/c9", "sharegpt/c10"],
}
FIXTURE_DROPPED = {
    "unified_chip2/2": "output_too_short",  # 10 tokens with <s>: not > 10
    "unified_chip2/5": "output_too_long",  # 128: not < 128
    "laion/unified_chip2/2": "prompt_too_long",  # 128
    "dolly_15k/brainstorming/0": "prompt_too_short",  # 4: not >= 5
    "itwgpt4/4": "output_too_short",
    "dolly_15k/closed_qa/2": "prompt_too_short",  # "lakes holdfresh water": 4 with <s>
    "itwgpt4/6": "output_too_short",  # the output is checked first
}


def test_compat_filters_and_split_follow_get_mixinstruct(tmp_path):
    cfg = fixture_cfg(tmp_path)
    m = prepare_splits(cfg, tmp_path / "out")
    kept = {i for name in ("train", "val", "test") for i in read_ids(tmp_path / "out" / f"{name}.jsonl")}
    assert kept == {i for ids in FIXTURE_ROWS.values() for i in ids} - set(FIXTURE_DROPPED)
    assert "laion/unified_chip2/0" in kept and "dolly_15k/open_qa/1" in kept  # a repeated prompt is kept
    reasons = {"output_too_short": 3, "output_too_long": 1, "prompt_too_long": 1, "prompt_too_short": 2,
               "gpt4all_other_source": 1, "sharegpt_ban_word": 3, "sharegpt_one_turn": 1, "sharegpt_other_shape": 1}
    assert m["dropped"] == reasons
    # the split: each source shuffled (seed 42) in mixing order, the length filters, one more shuffle
    mix = []
    for name in ("gpt4all", "dolly", "alpaca_gpt4", "sharegpt"):
        ds_data = list(FIXTURE_ROWS[name])
        random.seed(42)
        random.shuffle(ds_data)
        mix.extend(ds_data)
    dedup_mix_data = [i for i in mix if i not in FIXTURE_DROPPED]
    random.seed(42)
    random.shuffle(dedup_mix_data)
    assert read_ids(tmp_path / "out" / "val.jsonl") == dedup_mix_data[:2]
    assert read_ids(tmp_path / "out" / "test.jsonl") == dedup_mix_data[2:4]
    assert read_ids(tmp_path / "out" / "train.jsonl") == dedup_mix_data[4:]


def test_project_rules_differ_on_the_same_fixture(tmp_path):
    """The project default: repeated prompts dropped, lengths without <s> (so the edges move by one)."""
    m = prepare_splits(fixture_cfg(tmp_path, compat="project"), tmp_path / "out")
    kept = {i for name in ("train", "val", "test") for i in read_ids(tmp_path / "out" / f"{name}.jsonl")}
    assert m["dropped"]["duplicate_content"] == 3
    assert "unified_chip2/5" in kept and "unified_chip2/3" not in kept  # 127 output words kept, 10 dropped


def test_compat_drops_a_record_repeated_whole_and_refuses_a_reused_id(tmp_path):
    same = conv(("human", F.text(6)), ("gpt", F.text(20)), cid="r1")
    p = write_json(tmp_path / "s.json", [same, same])
    data = {"sources": [{"type": "sharegpt", "path": str(p)}], "compat": REF,
            "split": {"sizes": {"val": 0, "test": 0, "train": "rest"}}}
    cfg_file = tmp_path / "p.yaml"
    cfg_file.write_text(yaml.safe_dump({"run": "t", "data": data}))
    m = prepare_splits(load_config([str(ROOT / "params.yaml"), str(cfg_file)]), tmp_path / "out")
    assert m["dropped"]["duplicate_record"] == 1 and m["kept_after_filters"] == 1
    write_json(p, [same, conv(("human", F.text(6)), ("gpt", F.text(21)), cid="r1")])
    with pytest.raises(InputError, match="duplicated id 'sharegpt/r1'"):
        prepare_splits(load_config([str(ROOT / "params.yaml"), str(cfg_file)]), tmp_path / "out2")


def test_compat_needs_the_reference_mixing_order(tmp_path):
    cfg = fixture_cfg(tmp_path, order=("alpaca_gpt4", "dolly", "gpt4all", "sharegpt"))
    with pytest.raises(ConfigError, match="gpt4all, dolly, alpaca_gpt4, sharegpt"):
        prepare_splits(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ collator cuts and source join (points 3, 4)

def test_length_sharing_none_cuts_every_candidate_flat(tiny_backbone):  # noqa: F811
    """4594f09 CrossCompareCollator: encode_texts(source, source_maxlength) and every candidate with
    encode_batch_text(..., candidate_maxlength), [CLS]/[SEP] included; a short source lends nothing."""
    long_text = " ".join(["cat"] * 100)
    flat, tok = build_ranker("pairranker", tiny_backbone, "t", source_max_len=32, candidate_max_len=8,
                             length_sharing="none")
    shared, _ = build_ranker("pairranker", tiny_backbone, "t", source_max_len=32, candidate_max_len=8)
    for model, expected in ((flat, 8), (shared, 8 + (32 - 4) // 2)):
        enc = PairEncoder(tok, model.config)
        src = enc.source("hi")  # [CLS] <|source|> hi [SEP]
        assert len(src) == 4
        assert [len(c) for c in enc.candidates([long_text, "a cat"], len(src))] == [expected, 5]
    assert len(PairEncoder(tok, flat.config).source(long_text)) == 32


def test_ranker_input_settings_travel_with_the_model(tiny_backbone, tmp_path):  # noqa: F811
    model, tok = build_ranker("pairranker", tiny_backbone, "t", length_sharing="none", source_join="concat")
    model.save_pretrained(tmp_path / "a", tok)
    again, _ = load_ranker(tmp_path / "a")
    assert (again.config.length_sharing, again.config.source_join) == ("none", "concat")
    # one trained with the defaults keeps the config.json it had before the settings existed
    model, tok = build_ranker("pairranker", tiny_backbone, "t")
    model.save_pretrained(tmp_path / "b", tok)
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert "length_sharing" not in saved and "source_join" not in saved
    saved["length_sharing"] = "per_batch"
    (tmp_path / "b" / "config.json").write_text(json.dumps(saved))
    with pytest.raises(LLMBlendError, match="config.json.*length_sharing"):
        load_ranker(tmp_path / "b")


def test_source_join_concat_is_instruction_plus_input(tmp_path):
    rec = {"id": "x", "instruction": "Translate to French:", "input": "good morning", "output": "bonjour",
           "candidates": [{"text": "bonjour"}]}
    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps(rec) + "\n")
    # pair_ranker/data.py: source = item['instruction'] + item['input']
    assert load_examples(p, (), "concat")[0].source == "Translate to French:good morning"
    assert load_examples(p)[0].source == "Translate to French:\ngood morning"
    assert sources(load_examples(p), "concat") == ["Translate to French:good morning"]


def test_imported_checkpoint_reads_as_it_was_trained_and_ranking_follows_it(tiny_backbone, tmp_path):  # noqa: F811
    from llmblend.ranker.reference import export_reference_pairranker, import_reference_pairranker
    from llmblend.ranker.stage import rank_split

    torch.manual_seed(3)
    model, tok = build_ranker("pairranker", tiny_backbone, "t")
    ref = export_reference_pairranker(model, tiny_backbone, tmp_path / "ref")
    info = import_reference_pairranker(ref, tiny_backbone, "t", tmp_path / "ours")
    assert (info["length_sharing"], info["source_join"]) == ("none", "concat")
    ranker, tok2 = load_ranker(tmp_path / "ours")
    assert (ranker.config.length_sharing, ranker.config.source_join) == ("none", "concat")
    # joined with no separator, "the" + "blue" reads as one word
    rows = [{"id": f"e{i}", "instruction": f"question {i} about the", "input": "blue tree", "output": "r",
             "candidates": [{"text": t} for t in ("a cat", "the blue house on a mat", "yes")]} for i in range(3)]
    p = tmp_path / "test.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rank_split(tiny_cfg(), ["pairranker"], p, tmp_path / "rk", "test", {"pairranker": str(tmp_path / "ours")})
    got = [json.loads(line)["scores"] for line in open(tmp_path / "rk" / "pairranker" / "test.jsonl")]
    cands = [[c["text"] for c in r["candidates"]] for r in rows]
    concat = [infer.max_logits(m).tolist() for m in infer.full_matrices(
        ranker, tok2, [r["instruction"] + r["input"] for r in rows], cands)]
    newline = [infer.max_logits(m).tolist() for m in infer.full_matrices(
        ranker, tok2, [r["instruction"] + "\n" + r["input"] for r in rows], cands)]
    assert np.abs(np.array(got) - np.round(concat, 6)).max() < 1e-6
    assert np.abs(np.array(got) - np.round(newline, 6)).max() > 1e-4


# ------------------------------------------------------------------ checkpoint selection (point 6)

def test_select_by_bubble_validates_on_the_bubble_pick(tiny_backbone, tmp_path, monkeypatch):  # noqa: F811
    """train_ranker.sh trains with inference_mode=bubble: dev_score is the metric of the bubble pick."""
    from llmblend.ranker import train as train_mod
    from llmblend.ranker.stage import train_ranker

    calls, real_bubble = [], infer.bubble

    def spy(*a, **kw):
        out = real_bubble(*a, **kw)
        calls.append((kw["seed"], out[0]))
        return out

    monkeypatch.setattr(train_mod.infer, "bubble", spy)
    monkeypatch.setattr(train_mod.infer, "full_matrices", lambda *a, **k: pytest.fail("MaxLogits was computed"))
    tr = write_split(tmp_path / "train.jsonl", 8)
    va = write_split(tmp_path / "val.jsonl", 4, start=100)
    cfg = tiny_cfg(epochs=2)
    cfg["ranker"]["select_by"] = "bubble"
    rep = train_ranker(cfg, "pairranker", tr, va, tiny_backbone, tmp_path / "m", tmp_path / "c.csv")
    val_ex = attach_signal(load_examples(va, ["clm_logprob"]), cfg["ranker"]["signal"])
    assert [c[0] for c in calls] == [cfg["seed"] + 2] * 2  # the same seeded orders every epoch
    assert [h["val_score"] for h in rep["history"]] == [train_mod.val_score(val_ex, s) for _, s in calls]


def test_select_by_bubble_and_val_pairs_cannot_both_choose(tiny_backbone, tmp_path):  # noqa: F811
    from llmblend.ranker.stage import train_ranker

    cfg = tiny_cfg(epochs=1, val_pairs=2)
    cfg["ranker"]["select_by"] = "bubble"
    with pytest.raises(ValueError, match="select_by bubble and ranker.train.val_pairs"):
        train_ranker(cfg, "pairranker", write_split(tmp_path / "t.jsonl", 4), write_split(tmp_path / "v.jsonl", 2),
                     tiny_backbone, tmp_path / "m", tmp_path / "c.csv")


# ------------------------------------------------------------------ SimCLS (point 7)

def test_simcls_reference_loss_by_hand():
    """loss.py simcls_loss: MarginRankingLoss(0)(target_sim, sim) + sum over sorted i < j of
    MarginRankingLoss((j - i) / n)(sim_i, sim_j): max(0, -(x1 - x2) + margin) each."""
    from llmblend.ranker.train import simcls_reference_loss

    cos, gold, signal = torch.tensor([0.9, 0.5, 0.7]), torch.tensor(0.6), torch.tensor([3.0, 1.0, 2.0])
    # by signal: 0.9 (i=0), 0.7 (i=1), 0.5 (i=2); n = 3
    pairs = max(0, 0.7 - 0.9 + 1 / 3) + max(0, 0.5 - 0.9 + 2 / 3) + max(0, 0.5 - 0.7 + 1 / 3)
    gold_term = (max(0, 0.9 - 0.6) + max(0, 0.5 - 0.6) + max(0, 0.7 - 0.6)) / 3
    assert float(simcls_reference_loss(cos, gold, signal)) == pytest.approx(pairs + gold_term, abs=1e-6)


def test_simcls_uniform_subsampling_keeps_every_third_by_signal():
    """sub_sampling('uniform', ratio 0.3): sorted_idx[:, ::int(n / (n * 0.3))]: 12 candidates keep 4."""
    from llmblend.ranker.train import uniform_subsample

    signal = [0.1, 0.9, 0.5, 0.3, 1.1, 0.7, 0.2, 0.8, 0.0, 0.6, 1.0, 0.4]
    by_signal = sorted(range(12), key=lambda i: -signal[i])  # [4, 10, 1, 7, 5, 9, 2, 11, 3, 6, 0, 8]
    assert uniform_subsample(signal) == [by_signal[0], by_signal[3], by_signal[6], by_signal[9]] == [4, 7, 2, 6]


def test_simcls_reference_variant_trains_with_the_gold_answer(tiny_backbone, tmp_path):  # noqa: F811
    from llmblend.ranker.train import Batcher

    model, tok = build_ranker("simcls", tiny_backbone, "t", source_max_len=32, candidate_max_len=24)
    examples = attach_signal(load_examples(write_split(tmp_path / "s.jsonl", 3, cands=6), ["clm_logprob"]),
                             tiny_cfg()["ranker"]["signal"])
    cfg = {"simcls_loss": REF, "simcls_margin": 0.01, "pairs_per_input": 5}
    loss = Batcher(model.config, tok, cfg, seed=0).simcls_loss(model, examples, "cpu")
    assert loss is not None and loss.requires_grad and float(loss.detach()) > 0
    examples[1].reference = None
    with pytest.raises(ValueError, match="t/1.*reference answer"):
        Batcher(model.config, tok, cfg, seed=0).simcls_loss(model, examples, "cpu")


# ------------------------------------------------------------------ GenFuser input (point 5)

def t5_like_tokenizer():
    """Word-level, with T5's habit of appending </s> when special tokens are added."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"<pad>": 0, "</s>": 1, "<unk>": 2}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                   additional_special_tokens=[f"<extra_id_{i}>" for i in range(3)])


def test_fuse_infer_input_for_the_released_fuser():
    from llmblend.fuser.api import FUSE_INFER, Fuser
    from llmblend.fuser.prompt import PromptSpec

    tok = t5_like_tokenizer()
    args = (["List two colours.\nBe brief."], [""], [["red\nblue", "red, blue"]])
    ref = Fuser(torch.nn.Identity(), tok, "seq2seq", PromptSpec(family="seq2seq"), input_style=FUSE_INFER)
    # GenFuserDataset's layout, then fuse_infer.py's clean_newlines: "\n" -> " </s> "
    assert ref.prompts(*args) == [
        "Instruction: List two colours. </s> Be brief.</s>Input: </s>Candidate 0: <extra_id_0>:red </s> blue"
        "</s>Candidate 1: <extra_id_1>:red, blue</s>Summarize candidates into a better one for the given instruction:"]
    ids = ref.encode(ref.prompts(*args))["input_ids"][0].tolist()
    assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 7  # 4 joins + 2 newlines + the added one
    ours = Fuser(torch.nn.Identity(), tok, "seq2seq", PromptSpec(family="seq2seq"))
    assert "\n" in ours.prompts(*args)[0] and ours.encode(ours.prompts(*args))["input_ids"][0].tolist()[-1] != 1


def test_reference_input_is_for_a_released_fuser_only(tmp_path, monkeypatch):
    import llmblend.fuser.api as api

    d = tmp_path / "trained"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "llmblend_fuser.json").write_text(json.dumps({"prompt": {"family": "seq2seq"}}))
    monkeypatch.setattr(api, "load_model", lambda path, dtype=None: (torch.nn.Identity(), t5_like_tokenizer(),
                                                                        "seq2seq"))
    assert api.load_fuser(f"dir:{d}").input_style == "project"
    with pytest.raises(LLMBlendError, match="reference_input fuse_infer-4594f09 is for a released fuser"):
        api.load_fuser(f"dir:{d}", reference_input="fuse_infer-4594f09")
    (d / "llmblend_fuser.json").unlink()  # a released fuser: no llmblend_fuser.json
    assert api.load_fuser(f"dir:{d}", reference_input="fuse_infer-4594f09").input_style == "fuse_infer-4594f09"
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({"run": "t", "fuser": {"reference_input": "fuse_infer-4594f09"}}))
    with pytest.raises(ConfigError, match="pretrained"):
        load_config([str(ROOT / "params.yaml"), str(p)])


# ------------------------------------------------------------------ the profiles and the mapping (point 8)

PAPER_ERA = {"data.compat": REF, "ranker.length_sharing": "none", "ranker.source_join": "concat",
             "ranker.select_by": "bubble", "ranker.train.simcls_loss": REF}


@pytest.mark.parametrize("profile", ["paper", "mixinstruct"])
def test_paper_profiles_select_the_paper_era_settings(profile):
    cfg = load_config([str(ROOT / "params.yaml"), str(ROOT / "config" / f"{profile}.yaml")])
    want = dict(PAPER_ERA)
    if profile == "mixinstruct":  # the released split is not rebuilt; the released fuser reads fuse_infer's input
        want.update({"data.compat": "project", "fuser.reference_input": "fuse_infer-4594f09"})
    assert {k: setting(cfg, k) for k in want} == want


@pytest.mark.parametrize("profile", [None, "ci", "alpaca_eval"])
def test_other_profiles_keep_the_project_defaults(profile):
    files = [str(ROOT / "params.yaml")] + ([str(ROOT / "config" / f"{profile}.yaml")] if profile else [])
    cfg = load_config(files)
    assert {k: setting(cfg, k) for k in [*PAPER_ERA, "fuser.reference_input"]} == {
        "data.compat": "project", "ranker.length_sharing": "per_example", "ranker.source_join": "newline",
        "ranker.select_by": "max_logits", "ranker.train.simcls_loss": "project", "fuser.reference_input": "project"}


def test_paper_mapping_names_every_setting():
    text = (ROOT / "docs" / "paper-mapping.md").read_text(encoding="utf-8")
    for key, value in [*PAPER_ERA.items(), ("fuser.reference_input", "fuse_infer-4594f09")]:
        assert f"`{key}" in text and value in text, key
    assert "docs/paper-mapping.md" in (ROOT / "src/llmblend/data/sources/paper.py").read_text()
