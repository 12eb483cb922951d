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

        unknown = set(generate_kwargs) - GENERATE_KEYS
        if unknown:
            raise ValueError(f"unknown generation setting(s) {sorted(unknown)}; known: {sorted(GENERATE_KEYS)}")
        kw = {**self.generate_defaults, **generate_kwargs}
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
                stopped = eos in ids
                ids = ids[: ids.index(eos)] if stopped else ids
                ids = [t for t in ids if t != self.tokenizer.pad_token_id]
                text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
                i = members[row]
                flags = []
                if not text:
                    flags.append("empty")
                if not stopped and len(ids) >= kw["max_new_tokens"]:
                    flags.append("length_cap")
                if counts[i] < self.spec.top_k:
                    flags.append("fewer_than_k")
                n_generated += len(ids)
                results[i] = {"text": text, "n_tokens": len(ids),
                              "n_prompt_tokens": int(batch["attention_mask"][row].sum()), "flags": flags}
            bar.update(len(new))
            bar.set_postfix(tok_s=f"{n_generated / max(time.perf_counter() - t0, 1e-9):.1f}")
        bar.close()
        return results

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
    meta_file = path / FUSER_META
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    spec = PromptSpec(**meta["prompt"]) if "prompt" in meta else PromptSpec(family=family)
    if meta and reference_input not in (None, "project"):
        raise LLMBlendError(f"{path}: fuser.reference_input {reference_input} is for a released fuser; this one "
                            f"was trained here and reads its input as {FUSER_META} says")
    return Fuser(model, tokenizer, family, spec, meta.get("generate"), meta.get("seed", 0),
                 input_style=reference_input or "project")
