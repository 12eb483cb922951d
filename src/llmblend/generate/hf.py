"""The `hf` backend: transformers `generate`, batched by prompt length, reproducible per record.

Reproducibility: sampling draws from one torch.Generator per (seed, generator, record id), inside
a logits processor (`RowSampler`) that picks each row's token and hands `generate` a one-hot
score, so `generate` runs in greedy mode and only picks what the sampler chose. A record's draws
therefore do not depend on which other records share its batch, on the batch order, or on a
resume. The same processor records each chosen token's log-probability under the model's own
(untempered) distribution, which is the candidate's `logprobs` (a sum, as in MixInstruct).

Prompt truncation rule: a prompt longer than `max_prompt_tokens` (default: the model's context
minus max_new_tokens) keeps the head of the user text, cut to fit, inside the full template
(so the template's assistant header is never cut); the candidate is flagged `prompt_truncated`.
"""

from __future__ import annotations

import hashlib
import logging
import time

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from llmblend.generate.backend import GenerationBackend, decoding_of
from llmblend.generate.prompts import cut_at_stop, default_stops, render, user_text
from llmblend.models.resolve import resolve

log = logging.getLogger("llmblend.generate")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def row_seed(seed: int, generator: str, record_id: str) -> int:
    digest = hashlib.sha256(f"{seed}|{generator}|{record_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class RowSampler(LogitsProcessor):
    """Picks every row's next token (greedy, or top-p sampling with a per-row generator)."""

    def __init__(self, seeds: list[int] | None, temperature: float = 1.0, top_p: float = 1.0):
        self.generators = None
        if seeds is not None:
            self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature, self.top_p = temperature, top_p
        self.step_logprobs: list[torch.Tensor] = []

    def __call__(self, input_ids, scores):
        scores = scores.float()
        if self.generators is None:
            chosen = scores.argmax(dim=-1)
        else:
            chosen = self._sample(scores)
        # log-softmax of the chosen token only (one logsumexp pass instead of a full log-softmax)
        self.step_logprobs.append(scores.gather(1, chosen[:, None])[:, 0] - torch.logsumexp(scores, dim=-1))
        onehot = torch.full_like(scores, float("-inf"))
        onehot.scatter_(1, chosen[:, None], 0.0)
        return onehot

    def _sample(self, scores):
        probs = torch.softmax(scores / self.temperature, dim=-1)
        if self.top_p < 1.0:
            # nucleus: keep the smallest set of most likely tokens whose mass reaches top_p
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p >= self.top_p
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter_(1, order, sorted_p)
        # inverse-CDF sampling with one uniform draw per row from that row's own generator
        u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators]).to(scores.device)
        cdf = probs.double().cumsum(-1)
        u = u * cdf[:, -1]
        chosen = torch.searchsorted(cdf, u[:, None]).clamp_(max=probs.shape[-1] - 1)[:, 0]
        return chosen


def load_model(spec: str, kind: str = "causal_lm", dtype: str = "float32", quantize: str = "none",
               device: str = "cpu", trust_remote_code: bool = False):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from llmblend.models import precision

    dtype = precision.resolve(dtype, "generate.generators.*.hf.dtype")
    path = resolve(spec)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    cls = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    model = cls.from_pretrained(path, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code)
    model.eval().to(device)
    if quantize == "int8":
        # dynamic int8 weights for every Linear: fewer bytes to stream per decode step on CPU
        from torch.ao.quantization import quantize_dynamic

        model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    if kind != "seq2seq":
        tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, model


def finish_row(backend, toks: list[int], truncated: bool) -> tuple[str, int, list[str]]:
    """(text, new tokens up to the end token, flags) of one generated token row; `backend` gives
    tok, end_ids, stops and max_new (the hf and ctranslate2 backends share this)."""
    n = next((i for i, t in enumerate(toks) if t in backend.end_ids), len(toks))
    text, stopped = cut_at_stop(backend.tok.decode(toks[:n], skip_special_tokens=True), backend.stops)
    text = text.strip()
    flags = (["prompt_truncated"] if truncated else []) + (["empty"] if not text else [])
    if n >= backend.max_new and not stopped:
        flags.append("length_capped")
    return text, n, flags


class HFBackend(GenerationBackend):
    """One generator (a model + prompt style + decoding settings) on the hf backend."""

    def __init__(self, gen: dict, model_cfg: dict, spec: str, seed: int):
        self.gen, self.seed = gen, seed
        self.kind = model_cfg.get("kind", "causal_lm")
        hf = gen.get("hf", {})
        self.batch_size = hf.get("batch_size", 16)
        t0 = time.time()
        self.device = hf.get("device", "cpu")
        self.tok, self.model = load_model(spec, self.kind, hf.get("dtype", "float32"), hf.get("quantize", "none"),
                                          self.device, hf.get("trust_remote_code", False))
        log.info("%s: loaded %s in %.1f s", gen["name"], spec, time.time() - t0)
        dec = decoding_of(gen)
        self.max_new = dec["max_new_tokens"]
        self.greedy = dec["method"] == "greedy"
        self.temperature, self.top_p = dec["temperature"], dec["top_p"]
        self.stops = gen.get("stop", default_stops(gen["prompt"]))
        ctx = getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.max_prompt = gen.get("max_prompt_tokens") or max(16, ctx - self.max_new)
        # a chat template carries its own special tokens; plain prompts get the tokenizer's BOS
        self.add_special = gen["prompt"] != "chat"
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self.end_ids = set(eos) | {self.tok.eos_token_id, self.tok.pad_token_id} - {None}

    def prompt_for(self, rec: dict) -> tuple[str, list[int], bool]:
        g = self.gen
        text = user_text(rec)
        prompt = render(g["prompt"], text, self.tok, g.get("system"), g.get("template"))
        ids = self.tok(prompt, add_special_tokens=self.add_special)["input_ids"]
        if len(ids) <= self.max_prompt:
            return prompt, ids, False
        text_ids = self.tok(text, add_special_tokens=False)["input_ids"]
        keep = max(0, len(text_ids) - (len(ids) - self.max_prompt))
        while True:
            cut = self.tok.decode(text_ids[:keep], skip_special_tokens=True)
            prompt = render(g["prompt"], cut, self.tok, g.get("system"), g.get("template"))
            ids = self.tok(prompt, add_special_tokens=self.add_special)["input_ids"]
            if len(ids) <= self.max_prompt or keep == 0:
                return prompt, ids, True
            keep = max(0, keep - (len(ids) - self.max_prompt))

    def batches(self, records: list[dict]):
        """Length-sorted batches of (record, prompt ids, truncated): similar lengths pad little."""
        prepared = [(rec, *self.prompt_for(rec)[1:]) for rec in records]
        order = sorted(range(len(prepared)), key=lambda i: (len(prepared[i][1]), i))
        for start in range(0, len(order), self.batch_size):
            yield [prepared[i] for i in order[start:start + self.batch_size]]

    @torch.inference_mode()
    def run_batch(self, batch) -> list[tuple[str, dict]]:
        name = self.gen["name"]
        ids = [b[1] for b in batch]
        enc = self.tok.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        seeds = None if self.greedy else [row_seed(self.seed, name, b[0]["id"]) for b in batch]
        sampler = RowSampler(seeds, self.temperature, self.top_p)
        cfg = GenerationConfig(max_new_tokens=self.max_new, do_sample=False, pad_token_id=self.tok.pad_token_id,
                               eos_token_id=sorted(self.end_ids - {self.tok.pad_token_id} or self.end_ids),
                               stop_strings=self.stops or None)
        out = self.model.generate(**enc, generation_config=cfg, logits_processor=LogitsProcessorList([sampler]),
                                  tokenizer=self.tok if self.stops else None)
        new = out if self.kind == "seq2seq" else out[:, enc["input_ids"].shape[1]:]
        if self.kind == "seq2seq":
            new = new[:, 1:]  # the decoder start token
        steps = torch.stack(sampler.step_logprobs, dim=1).cpu() if sampler.step_logprobs else torch.zeros(len(batch), 0)
        new = new.cpu()
        results = []
        for row, (rec, prompt_ids, truncated) in enumerate(batch):
            text, n, flags = finish_row(self, new[row].tolist(), truncated)
            results.append((rec["id"], self.candidate(text, len(prompt_ids), n,
                                                      float(steps[row, :n].sum()), flags)))
        return results

    def candidate(self, text, n_prompt, n_tokens, logprobs, flags) -> dict:
        g = self.gen
        settings = {"max_new_tokens": self.max_new}
        if not self.greedy:
            settings.update(temperature=self.temperature, top_p=self.top_p)
        return {"model": g["name"], "decoding_method": "greedy" if self.greedy else "top_p_sampling",
                "text": text, "n_prompt_tokens": n_prompt, "n_tokens": n_tokens, "logprobs": round(logprobs, 4),
                "flags": flags, "base_model": g["model"], "prompt": g["prompt"], "decoding": settings}
