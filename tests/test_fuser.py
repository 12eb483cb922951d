"""GenFuser: data builder (top-K, budget, bad input), tiny fusers of both families trained for a few
steps (the loss falls, generation round-trips after save and load), the fused-output layout, resume."""

from __future__ import annotations

import csv
import json
import logging

import pytest
import torch

from llmblend.errors import ConfigError, InputError
from llmblend.fuser import load_fuser
from llmblend.fuser.data import build_fuser_data
from llmblend.fuser.infer import fuse_split
from llmblend.fuser.model import encode_example
from llmblend.fuser.prompt import ELLIPSIS, PromptSpec, clip_tokens, format_prompt, ranks_from_scores, top_k_indices
from llmblend.fuser.train import train_fuser
from llmblend.io import read_jsonl, write_jsonl

# four examples; the last has an empty reference, so a fuser that learnt it answers with nothing
EXAMPLES = [
    ("What is 3 + 5?", "", ["eight", "3 + 5 = 8.", "nine"], "3 + 5 = 8."),
    ("Name the capital of France.", "", ["Lyon", "Paris is the capital.", "Paris"], "Paris is the capital."),
    ("List two colours.", "", ["red, blue", "red"], "red, blue"),
    ("Rewrite in lowercase.", "The Cat Sat.", [], ""),
]
CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def make_tokenizer(family: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "</s>", "<extra_id_0>", "<extra_id_1>", "<extra_id_2>"] if family == "seq2seq" \
        else ["<pad>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [" ".join([i, x, *c, t]) for i, x, c, t in EXAMPLES] * 5 + ["Instruction Input Candidate Fuse Summarize"]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=special,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    eos = "</s>" if family == "seq2seq" else "<|end|>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token="<pad>")
    if family == "causal_lm":
        fast.chat_template = CHAT
        # CTranslate2's loader needs both named (fuser.backend ctranslate2); neither is in any text here
        fast.bos_token, fast.unk_token = eos, "<pad>"
    return fast


def make_model_dir(tmp_path, family: str):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, LlamaConfig, T5Config

    tok = make_tokenizer(family)
    torch.manual_seed(0)
    ids = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    if family == "seq2seq":
        cfg = T5Config(d_model=64, d_ff=128, d_kv=16, num_layers=2, num_decoder_layers=2, num_heads=4,
                       decoder_start_token_id=tok.pad_token_id, dropout_rate=0.0, **ids)
        model = AutoModelForSeq2SeqLM.from_config(cfg)
    else:
        cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=tok.eos_token_id, **ids)
        model = AutoModelForCausalLM.from_config(cfg)
    out = tmp_path / f"base-{family}"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def split_records(ids_prefix="t"):
    rows = []
    for n, (instruction, input_text, cands, ref) in enumerate(EXAMPLES):
        rows.append({"id": f"{ids_prefix}/{n}", "instruction": instruction, "input": input_text, "output": ref,
                     "source": "test", "rubric": [{"check": "contains", "value": "x"}],
                     "candidates": [{"model": f"m{j}", "decoding_method": "greedy", "text": t, "n_tokens": 1,
                                     "flags": [], "scores": {"bleu": float(len(t))}} for j, t in enumerate(cands)]})
    return rows


def rankings_for(rows):
    # best = the candidate that equals the reference, then the others in order
    out = []
    for r in rows:
        texts = [c["text"] for c in r["candidates"]]
        order = sorted(range(len(texts)), key=lambda j: (texts[j] != r["output"], j))
        ranks = [0] * len(texts)
        for pos, j in enumerate(order):
            ranks[j] = pos + 1
        out.append({"id": r["id"], "ranks": ranks, "scores": [-float(x) for x in ranks], "n_forward": 6})
    return out


@pytest.fixture
def files(tmp_path):
    rows = split_records()
    write_jsonl(tmp_path / "split.jsonl", rows)
    write_jsonl(tmp_path / "ranks.jsonl", rankings_for(rows))
    return tmp_path / "split.jsonl", tmp_path / "ranks.jsonl"


# --- prompt and data ------------------------------------------------------------------------

def test_top_k_and_ranks_from_scores():
    assert top_k_indices([3, 1, 2, 1], 2) == [1, 3]  # ties keep candidate order
    assert ranks_from_scores([0.1, 0.9, 0.5, 0.9]) == [4, 1, 3, 1]
    assert top_k_indices([2, 1], 3) == [1, 0]


def test_budget_cuts_long_candidates_and_marks_them():
    tok = make_tokenizer("causal_lm")
    text, n, cut = clip_tokens("Paris is the capital. " * 20, tok, 8)
    assert cut and n > 8 and text.endswith(ELLIPSIS)
    assert len(tok(text[: -len(ELLIPSIS)], add_special_tokens=False)["input_ids"]) <= 8
    assert clip_tokens("red", tok, 8) == ("red", len(tok("red", add_special_tokens=False)["input_ids"]), False)


def test_seq2seq_prompt_uses_the_paper_layout():
    tok = make_tokenizer("seq2seq")
    spec = PromptSpec(family="seq2seq", top_k=2)
    text, _ = format_prompt(spec, "Do it.", "x", ["a", "b"], tok)
    assert text == ("Instruction: Do it.</s>Input: x</s>Candidate 0: <extra_id_0>:a</s>Candidate 1: <extra_id_1>:b</s>"
                    "Summarize candidates into a better one for the given instruction:")


def test_causal_labels_cover_only_the_answer():
    tok = make_tokenizer("causal_lm")
    ex = encode_example(tok, "causal_lm", "Instruction: hi", "red, blue", 64)
    answer = [t for t in ex["labels"] if t != -100]
    assert answer[-1] == tok.eos_token_id
    assert tok.decode(answer[:-1]) == "red, blue"
    n_prompt = ex["labels"].count(-100)
    assert n_prompt > 0 and ex["input_ids"][n_prompt:] == answer


@pytest.mark.parametrize("family", ["causal_lm", "seq2seq"])
def test_training_batches_project_only_labelled_positions_with_the_same_loss(tmp_path, family):
    """The causal fuser's training batch keeps the vocabulary projection from the batch's earliest
    answer on; its loss is the full batch's (every label counted, none shifted)."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, DataCollatorForSeq2Seq

    from llmblend.fuser.train import LabelledPositionsCollator

    base = make_model_dir(tmp_path, family)
    tok = make_tokenizer(family)
    tok.padding_side = "right"
    model = (AutoModelForCausalLM if family == "causal_lm" else AutoModelForSeq2SeqLM).from_pretrained(base).eval()
    # prompts of three lengths, answers of three lengths: the earliest answer is not the longest row's
    feats = [encode_example(tok, family, f"Instruction: {i}", t, 64)
             for i, t in [("What is 3 + 5? " * 3, "eight"), ("List two colours.", "red, blue and then some more"),
                          ("Name the capital of France. " * 2, "Paris is the capital.")]]
    full = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)(feats)
    cut = LabelledPositionsCollator(tok, model, family)(feats)
    with torch.no_grad():
        want = model(**full).loss
        out = model(**cut)
    assert torch.allclose(out.loss, want, atol=1e-6), (out.loss, want)
    if family == "seq2seq":
        assert "logits_to_keep" not in cut and torch.equal(cut["labels"], full["labels"])
        return
    width = full["input_ids"].shape[1]
    first = min(f["labels"].index(next(t for t in f["labels"] if t != -100)) for f in feats)
    assert cut["logits_to_keep"] == width - first + 1 < width
    assert out.logits.shape[1] == cut["logits_to_keep"] == cut["labels"].shape[1]
    assert torch.equal(cut["labels"], full["labels"][:, first - 1:])


def test_build_data_with_rankings_counts_fewer_than_k(tmp_path, files):
    split, ranks = files
    tok = make_tokenizer("causal_lm")
    spec = PromptSpec(family="causal_lm", top_k=3, candidate_max_tokens=4)
    report = build_fuser_data(spec, tok, "pairranker", {"train": (split, ranks)}, tmp_path / "out", tmp_path / "rep.json")
    rows = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert [r["target"] for r in rows] == [e[3] for e in EXAMPLES]
    # the ranker put the reference-equal candidate first
    assert rows[0]["candidates"][0]["model"] == "m1" and rows[1]["candidates"][0]["model"] == "m1"
    assert rows[0]["prompt"].index("Candidate 1: 3 + 5") < rows[0]["prompt"].index("Candidate 2: eight")
    counts = report["splits"]["train"]
    assert counts["records"] == 4 and counts["fewer_than_k"] == 2 and counts["no_candidates"] == 1
    assert counts["candidates_cut"] >= 1  # "Paris is the capital." is over 4 tokens
    assert rows[3]["flags"] == ["fewer_than_k", "no_candidates"]
    assert json.loads((tmp_path / "rep.json").read_text())["splits"]["train"] == counts


def test_judge_rankings_may_leave_records_out_and_they_are_counted(tmp_path, files):
    """fuser.data_ranker: oracle-gpt_rank ranks only what the judge labelled; the rest is counted, not an
    error, while a ranker's rankings must cover every record."""
    split, ranks = files
    partial = tmp_path / "judge_ranks.jsonl"
    write_jsonl(partial, read_jsonl(ranks)[:3])
    spec = PromptSpec(family="causal_lm", top_k=2)
    report = build_fuser_data(spec, make_tokenizer("causal_lm"), "oracle-gpt_rank", {"train": (split, partial)},
                              tmp_path / "out")
    assert report["splits"]["train"]["records"] == 3 and report["splits"]["train"]["no_ranking"] == 1
    assert len(read_jsonl(tmp_path / "out" / "train.jsonl")) == 3
    with pytest.raises(InputError, match="no ranking for record"):
        build_fuser_data(spec, make_tokenizer("causal_lm"), "pairranker", {"train": (split, partial)}, tmp_path / "o2")


def test_data_ranker_picks_train_val_inputs_and_test_keeps_the_ranker():
    from llmblend.fuser.snake import split_inputs

    cfg = {"fuser": {"ranker": "pairranker", "data_ranker": "oracle-gpt_rank"}}
    assert split_inputs(cfg, "d", "train")["rankings"] == "d/rankings/oracle-gpt_rank/train.jsonl"
    assert split_inputs(cfg, "d", "test")["rankings"] == "d/rankings/pairranker/test.jsonl"
    cfg["fuser"]["data_ranker"] = None
    assert split_inputs(cfg, "d", "val")["rankings"] == "d/rankings/pairranker/val.jsonl"


def test_oracle_ranks_by_metric(tmp_path, files):
    split, _ = files
    tok = make_tokenizer("causal_lm")
    build_fuser_data(PromptSpec(family="causal_lm", top_k=1), tok, "oracle:bleu", {"val": (split, None)}, tmp_path)
    rows = read_jsonl(tmp_path / "val.jsonl")
    assert [r["candidates"][0]["model"] for r in rows[:3]] == ["m1", "m1", "m0"]  # longest text = highest "bleu"


@pytest.mark.parametrize("damage,field", [
    (lambda rows, ranks: ranks[1].update(ranks=[1, 2]), "ranks"),
    (lambda rows, ranks: ranks.pop(2), "id"),
    (lambda rows, ranks: ranks[0].update(ranks=["a", 2, 3]), "ranks"),
])
def test_bad_rankings_name_file_and_field(tmp_path, damage, field):
    rows = split_records()
    ranks = rankings_for(rows)
    damage(rows, ranks)
    write_jsonl(tmp_path / "s.jsonl", rows)
    write_jsonl(tmp_path / "r.jsonl", ranks)
    with pytest.raises(InputError) as e:
        build_fuser_data(PromptSpec(family="causal_lm"), make_tokenizer("causal_lm"), "pairranker",
                         {"train": (tmp_path / "s.jsonl", tmp_path / "r.jsonl")}, tmp_path / "out")
    assert e.value.field == field and "r.jsonl" in e.value.path
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_oracle_without_the_metric_is_an_error(tmp_path):
    rows = split_records()
    del rows[1]["candidates"][2]["scores"]
    write_jsonl(tmp_path / "s.jsonl", rows)
    with pytest.raises(InputError) as e:
        build_fuser_data(PromptSpec(family="causal_lm"), make_tokenizer("causal_lm"), "oracle:bleu",
                         {"test": (tmp_path / "s.jsonl", None)}, tmp_path / "out")
    assert e.value.line == 2 and e.value.field == "candidates[2].scores.bleu"


# --- training, save/load, inference ---------------------------------------------------------

TRAIN = {"epochs": 30, "lr": 2e-2, "batch_size": 4, "eval_steps": 10, "logging_steps": 1}


def train_tiny(tmp_path, family, files, **extra):
    split, ranks = files
    base = make_model_dir(tmp_path, family)
    from transformers import AutoTokenizer

    spec = PromptSpec(family=family, top_k=2, candidate_max_tokens=16, max_target_tokens=16)
    build_fuser_data(spec, AutoTokenizer.from_pretrained(base), "pairranker",
                     {"train": (split, ranks), "val": (split, ranks)}, tmp_path / "fd")
    train_cfg = {**TRAIN, **extra.pop("train", {})}
    report = train_fuser(base, tmp_path / "fd/train.jsonl", tmp_path / "fd/val.jsonl", tmp_path / "fuser", spec,
                         train_cfg, seed=1, plot_csv=tmp_path / "plot.csv",
                         generate_cfg={"num_beams": 2, "max_new_tokens": 16},
                         config_slice={"seed": 1, "fuser.train": train_cfg}, **extra)
    return report


@pytest.mark.slow  # ~1 min each on 2 cores: 30-60 epochs of training
@pytest.mark.parametrize("family", ["causal_lm", "seq2seq"])
def test_tiny_fuser_learns_and_round_trips(tmp_path, files, family):
    # the tiny T5 needs more steps to memorise all four: on an AVX-512 CPU, 30 left val loss at 0.106
    # and one answer wrong (it passed on the AVX2 machine); 60 reach 0.013
    extra = {"train": {"epochs": 60, "eval_steps": 20}} if family == "seq2seq" else {}
    report = train_tiny(tmp_path, family, files, **extra)
    with open(tmp_path / "plot.csv") as f:
        plot = list(csv.DictReader(f))
    losses = [float(r["loss"]) for r in plot if r["loss"]]
    val = [float(r["val_loss"]) for r in plot if r["val_loss"]]
    assert losses[-1] < losses[0] / 4, losses
    assert len(val) == 3 and report["best_val_loss"] == pytest.approx(min(val), abs=1e-5)
    assert not (tmp_path / "fuser.checkpoints").exists()  # a finished run cleans its checkpoints

    fuser = load_fuser(tmp_path / "fuser")
    assert fuser.family == family and fuser.spec.top_k == 2 and fuser.generate_defaults["num_beams"] == 2
    # the saved fuser reproduces the references it was trained on, from the ranked candidates
    split, ranks = files
    fuse_split(tmp_path / "fuser", split, "pairranker", tmp_path / "fused.jsonl", ranks, batch_size=3,
               report_path=tmp_path / "rep.json")
    fused = read_jsonl(tmp_path / "fused.jsonl")
    assert [r["candidates"][0]["text"] for r in fused] == [e[3] for e in EXAMPLES]
    # the same through the library call Blender.fuse uses
    texts = fuser.fuse([e[0] for e in EXAMPLES[:2]], [e[1] for e in EXAMPLES[:2]],
                       [["3 + 5 = 8.", "eight"], ["Paris is the capital.", "Lyon"]])
    assert texts == ["3 + 5 = 8.", "Paris is the capital."]
    check_fused_layout(fused, json.loads((tmp_path / "rep.json").read_text()))
    assert not (tmp_path / "fused.jsonl.partial.jsonl").exists()
    if family == "causal_lm":
        check_killed_fusion_resumes(tmp_path, files, fused)
        check_ctranslate2_fuses_the_same(tmp_path, files)
    else:
        with pytest.raises(ConfigError, match="decoder-only"):
            fuse_split(tmp_path / "fuser", split, "pairranker", tmp_path / "ct2.jsonl", ranks, backend="ctranslate2")


def check_ctranslate2_fuses_the_same(tmp_path, files):
    """fuser.backend ctranslate2: the fuser converted for the job (float32), greedy: the same rows (texts,
    token counts, flags) as transformers, and the converted copy removed afterwards."""
    pytest.importorskip("ctranslate2")
    split, ranks = files
    rows = {}
    for backend in ("hf", "ctranslate2"):
        report = fuse_split(tmp_path / "fuser", split, "pairranker", tmp_path / f"{backend}.jsonl", ranks,
                            batch_size=3, generate={"num_beams": 1}, backend=backend)
        rows[backend] = read_jsonl(tmp_path / f"{backend}.jsonl")
        assert report["backend"] == backend and not (tmp_path / f"{backend}.jsonl.ct2").exists()
    assert rows["ctranslate2"] == rows["hf"]
    assert [r["candidates"][0]["text"] for r in rows["hf"]] == [e[3] for e in EXAMPLES]


def check_killed_fusion_resumes(tmp_path, files, expected, monkeypatch=None):
    from llmblend.fuser import api, infer

    split, ranks = files
    real = api.Fuser.fuse_detailed
    calls = []

    def dies_on_second_chunk(self, *a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(infer, "CHUNK_BATCHES", 1)
        mp.setattr(api.Fuser, "fuse_detailed", dies_on_second_chunk)
        with pytest.raises(KeyboardInterrupt):
            fuse_split(tmp_path / "fuser", split, "pairranker", tmp_path / "again.jsonl", ranks, batch_size=2)
        assert not (tmp_path / "again.jsonl").exists()
        mp.setattr(api.Fuser, "fuse_detailed", real)
        report = fuse_split(tmp_path / "fuser", split, "pairranker", tmp_path / "again.jsonl", ranks, batch_size=2)
    assert report["fused_now"] == 2 and report["records"] == 4
    assert read_jsonl(tmp_path / "again.jsonl") == expected


def check_fused_layout(rows, report):
    assert [r["id"] for r in rows] == ["t/0", "t/1", "t/2", "t/3"]
    assert set(rows[0]) == {"id", "instruction", "input", "output", "source", "rubric", "candidates"}
    cand = rows[0]["candidates"][0]
    assert len(rows[0]["candidates"]) == 1
    assert cand["model"] == "llm-blender" and cand["decoding_method"] == "beam2"
    assert cand["fused_from"] == ["m1", "m0"] and cand["n_tokens"] > 0
    # the empty answer is kept and flagged; the record with fewer than K candidates is flagged
    assert rows[3]["candidates"][0]["text"] == "" and "empty" in rows[3]["candidates"][0]["flags"]
    assert "fewer_than_k" in rows[3]["candidates"][0]["flags"] and "fewer_than_k" not in cand["flags"]
    assert report["flags"]["empty"] == 1 and report["records"] == 4 and report["decoding_method"] == "beam2"


def test_fusion_gets_the_top_k_best_first_and_a_rerun_fuses_only_what_is_missing(tmp_path, files, monkeypatch):
    """fuse_split with a recording stand-in for the trained fuser: each record's K best candidates reach
    it in rank order; killed in its second chunk, the rerun fuses the missing chunk only."""
    from llmblend.fuser import infer

    class RecordingFuser:
        spec = PromptSpec(family="causal_lm", top_k=2)
        generate_defaults = {"num_beams": 1}
        calls: list = []
        die_at = None

        def fuse_detailed(self, instructions, inputs, topk, batch_size, seed_offset, **kw):
            self.calls.append(seed_offset)
            if len(self.calls) == self.die_at:
                raise KeyboardInterrupt
            return [{"text": " | ".join(t), "n_tokens": 1, "n_prompt_tokens": 1, "flags": []} for t in topk]

    fuser = RecordingFuser()
    monkeypatch.setattr(infer, "load_fuser", lambda model_dir, **kw: fuser)
    monkeypatch.setattr(infer, "CHUNK_BATCHES", 1)  # a chunk = one batch of 2 records
    (tmp_path / "fuser").mkdir()
    (tmp_path / "fuser" / "config.json").write_text("{}")
    split, ranks = files
    fuser.die_at = 2
    with pytest.raises(KeyboardInterrupt):
        fuse_split(tmp_path / "fuser", split, "pairranker", tmp_path / "fused.jsonl", ranks, batch_size=2)
    assert not (tmp_path / "fused.jsonl").exists()
    fuser.calls, fuser.die_at = [], None
    report = fuse_split(tmp_path / "fuser", split, "pairranker", tmp_path / "fused.jsonl", ranks, batch_size=2)
    assert fuser.calls == [2] and report["fused_now"] == 2 and report["records"] == 4
    texts = [r["candidates"][0]["text"] for r in read_jsonl(tmp_path / "fused.jsonl")]
    assert texts == ["3 + 5 = 8. | eight", "Paris is the capital. | Lyon", "red, blue | red", ""]


def test_fusion_dtype_reaches_the_model_and_keys_the_resume(tmp_path, files, monkeypatch):
    """fuser.dtype: the weights are loaded in that type, the report says it, and answers fused in
    float32 by a killed run are not taken over by a bfloat16 rerun (they may differ)."""
    import torch

    from llmblend.fuser import infer

    loaded = []

    class StandIn:
        spec = PromptSpec(family="causal_lm", top_k=2)
        generate_defaults = {"num_beams": 1}
        die = False

        def fuse_detailed(self, instructions, inputs, topk, batch_size, seed_offset, **kw):
            if self.die and seed_offset:
                raise KeyboardInterrupt
            return [{"text": t[0] if t else "", "n_tokens": 1, "n_prompt_tokens": 1, "flags": []} for t in topk]

    fuser = StandIn()
    monkeypatch.setattr(infer, "load_fuser", lambda model_dir, **kw: loaded.append(kw["dtype"]) or fuser)
    monkeypatch.setattr(infer, "CHUNK_BATCHES", 1)
    (tmp_path / "fuser").mkdir()
    (tmp_path / "fuser" / "config.json").write_text("{}")
    split, ranks = files
    fuser.die = True
    with pytest.raises(KeyboardInterrupt):
        fuse_split(tmp_path / "fuser", split, "pairranker", tmp_path / "fused.jsonl", ranks, batch_size=2)
    fuser.die = False
    report = fuse_split(tmp_path / "fuser", split, "pairranker", tmp_path / "fused.jsonl", ranks, batch_size=2,
                        dtype="bfloat16")
    assert loaded == [torch.float32, torch.bfloat16]
    assert report["dtype"] == "bfloat16" and report["fused_now"] == 4


def test_killed_training_resumes_from_the_last_checkpoint(tmp_path, files, caplog, monkeypatch):
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 13:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_tiny(tmp_path, "causal_lm", files, train={"epochs": 20}, callbacks=[Kill()])
    assert not (tmp_path / "fuser").exists()
    assert (tmp_path / "fuser.checkpoints" / "checkpoint-10").is_dir()
    caplog.set_level("INFO", logger="llmblend")
    monkeypatch.setattr(logging.getLogger("llmblend"), "propagate", True)  # restored after the test
    report = train_tiny(tmp_path, "causal_lm", files, train={"epochs": 20})
    # resumed, not restarted: the second run found checkpoint-10 and ended at step 20
    assert "resuming from the last checkpoint" in caplog.text
    assert report["steps"] == 20
    assert (tmp_path / "fuser" / "model.safetensors").is_file()


def test_cli_reports_bad_input_in_one_line_and_writes_nothing(tmp_path, files, capsys):
    from pathlib import Path

    from llmblend.cli import main

    split, _ = files
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "t/0", "ranks": [1, 2, 3]}\n{"id": "t/1"}\n')
    base = make_model_dir(tmp_path, "causal_lm")
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    rc = main(["build-fuser-data", "--config", str(params), "--model", f"dir:{base}", "--split", f"train={split}",
               "--split", f"val={split}", "--rankings", f"train={bad}", "--rankings", f"val={bad}",
               "--out-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "bad.jsonl:2: field 'ranks': missing" in err
    assert not (tmp_path / "out").exists()


def test_training_is_byte_deterministic_on_cpu(tmp_path, files):
    from llmblend.io import sha256_file

    digests = []
    # the same settings twice, then length-grouped batches (fuser.train.sampling): another example order,
    # so other weights, and as deterministic
    for run, sampling in (("a", "random"), ("b", "random"), ("c", "group_by_length"), ("d", "group_by_length")):
        (tmp_path / run).mkdir()
        train_tiny(tmp_path / run, "causal_lm", files, train={"epochs": 4, "eval_steps": 2, "batch_size": 2,
                                                             "sampling": sampling})
        digests.append((sha256_file(tmp_path / run / "fuser" / "model.safetensors"),
                        (tmp_path / run / "plot.csv").read_bytes()))
    assert digests[0] == digests[1] and digests[2] == digests[3]
    assert digests[2][0] != digests[0][0], "fuser.train.sampling did not reach the training"
