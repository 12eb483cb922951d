"""The `openai` backend: any OpenAI-compatible chat endpoint through the official `openai` client.

OpenAI itself, or a vLLM / llama.cpp / TGI server the user runs (`openai.base_url`). The key comes
from the environment variable the config names (`openai.api_key_env`), never from a file, and is
never logged or written (error texts are scrubbed of it). Requests run `concurrency` at a time.

Retries are ours, not the client's (`max_retries=0` on the client; see llmblend/openai_retry.py):
connection errors, timeouts, 408/409/429, 5xx and malformed or cut-off replies are retried up to
`max_retries` times with exponential backoff and full jitter (`backoff_s`, capped at
`max_backoff_s`), never sooner than a Retry-After asks; any other 4xx is final at once. Past that the
job fails naming the generator, the record and the last error; the records already finished are on
disk and a rerun resumes after them (see shards.py). The shard report carries this run's accounting:
calls, retries, faults by kind, prompt and completion tokens.
"""

from __future__ import annotations

import logging
import os
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed

from llmblend.errors import ConfigError, LLMBlendError
from llmblend.generate.backend import GenerationBackend, decoding_of
from llmblend.generate.hf import row_seed
from llmblend.generate.prompts import user_text
from llmblend.openai_retry import Fault, GaveUp, MalformedReply, Retrier

log = logging.getLogger("llmblend.generate")


class EndpointError(LLMBlendError):
    """The endpoint kept failing; `done` holds the (id, candidate) pairs finished before it did."""

    def __init__(self, message: str, done: list):
        super().__init__(message)
        self.done = done


class RecordFailed(Exception):
    """One record's last fault, after its attempts (turned into an EndpointError by run_batch)."""

    def __init__(self, fault: Fault, error_type: str, attempts: int):
        super().__init__(fault.message)
        self.fault, self.error_type, self.attempts = fault, error_type, attempts


class OpenAIBackend(GenerationBackend):
    streams = True  # each answer is logged as it arrives: a kill loses no paid answer

    def __init__(self, gen: dict, seed: int, client=None):
        import openai

        self.gen, self.seed = gen, seed
        oa = gen["openai"]
        self.model = oa["model"]
        self.concurrency = oa.get("concurrency", 4)
        env = oa.get("api_key_env", "OPENAI_API_KEY")
        key = os.environ.get(env) if env else "not-needed"
        if not key:
            raise ConfigError(f"generator {gen['name']}: set the environment variable {env} to the endpoint's API key")
        self.client = client or openai.OpenAI(base_url=oa.get("base_url"), api_key=key, max_retries=0,
                                              timeout=oa.get("timeout", 60.0))
        dec = decoding_of(gen)
        self.greedy = dec["method"] == "greedy"
        self.params = {"max_tokens": dec["max_new_tokens"], "temperature": 0.0 if self.greedy else dec["temperature"]}
        if not self.greedy:
            self.params["top_p"] = dec["top_p"]
        if gen.get("stop"):
            self.params["stop"] = gen["stop"]
        self.want_logprobs = oa.get("logprobs", False)
        if self.want_logprobs:
            self.params["logprobs"] = True
        # run accounting (this process only): calls, retries, faults by kind, tokens
        self.stats: Counter = Counter()
        self.faults: Counter = Counter()
        # the openai client's own backoff defaults (0.5 s doubling, at most 8 s)
        self.retrier = Retrier(oa.get("max_retries", 5) + 1, oa.get("backoff_s", 0.5), oa.get("max_backoff_s", 8.0),
                               self.stats, self.faults, log=log)
        self.retrier.key = key if env else None

    def batches(self, records):
        step = self.concurrency * 4
        for i in range(0, len(records), step):
            yield records[i:i + step]

    def messages(self, rec: dict) -> list[dict]:
        system = self.gen.get("system")
        return ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user_text(rec)}]

    def scrub(self, text: str) -> str:
        return self.retrier.scrub(text)

    def one(self, rec: dict) -> tuple[str, dict]:
        """One record: ask until a well-formed reply, a final error, or max_retries retries."""
        rng = random.Random(f"{self.seed}|{self.gen['name']}|{rec['id']}")  # reproducible backoff
        seed = row_seed(self.seed, self.gen["name"], rec["id"])

        def attempt() -> dict:
            resp = self.client.chat.completions.create(model=self.model, messages=self.messages(rec), seed=seed,
                                                       **self.params)
            return self.candidate(resp)  # a reply without a message raises MalformedReply: retried

        try:
            cand, _ = self.retrier.call(attempt, rng, f"generator {self.gen['name']} record {rec['id']}")
        except GaveUp as e:
            raise RecordFailed(e.fault, e.error_type, e.attempts) from None
        self.retrier.count(self.stats, "prompt_tokens", cand["n_prompt_tokens"] or 0)
        self.retrier.count(self.stats, "completion_tokens", cand["n_tokens"] or 0)
        return rec["id"], cand

    def candidate(self, resp) -> dict:
        if not getattr(resp, "choices", None) or resp.choices[0].message is None:
            raise MalformedReply("the reply has no choices[0].message")
        choice = resp.choices[0]
        text = (choice.message.content or "").strip()
        logprobs = None
        if self.want_logprobs and choice.logprobs is not None and choice.logprobs.content:
            logprobs = round(sum(t.logprob for t in choice.logprobs.content), 4)
        flags = []
        if not text:
            flags.append("empty")
        if choice.finish_reason == "length":
            flags.append("length_capped")
        usage = resp.usage
        return {
            "model": self.gen["name"], "decoding_method": "greedy" if self.greedy else "top_p_sampling",
            "text": text, "n_prompt_tokens": usage.prompt_tokens if usage else None,
            "n_tokens": usage.completion_tokens if usage else None, "logprobs": logprobs, "flags": flags,
            "base_model": self.model, "prompt": "chat", "decoding": dict(self.params)}

    def run_batch(self, batch, on_result=None) -> list[tuple[str, dict]]:
        """Answers of a batch. `on_result` (called in this thread) gets each answer as soon as it
        arrives, so a killed job keeps every answer it was paid for, not only finished batches."""
        done, errors = [], []
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self.one, rec): k for k, rec in enumerate(batch)}
            for fut in as_completed(futures):
                try:
                    res = fut.result()
                except RecordFailed as e:  # keep the rest of the batch; report the first record that failed
                    errors.append((futures[fut], e))
                    continue
                done.append(res)
                if on_result is not None:
                    on_result(res)
        if errors:
            k, e = min(errors, key=lambda x: x[0])
            rec = batch[k]
            log.warning("generator %s: this run's accounting at the failure: %s", self.gen["name"], self.accounting())
            raise EndpointError(self.scrub(
                f"generator {self.gen['name']} (model {self.model}): record {rec['id']} failed after "
                f"{e.attempts} attempt(s); last error ({e.fault.kind}): {e.error_type}: {e.fault.message}"), done)
        return done

    def accounting(self) -> dict:
        with self.retrier.lock:
            return {"calls": self.stats["calls"], "retries": self.stats["retries"],
                    "faults": dict(sorted(self.faults.items())),
                    "tokens": {"prompt": self.stats["prompt_tokens"], "completion": self.stats["completion_tokens"]}}

    def report(self, records) -> dict:
        """Added to the shard report: what this run asked and met (a resumed shard: its own share)."""
        return self.accounting()
