"""The `ctranslate2` backend: a CTranslate2 Generator (int8 weights on CPU) behind the hf interface.

Prompts are the hf backend's (same chat template, few-shot or template prompt, same truncation
rule, applied with the transformers tokenizer); CTranslate2 gets the prompt's tokens and decodes.

Reproducibility (docs/generate.md, "ctranslate2"): CTranslate2 samples a whole batch from one
random generator, which lives in its worker thread and is seeded once, when that thread first
samples. So the batches are a fixed function of the shard: all its records, sorted by (prompt
tokens, position), cut every `batch_size`; before a sampled batch the seed is set from (seed,
generator, the batch's first record id) and a fresh Generator (a fresh worker thread) is loaded.
A record's text thus depends on its shard's records and the batch size, never on a rerun or a
resume. A resumed shard reruns its first unfinished batch whole and writes only the records the
killed run had not written.

`logprobs`: the sum of the generated tokens' log-probabilities under the model's own distribution
(temperature 1, no top-p; CTranslate2 reports these, not the tempered ones), up to and excluding
the end-of-sequence token, as in the hf backend.
"""

from __future__ import annotations

import hashlib
import logging
import time

from llmblend.generate.backend import GenerationBackend, decoding_of
from llmblend.generate.hf import HFBackend, finish_row
from llmblend.generate.prompts import default_stops
from llmblend.models.ct2_convert import read_meta
from llmblend.models.resolve import resolve

log = logging.getLogger("llmblend.generate")

MIN_STATIC_TOKENS = 8  # a shorter shared prefix is not worth a separate pass


def batch_seed(seed: int, generator: str, first_id: str) -> int:
    digest = hashlib.sha256(f"{seed}|{generator}|batch|{first_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little")  # CTranslate2 takes an unsigned 32-bit seed


class CT2Backend(GenerationBackend):
    """One generator on a CTranslate2 model directory (made by `llmblend convert-ct2`)."""

    # the same prompt text, tokens and truncation rule as hf; the same candidate record
    prompt_for = HFBackend.prompt_for
    candidate = HFBackend.candidate

    def __init__(self, gen: dict, model_cfg: dict, spec: str, seed: int, threads: int = 2):
        from transformers import AutoTokenizer

        self.gen, self.seed, self.threads = gen, seed, threads
        self.path = str(resolve(spec))
        self.meta = read_meta(self.path)
        ct2 = gen.get("ct2", {})
        self.batch_size = ct2.get("batch_size", 64)
        self.compute_type = self.meta["quantization"]
        self.tok = AutoTokenizer.from_pretrained(self.path)
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        dec = decoding_of(gen)
        self.max_new = dec["max_new_tokens"]
        self.greedy = dec["method"] == "greedy"
        self.temperature, self.top_p = dec["temperature"], dec["top_p"]
        self.stops = gen.get("stop", default_stops(gen["prompt"]))
        self.max_prompt = gen.get("max_prompt_tokens") or max(16, self.meta["max_position_embeddings"] - self.max_new)
        self.add_special = gen["prompt"] != "chat"
        self.end_ids = set(self.meta["eos_token_ids"]) | {self.tok.eos_token_id} - {None}
        t0 = time.time()
        self.generator = self._load()
        log.info("%s: loaded %s (CTranslate2 %s, %d threads) in %.1f s", gen["name"], self.path, self.compute_type,
                 threads, time.time() - t0)

    def _load(self):
        import ctranslate2

        return ctranslate2.Generator(self.path, device="cpu", compute_type=self.compute_type,
                                     intra_threads=self.threads, inter_threads=1)

    def shard_batches(self, records: list[dict], done=()):
        """Length-sorted batches of the shard's full record list; batches whose records are all in
        `done` are skipped, a partly done batch is run whole (its finished rows are not returned)."""
        prepared = [(rec, *self.prompt_for(rec)[1:]) for rec in records]
        order = sorted(range(len(prepared)), key=lambda i: (len(prepared[i][1]), i))
        for start in range(0, len(order), self.batch_size):
            batch = [prepared[i] + (prepared[i][0]["id"] in done,) for i in order[start:start + self.batch_size]]
            if not all(row[3] for row in batch):
                yield batch

    def batches(self, records: list[dict]):
        return self.shard_batches(records)

    def run_batch(self, batch) -> list[tuple[str, dict]]:
        import ctranslate2

        if not self.greedy:
            # the worker thread's generator is seeded when it first samples: new seed, new Generator
            del self.generator
            ctranslate2.set_random_seed(batch_seed(self.seed, self.gen["name"], batch[0][0]["id"]))
            self.generator = self._load()
        steps = [[] for _ in batch]  # per row: (token id, log-prob) as decoded
        # the callback must not hold `self`: CTranslate2's worker thread may drop the last reference
        # to it, and a Generator freed in its own worker thread aborts the process
        tok, stops, end_ids = self.tok, self.stops, self.end_ids

        def on_step(step) -> bool:
            row = steps[step.batch_id]
            row.append((step.token_id, step.log_prob))
            if stops and step.token_id not in end_ids:
                text = tok.decode([t for t, _ in row[-16:]], skip_special_tokens=True)
                return any(s in text for s in stops)  # True stops this row
            return False

        # the tokens every prompt of the batch starts with (the few-shot examples, a system turn) are
        # run once as CTranslate2's static prompt, not once per row
        ids = [b[1] for b in batch]
        shared = 0
        while shared < min(map(len, ids)) - 1 and all(row[shared] == ids[0][shared] for row in ids):
            shared += 1
        kw = {"sampling_topk": 1} if self.greedy else {
            "sampling_topk": 0, "sampling_topp": self.top_p, "sampling_temperature": self.temperature}
        if shared >= MIN_STATIC_TOKENS:
            kw["static_prompt"] = self.tok.convert_ids_to_tokens(ids[0][:shared])
        else:
            shared = 0
        prompts = [self.tok.convert_ids_to_tokens(row[shared:]) for row in ids]
        self.generator.generate_batch(prompts, max_batch_size=len(batch), max_length=self.max_new,
                                      end_token=sorted(self.end_ids), include_prompt_in_result=False,
                                      return_scores=True, callback=on_step, **kw)
        results = []
        for row, (rec, prompt_ids, truncated, done) in enumerate(batch):
            if done:
                continue
            text, n, flags = finish_row(self, [t for t, _ in steps[row]], truncated)
            logprob = float(sum(lp for _, lp in steps[row][:n]))
            results.append((rec["id"], self.candidate(text, len(prompt_ids), n, logprob, flags)))
        return results
