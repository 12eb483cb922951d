"""The fuser as a library: `load_fuser(path_or_spec).fuse(instructions, inputs, topk_candidates)`.

`llmblend.Blender.fuse` / `rank_and_fuse` call this. A fuser folder written by `llmblend train-fuser`
holds `llmblend_fuser.json` (its prompt layout and decoding defaults); any other seq2seq or causal
model folder (e.g. the released llm-blender/gen_fuser_3b) is used with the paper's layout and
decoding (K=3, 128-token candidates, 4 beams, 128 new tokens), read as `reference_input` says
(fuser.reference_input): `project`, the layout tokenised without special tokens (the reference
package's GenFuserDataset does the same); FUSE_INFER, as the paper-era script that produced the
paper's fused answers fed it (4594f09:llm_blender/gen_fuser/fuse_infer.py + model_utils.py).
"""

from __future__ import annotations

import json
import logging
import time

from llmblend.errors import LLMBlendError
from llmblend.fuser.model import FUSER_META, load_model
from llmblend.fuser.prompt import PromptSpec, chat_prompt, format_prompt
from llmblend.runlog import progress

log = logging.getLogger("llmblend.fuser")

PAPER_GENERATE = {"num_beams": 4, "do_sample": False, "max_new_tokens": 128}
# fuse_infer.py: every "\n" of the input becomes " </s> " (clean_newlines) and the tokenizer adds its
# special tokens (a trailing </s>)
FUSE_INFER = "fuse_infer-4594f09"
INPUT_STYLES = ("project", FUSE_INFER)
GENERATE_KEYS = {"num_beams", "do_sample", "temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty",
                 "length_penalty", "no_repeat_ngram_size"}


def decoding_name(kw: dict) -> str:
    """The `decoding_method` a fused candidate records, e.g. "beam4", "greedy", "sample_t0.7_p0.9"."""
    if kw.get("do_sample"):
        return f"sample_t{kw.get('temperature', 1.0)}_p{kw.get('top_p', 1.0)}"
    beams = kw.get("num_beams", 1)
    return f"beam{beams}" if beams > 1 else "greedy"


class Fuser:
    def __init__(self, model, tokenizer, family: str, spec: PromptSpec, generate: dict | None = None, seed: int = 0,
                 input_style: str = "project"):
        if input_style not in INPUT_STYLES:
            raise ValueError(f"input style {input_style!r}: one of {', '.join(INPUT_STYLES)}")
        if input_style == FUSE_INFER and family != "seq2seq":
            raise ValueError(f"input style {FUSE_INFER} is the seq2seq gen_fuser's; this fuser is {family}")
        self.model, self.tokenizer, self.family, self.spec = model.eval(), tokenizer, family, spec
        self.generate_defaults = {**PAPER_GENERATE, **(generate or {})}
        self.seed = seed
        self.input_style = input_style

    def prompts(self, instructions, inputs, topk_candidates) -> list[str]:
        out = []
        for instruction, input_text, cands in zip(instructions, inputs, topk_candidates, strict=True):
            text, _ = format_prompt(self.spec, instruction, input_text or "", list(cands)[: self.spec.top_k], self.tokenizer)
            if self.input_style == FUSE_INFER:
                text = text.replace("\n", " </s> ")
            out.append(chat_prompt(self.tokenizer, text) if self.family == "causal_lm" else text)
        return out

    def encode(self, prompts: list[str]):
        """The batch's input ids; special tokens only where the input style adds them."""
        return self.tokenizer(prompts, add_special_tokens=self.input_style == FUSE_INFER, padding=True,
                              return_tensors="pt")

    def encode_lengths(self, prompts: list[str]) -> list[list[int]]:
        return self.tokenizer(prompts, add_special_tokens=self.input_style == FUSE_INFER)["input_ids"]

    def fuse_detailed(self, instructions, inputs, topk_candidates, batch_size: int = 8, seed_offset: int = 0,
                      **generate_kwargs) -> list[dict]:
        """Per example: {"text", "n_tokens", "n_prompt_tokens", "flags"}; in the order given.
        `seed_offset`: the position of the first example in a longer run (sampling seeds follow it)."""
        import torch

        kw = self._settings(generate_kwargs)
        prompts = self.prompts(instructions, inputs, topk_candidates)
        counts = [min(len(list(c)), self.spec.top_k) for c in topk_candidates]
        self.tokenizer.padding_side = "left" if self.family == "causal_lm" else "right"
        eos = self.tokenizer.eos_token_id
        # batches of similar prompt length: the prompt's forward pass is most of the work here (100 demo
        # prompts of ~300 tokens, 64 new tokens), and padding to a batch's longest prompt is work too
        lengths = [len(ids) for ids in self.encode_lengths(prompts)]
        order = sorted(range(len(prompts)), key=lambda i: (lengths[i], i))
        results = [None] * len(prompts)
        n_generated, t0 = 0, time.perf_counter()
        bar = progress(total=len(prompts), desc="fuse", unit="ex")
        for start in range(0, len(prompts), batch_size):
            members = order[start:start + batch_size]
            batch = self.encode([prompts[i] for i in members]).to(self.model.device)
            if kw.get("do_sample"):
                torch.manual_seed(self.seed + seed_offset + start)  # the same example samples alike on every run
            with torch.no_grad():
                out = self.model.generate(**batch, pad_token_id=self.tokenizer.pad_token_id, eos_token_id=eos, **kw)
            new = out[:, batch["input_ids"].shape[1]:] if self.family == "causal_lm" else out[:, 1:]
            for row, ids in enumerate(new.tolist()):
                i = members[row]
                results[i] = self._result(ids, int(batch["attention_mask"][row].sum()), counts[i], kw)
                n_generated += results[i]["n_tokens"]
            bar.update(len(new))
            bar.set_postfix(tok_s=f"{n_generated / max(time.perf_counter() - t0, 1e-9):.1f}")
        bar.close()
        return results

    def _settings(self, generate_kwargs: dict) -> dict:
        unknown = set(generate_kwargs) - GENERATE_KEYS
        if unknown:
            raise ValueError(f"unknown generation setting(s) {sorted(unknown)}; known: {sorted(GENERATE_KEYS)}")
        return {**self.generate_defaults, **generate_kwargs}

    def _result(self, ids: list[int], n_prompt_tokens: int, n_candidates: int, kw: dict) -> dict:
        """One fused answer from its new token ids (cut at the first end-of-sequence), with its flags."""
        eos = self.tokenizer.eos_token_id
        stopped = eos in ids
        ids = ids[: ids.index(eos)] if stopped else ids
        ids = [t for t in ids if t != self.tokenizer.pad_token_id]
        text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        flags = []
        if not text:
            flags.append("empty")
        if not stopped and len(ids) >= kw["max_new_tokens"]:
            flags.append("length_cap")
        if n_candidates < self.spec.top_k:
            flags.append("fewer_than_k")
        return {"text": text, "n_tokens": len(ids), "n_prompt_tokens": n_prompt_tokens, "flags": flags}

    def fuse(self, instructions, inputs, topk_candidates, batch_size: int = 8, **generate_kwargs) -> list[str]:
        """Fused answers: `topk_candidates[i]` lists example i's candidate texts, best first (the first K are used)."""
        return [r["text"] for r in self.fuse_detailed(instructions, inputs, topk_candidates, batch_size, **generate_kwargs)]


def load_fuser(path_or_spec, device: str | None = None, dtype=None, reference_input: str | None = None) -> Fuser:
    """A Fuser from a model folder or spec (dir:, hf:, or a bare path). `reference_input`: how a
    released fuser reads its input (INPUT_STYLES; None: project); a fuser trained here has its own."""
    from llmblend.models.resolve import resolve

    path = resolve(str(path_or_spec))
    model, tokenizer, family = load_model(path, dtype=dtype)
    if device:
        model.to(device)
    spec, meta = _fuser_meta(path, family, reference_input)
    return Fuser(model, tokenizer, family, spec, meta.get("generate"), meta.get("seed", 0),
                 input_style=reference_input or "project")


def _fuser_meta(path, family: str, reference_input: str | None) -> tuple[PromptSpec, dict]:
    """The prompt layout and llmblend_fuser.json of a fuser folder (the paper's layout for a released one)."""
    meta_file = path / FUSER_META
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    spec = PromptSpec(**meta["prompt"]) if "prompt" in meta else PromptSpec(family=family)
    if meta and reference_input not in (None, "project"):
        raise LLMBlendError(f"{path}: fuser.reference_input {reference_input} is for a released fuser; this one "
                            f"was trained here and reads its input as {FUSER_META} says")
    return spec, meta


class CT2Fuser(Fuser):
    """The same fuser decoded by CTranslate2 (fuser.backend: ctranslate2): its weights converted once
    into `work_dir`, the same prompts, batches and flags. Greedy answers in float32 match the
    transformers ones (docs/fuser.md, "Backends"); sampling draws from CTranslate2's generator."""

    def __init__(self, generator, tokenizer, family: str, spec: PromptSpec, generate: dict | None = None,
                 seed: int = 0):
        self.model, self.tokenizer, self.family, self.spec = generator, tokenizer, family, spec
        self.generate_defaults = {**PAPER_GENERATE, **(generate or {})}
        self.seed = seed
        self.input_style = "project"

    def fuse_detailed(self, instructions, inputs, topk_candidates, batch_size: int = 8, seed_offset: int = 0,
                      **generate_kwargs) -> list[dict]:
        import ctranslate2

        kw = self._settings(generate_kwargs)
        prompts = self.prompts(instructions, inputs, topk_candidates)
        counts = [min(len(list(c)), self.spec.top_k) for c in topk_candidates]
        ids = self.encode_lengths(prompts)
        opts = {"max_length": kw["max_new_tokens"], "beam_size": kw.get("num_beams", 1),
                "include_prompt_in_result": False, "end_token": self.tokenizer.eos_token, "return_end_token": True,
                "repetition_penalty": kw.get("repetition_penalty", 1.0),
                "length_penalty": kw.get("length_penalty", 1.0),
                "no_repeat_ngram_size": kw.get("no_repeat_ngram_size", 0)}
        if kw.get("do_sample"):
            # transformers' defaults where a setting is not given (top_k 50)
            opts.update(sampling_topk=kw.get("top_k", 50) or 0, sampling_topp=kw.get("top_p", 1.0),
                        sampling_temperature=kw.get("temperature", 1.0))
        order = sorted(range(len(prompts)), key=lambda i: (len(ids[i]), i))
        results = [None] * len(prompts)
        n_generated, t0 = 0, time.perf_counter()
        bar = progress(total=len(prompts), desc="fuse", unit="ex")
        for start in range(0, len(prompts), batch_size):
            members = order[start:start + batch_size]
            if kw.get("do_sample"):
                ctranslate2.set_random_seed(self.seed + seed_offset + start)
            out = self.model.generate_batch([self.tokenizer.convert_ids_to_tokens(ids[i]) for i in members], **opts)
            for i, res in zip(members, out):
                results[i] = self._result(res.sequences_ids[0], len(ids[i]), counts[i], kw)
                n_generated += results[i]["n_tokens"]
            bar.update(len(members))
            bar.set_postfix(tok_s=f"{n_generated / max(time.perf_counter() - t0, 1e-9):.1f}")
        bar.close()
        return results


def load_ct2_fuser(path_or_spec, work_dir, compute_type: str = "float32", threads: int = 0) -> CT2Fuser:
    """A decoder-only fuser converted into `work_dir` (CTranslate2, float32 weights) and decoded there
    in `compute_type` on the CPU."""
    import ctranslate2
    from transformers import AutoConfig, AutoTokenizer

    from llmblend.errors import ConfigError
    from llmblend.fuser.model import family_of
    from llmblend.models.ct2_convert import convert_ct2
    from llmblend.models.resolve import resolve

    path = resolve(str(path_or_spec))
    family = family_of(AutoConfig.from_pretrained(path))
    if family != "causal_lm":
        raise ConfigError(f"fuser.backend ctranslate2: {path} is a {family} model; this backend decodes decoder-only "
                          "fusers (causal_lm); set fuser.backend: hf")
    convert_ct2(f"dir:{path}", work_dir, "float32")
    try:
        generator = ctranslate2.Generator(str(work_dir), device="cpu", compute_type=compute_type,
                                          intra_threads=threads)
    except ValueError as e:
        raise ConfigError(f"fuser.dtype {compute_type} on fuser.backend ctranslate2: {e}") from e
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    spec, meta = _fuser_meta(path, family, None)
    return CT2Fuser(generator, tokenizer, family, spec, meta.get("generate"), meta.get("seed", 0))
