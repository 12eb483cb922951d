"""The `openai` backend: any OpenAI-compatible chat endpoint through the official `openai` client.

OpenAI itself, or a vLLM / llama.cpp / TGI server the user runs (`openai.base_url`). The key comes
from the environment variable the config names (`openai.api_key_env`), never from a file, and is
never logged. Requests run `concurrency` at a time; the client retries 408/429/5xx and connection
errors with exponential backoff and honours a 429's Retry-After (`max_retries` times). Past that
the job fails naming the generator, the record and the last error; the records already finished
are on disk and a rerun resumes after them (see shards.py).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

from llmblend.errors import ConfigError, LLMBlendError
from llmblend.generate.hf import row_seed
from llmblend.generate.prompts import user_text

log = logging.getLogger("llmblend.generate")


class EndpointError(LLMBlendError):
    """The endpoint kept failing; `done` holds the (id, candidate) pairs finished before it did."""

    def __init__(self, message: str, done: list):
        super().__init__(message)
        self.done = done


class OpenAIBackend:
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
        self.client = client or openai.OpenAI(base_url=oa.get("base_url"), api_key=key,
                                              max_retries=oa.get("max_retries", 5), timeout=oa.get("timeout", 60.0))
        dec = gen["decoding"]
        self.greedy = dec.get("method", "top_p_sampling") == "greedy"
        self.params = {"max_tokens": dec.get("max_new_tokens", 256),
                       "temperature": 0.0 if self.greedy else dec.get("temperature", 0.7)}
        if not self.greedy:
            self.params["top_p"] = dec.get("top_p", 1.0)
        if gen.get("stop"):
            self.params["stop"] = gen["stop"]
        self.want_logprobs = oa.get("logprobs", False)
        if self.want_logprobs:
            self.params["logprobs"] = True

    def batches(self, records):
        step = self.concurrency * 4
        for i in range(0, len(records), step):
            yield records[i:i + step]

    def messages(self, rec: dict) -> list[dict]:
        system = self.gen.get("system")
        return ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user_text(rec)}]

    def one(self, rec: dict) -> tuple[str, dict]:
        resp = self.client.chat.completions.create(model=self.model, messages=self.messages(rec),
                                                   seed=row_seed(self.seed, self.gen["name"], rec["id"]),
                                                   **self.params)
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
        settings = dict(self.params)
        return rec["id"], {
            "model": self.gen["name"], "decoding_method": "greedy" if self.greedy else "top_p_sampling",
            "text": text, "n_prompt_tokens": usage.prompt_tokens if usage else None,
            "n_tokens": usage.completion_tokens if usage else None, "logprobs": logprobs, "flags": flags,
            "base_model": self.model, "prompt": "chat", "decoding": settings}

    def run_batch(self, batch) -> list[tuple[str, dict]]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [(rec, pool.submit(self.one, rec)) for rec in batch]
        done, error = [], None
        for rec, fut in futures:
            try:
                done.append(fut.result())
            except Exception as e:  # the client already retried; report the last error, keep the rest
                error = error or (rec, e)
        if error:
            rec, e = error
            raise EndpointError(f"generator {self.gen['name']} (model {self.model}): record {rec['id']} failed "
                                f"after retries: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}",
                                done)
        return done
