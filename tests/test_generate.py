"""Candidate generation: the hf backend on a tiny random model, sharding, resume, gather, prompts."""

from __future__ import annotations

import copy
import json
import string
from pathlib import Path

import pytest

from gen_tiny import make_tiny_model
from llmblend.config import load_config, validate
from llmblend.errors import ConfigError, InputError
from llmblend.generate.backend import GenerationBackend
from llmblend.generate.gather import gather_candidates
from llmblend.generate.hf import HFBackend, RowSampler
from llmblend.generate.prompts import cut_at_stop, fewshot_prompt, render, user_text
from llmblend.generate.shards import answer_log_path, answers_key, generate_shard, shard_slice
from llmblend.io import read_json, read_jsonl, write_jsonl


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def records(n=7):
    out = []
    for i in range(n):
        words = " ".join(["the water"] * (i % 4 + 1))
        out.append({"id": f"t/{i:03d}", "instruction": f"what is {words} ?", "input": "list" if i % 2 else "",
                    "output": "ref", "source": "t", "candidates": []})
    return out


def gen_cfg(name="tiny-t0.7", method="top_p_sampling", batch_size=4, max_new=6, **extra):
    return {"name": name, "backend": "hf", "model": "tiny", "prompt": "chat",
            "decoding": {"method": method, "temperature": 0.7, "top_p": 1.0, "max_new_tokens": max_new},
            "hf": {"batch_size": batch_size}, **extra}


def config(tiny_dir, gens, shards=2):
    cfg = {"run": "t", "seed": 42, "data": {"sources": [{"type": "demo", "name": "demo", "n_items": 10}]},
           "models": {"tiny": {"spec": f"dir:{tiny_dir}", "kind": "causal_lm"}},
           "generate": {"shards": shards, "splits": ["test"], "generators": gens}}
    return cfg


def test_user_text_and_prompts():
    assert user_text({"instruction": "Do it.", "input": "x y"}) == "Do it.\nx y"
    assert user_text({"instruction": "", "input": "only"}) == "only"
    p = fewshot_prompt("What is 2+2?")
    assert p.endswith("Instruction: What is 2+2?\nResponse:") and p.count("Instruction:") == 5
    assert render("template", "hi", template="### Instruction:\n{prompt}\n\n### Response:\n") == \
        "### Instruction:\nhi\n\n### Response:\n"
    assert cut_at_stop("4.\nInstruction: next", ["\nInstruction:", "\n\n"]) == ("4.", True)
    assert cut_at_stop("no stop", ["\n\n"]) == ("no stop", False)


def test_row_sampler_is_per_row_and_reproducible():
    import torch

    scores = torch.randn(3, 50)
    a = RowSampler([1, 2, 3], temperature=0.7)
    b = RowSampler([3, 2], temperature=0.7)
    ca = a(None, scores.clone()).argmax(-1)
    cb = b(None, scores[[2, 1]].clone()).argmax(-1)
    # the same row seed gives the same token, whatever the batch around it
    assert ca[2] == cb[0] and ca[1] == cb[1]
    greedy = RowSampler(None)(None, scores.clone()).argmax(-1)
    assert torch.equal(greedy, scores.argmax(-1))
    assert torch.allclose(RowSampler(None).__call__(None, scores.clone()).exp().sum(-1), torch.ones(3))


def test_hf_backend_same_text_whatever_the_batch(tiny_dir):
    recs = records(6)
    outs = []
    for bs in (1, 4):
        b = HFBackend(gen_cfg(batch_size=bs), {"kind": "causal_lm"}, f"dir:{tiny_dir}", seed=42)
        res = {}
        for batch in b.batches(recs):
            res.update(b.run_batch(batch))
        outs.append(res)
    assert outs[0].keys() == {r["id"] for r in recs}
    for rid in outs[0]:
        assert outs[0][rid]["text"] == outs[1][rid]["text"]
        assert outs[0][rid]["n_tokens"] == outs[1][rid]["n_tokens"]
        assert outs[0][rid]["logprobs"] == pytest.approx(outs[1][rid]["logprobs"], abs=1e-3)
    c = outs[0]["t/000"]
    assert c["model"] == "tiny-t0.7" and c["decoding_method"] == "top_p_sampling" and c["base_model"] == "tiny"
    assert c["decoding"] == {"max_new_tokens": 6, "temperature": 0.7, "top_p": 1.0}
    assert 0 <= c["n_tokens"] <= 6 and c["n_prompt_tokens"] > 5 and c["logprobs"] <= 0


def test_hf_backend_seed_changes_samples(tiny_dir):
    recs = records(6)
    texts = []
    for seed in (1, 2):
        b = HFBackend(gen_cfg(max_new=8), {"kind": "causal_lm"}, f"dir:{tiny_dir}", seed=seed)
        texts.append([c["text"] for batch in b.batches(recs) for _, c in b.run_batch(batch)])
    assert texts[0] != texts[1]


def test_prompt_truncation_is_flagged(tiny_dir):
    rec = {"id": "long", "instruction": " ".join(["water"] * 200), "input": "", "output": "x"}
    b = HFBackend(gen_cfg(max_prompt_tokens=30), {"kind": "causal_lm"}, f"dir:{tiny_dir}", seed=1)
    [(rid, cand)] = [r for batch in b.batches([rec]) for r in b.run_batch(batch)]
    assert "prompt_truncated" in cand["flags"] and cand["n_prompt_tokens"] <= 30


def test_empty_generation_is_kept_and_flagged(tiny_dir):
    # stop strings that cut every answer at its first character leave nothing: kept, flagged, not dropped
    b = HFBackend(gen_cfg(max_new=4), {"kind": "causal_lm"}, f"dir:{tiny_dir}", seed=1)
    b.stops = sorted(set(string.printable)) + ["\ufffd"]  # also an undecodable byte token
    out = [c for batch in b.batches(records(5)) for _, c in b.run_batch(batch)]
    assert len(out) == 5
    assert all(c["text"] == "" and "empty" in c["flags"] for c in out)


def test_shard_slices_cover_the_split():
    n, k = 23, 4
    ids = [i for s in range(k) for i in range(n)[shard_slice(n, s, k)]]
    assert ids == list(range(n))
    with pytest.raises(ConfigError):
        shard_slice(n, 4, 4)


class CountingBackend(GenerationBackend):
    """Wraps a backend and records which ids it was asked to generate."""

    def __init__(self, inner):
        self.inner, self.asked = inner, []

    def batches(self, records):
        return self.inner.batches(records)

    def run_batch(self, batch):
        self.asked += [b[0]["id"] for b in batch]
        return self.inner.run_batch(batch)


def test_shard_resume_after_kill_writes_each_record_once(tiny_dir, tmp_path):
    recs = records(7)
    split = tmp_path / "splits" / "test.jsonl"
    write_jsonl(split, recs)
    cfg = config(tiny_dir, [gen_cfg(name="g", batch_size=2)], shards=1)
    out = tmp_path / "generate" / "g" / "test" / "shard-0.jsonl"
    full = generate_shard(copy.deepcopy(cfg), "g", split, 0, tmp_path / "ref" / "shard-0.jsonl")
    ref = read_jsonl(tmp_path / "ref" / "shard-0.jsonl")
    assert full["records"] == 7
    # a killed run: its key line, three complete lines and a torn fourth one
    log_path = answer_log_path(tmp_path / "ref" / "shard-0.jsonl")
    key_line = log_path.read_text().splitlines()[0]
    partial = answer_log_path(out)
    partial.parent.mkdir(parents=True)
    lines = [json.dumps(r) for r in ref[:3]]
    partial.write_text(key_line + "\n" + "\n".join(lines) + "\n" + lines[0][:20], encoding="utf-8")
    inner = HFBackend(gen_cfg(name="g", batch_size=2), {"kind": "causal_lm"}, f"dir:{tiny_dir}", seed=42)
    counting = CountingBackend(inner)
    report = generate_shard(cfg, "g", split, 0, out, backend=counting)
    assert sorted(counting.asked) == [r["id"] for r in recs[3:]]
    assert len(counting.asked) == 4  # only the records the killed run had not finished
    assert report == full  # the report of a resumed shard equals an uninterrupted one
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [r["id"] for r in recs]  # split order, each id once
    assert rows == ref  # per-record seeds: resuming gives the very same candidates
    # a finished shard is not redone
    again = CountingBackend(inner)
    generate_shard(cfg, "g", split, 0, out, backend=again)
    assert again.asked == []
    # a finished job whose record a workflow tool lost: outputs deleted, the answer log kept
    out.unlink()
    out.with_name("shard-0.report.json").unlink()
    again = CountingBackend(inner)
    assert generate_shard(cfg, "g", split, 0, out, backend=again) == full
    assert again.asked == [] and read_jsonl(out) == ref
    # changed settings: the log is discarded, every record is generated again
    changed = copy.deepcopy(cfg)
    changed["generate"]["generators"][0]["decoding"]["max_new_tokens"] = 3
    again = CountingBackend(HFBackend(changed["generate"]["generators"][0], {"kind": "causal_lm"},
                                      f"dir:{tiny_dir}", seed=42))
    generate_shard(changed, "g", split, 0, out, backend=again)
    assert sorted(again.asked) == sorted(r["id"] for r in recs)


def test_a_damaged_middle_line_of_the_answer_log_is_an_error(tmp_path):
    split = tmp_path / "test.jsonl"
    write_jsonl(split, records(3))
    cfg = config("unused", [gen_cfg(name="g")], shards=1)
    key = answers_key(cfg, cfg["generate"]["generators"][0], None, 0, records(3))
    p = answer_log_path(tmp_path / "shard-0.jsonl")
    p.parent.mkdir()
    p.write_text(json.dumps({"answers_for": key}) + '\n{"id": "a", "candidate": {}}\n{broken\n'
                 '{"id": "b", "candidate": {}}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"shard-0.jsonl:3"):
        generate_shard(cfg, "g", split, 0, tmp_path / "shard-0.jsonl")


def test_gather_orders_candidates_and_checks_shards(tiny_dir, tmp_path):
    recs = records(5)
    write_jsonl(tmp_path / "splits" / "test.jsonl", recs)
    gens = [gen_cfg(name="a", method="greedy"), gen_cfg(name="b")]
    cfg = config(tiny_dir, gens, shards=2)
    for g in ("a", "b"):
        for k in range(2):
            generate_shard(cfg, g, tmp_path / "splits" / "test.jsonl", k,
                           tmp_path / "generate" / g / "test" / f"shard-{k}.jsonl")
    m = gather_candidates(cfg, tmp_path / "splits", tmp_path / "generate", tmp_path / "candidates")
    rows = read_jsonl(tmp_path / "candidates" / "test.jsonl")
    assert [r["id"] for r in rows] == [r["id"] for r in recs]
    assert all([c["model"] for c in r["candidates"]] == ["a", "b"] for r in rows)
    assert m["splits"]["test"]["file"]["records"] == 5
    assert set(read_json(tmp_path / "candidates" / "manifest.json")["splits"]) == {"test"}
    # a record written twice in a shard is an error naming the file and line
    shard = tmp_path / "generate" / "b" / "test" / "shard-1.jsonl"
    lines = shard.read_text(encoding="utf-8").splitlines()
    shard.write_text("\n".join(lines + [lines[0]]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"shard-1.jsonl:{len(lines) + 1}: field 'id'"):
        gather_candidates(cfg, tmp_path / "splits", tmp_path / "generate", tmp_path / "candidates2")
    # a missing record too
    shard.write_text("\n".join(lines[1:]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="have no b candidate"):
        gather_candidates(cfg, tmp_path / "splits", tmp_path / "generate", tmp_path / "candidates2")
    assert not (tmp_path / "candidates2" / "test.jsonl").exists()


def test_schema_is_strict_and_names_unique(tiny_dir, tmp_path):
    cfg = load_config([Path(__file__).parents[1] / "params.yaml"])
    cfg.pop("_files")
    cfg["models"]["tiny"] = {"spec": f"dir:{tiny_dir}", "kind": "causal_lm"}
    cfg["generate"]["generators"] = [gen_cfg(name="a")]
    validate(cfg)
    bad = copy.deepcopy(cfg)
    bad["generate"]["generators"][0]["decoding"]["temprature"] = 0.5
    with pytest.raises(ConfigError, match="temprature"):
        validate(bad)
    bad = copy.deepcopy(cfg)
    del bad["generate"]["generators"][0]["model"]
    with pytest.raises(ConfigError):
        validate(bad)
    dup = config(tiny_dir, [gen_cfg(name="a"), gen_cfg(name="a")])
    write_jsonl(tmp_path / "test.jsonl", records(2))
    with pytest.raises(ConfigError, match="unique"):
        generate_shard(dup, "a", tmp_path / "test.jsonl", 0, tmp_path / "o.jsonl")


def test_every_backend_is_written_to_the_one_interface():
    """generate_shard calls what GenerationBackend declares (no probing): each backend subclasses it,
    only the API backend streams, and a stand-in without run_batch cannot be built."""
    from llmblend.generate.ct2_backend import CT2Backend
    from llmblend.generate.importer import ImportBackend
    from llmblend.generate.openai_backend import OpenAIBackend

    backends = (HFBackend, CT2Backend, OpenAIBackend, ImportBackend)
    assert all(GenerationBackend in b.__mro__ for b in backends)  # subclassed, not only shaped like it
    assert [b.streams for b in backends] == [False, False, True, False]

    class NoRun(GenerationBackend):
        def batches(self, records):
            return [records]

    with pytest.raises(TypeError, match="run_batch"):
        NoRun()


def test_decoding_defaults_come_from_the_schema_for_every_reader(monkeypatch):
    """One place for the decoding defaults (generate.schema.yaml): a generator that leaves a key out
    gets the schema's value in the openai backend's request, the cost plan and decoding_of alike."""
    from llmblend.config import schema_node
    from llmblend.generate.backend import decoding_of
    from llmblend.generate.openai_backend import OpenAIBackend
    from llmblend.workflow.cost import _gen_max_new

    node = schema_node("generate.generators.items.decoding")["properties"]
    monkeypatch.setitem(node["temperature"], "default", 0.3)
    monkeypatch.setitem(node["max_new_tokens"], "default", 77)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    gen = {"name": "g", "backend": "openai", "decoding": {"method": "top_p_sampling"}, "openai": {"model": "m"}}
    assert decoding_of(gen) == {"method": "top_p_sampling", "temperature": 0.3, "top_p": 1.0, "max_new_tokens": 77}
    backend = OpenAIBackend(gen, seed=0, client=object())
    assert backend.params == {"max_tokens": 77, "temperature": 0.3, "top_p": 1.0}
    assert _gen_max_new(gen) == 77
    greedy = OpenAIBackend({**gen, "decoding": {"method": "greedy", "max_new_tokens": 5}}, seed=0, client=object())
    assert greedy.params == {"max_tokens": 5, "temperature": 0.0}
