"""The LLM aggregator (rule aggregate_candidates): a chat model, with no training, reads the top K
candidates of each test record and writes one answer (the Mixture-of-Agents aggregation step,
prompted in this project's own words). It runs through the generation backends
(llmblend.generate: `openai` for any OpenAI-compatible server, `hf` or `ctranslate2` for a local
model), configured as one generator under `fuser.aggregator.generator`.

Cache: every answer is stored in a SQLite file (not a rule output, like the judge's label cache)
the moment it arrives, keyed by the prompt version, the generator settings, the model, the seed,
the record id and the prompt text; a rerun asks only what is missing (none: no call).
Cost (openai backend): before the first call the uncached prompts are priced (~4 characters a
token, `max_new_tokens` per reply, `prompt_usd_per_1m` / `completion_usd_per_1m`); above
`max_usd` the stage refuses to start unless --allow-over-budget, and it stops starting calls once
the spend summed from the replies' usage reaches `max_usd` (what was paid is cached).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter

from llmblend.errors import ConfigError, LLMBlendError
from llmblend.fuser.data import iter_ranked
from llmblend.fuser.infer import KEEP
from llmblend.fuser.kinds import KINDS
from llmblend.generate.backend import decoding_of
from llmblend.io import write_json, write_jsonl
from llmblend.judge.cache import cache_key

log = logging.getLogger("llmblend.fuser")

AGGREGATED_MODEL = KINDS["aggregated"]["model"]
# a change to the wording below must bump the version: it is part of every cache key and output
PROMPT_VERSION = "aggregate-v1"
HEADER = ("Several assistants answered the instruction below. Their answers may be incomplete or wrong, "
          "and they may disagree. Write one answer to the instruction: keep what is correct and useful in "
          "them, correct or drop what is wrong, and make it complete on its own. Do not mention the "
          "assistants or their answers. Reply with the answer only.")
DEFAULTS = {"top_k": 3, "candidate_max_words": 200, "instruction_max_words": 256, "max_usd": None,
            "prompt_usd_per_1m": 0.0, "completion_usd_per_1m": 0.0}
ELLIPSIS = "..."


class BudgetExhausted(LLMBlendError):
    """The spend reached fuser.aggregator.max_usd: the run stopped; what was paid is cached."""


def clip_words(text: str, budget: int) -> tuple[str, bool]:
    words = text.split()
    if len(words) <= budget:
        return text.strip(), False
    return " ".join(words[:budget]) + ELLIPSIS, True


def aggregate_prompt(instruction: str, input_text: str, answers: list[str], acfg: dict) -> tuple[str, int]:
    """The user turn asking to synthesise `answers` (best first); returns (text, answers cut)."""
    instruction, _ = clip_words(instruction, acfg["instruction_max_words"])
    parts = [HEADER, f"Instruction:\n{instruction}"]
    if input_text:
        parts.append(f"Input:\n{clip_words(input_text, acfg['instruction_max_words'])[0]}")
    n_cut = 0
    for i, a in enumerate(answers, 1):
        text, cut = clip_words(a, acfg["candidate_max_words"])
        n_cut += cut
        parts.append(f"Answer {i}:\n{text}")
    return "\n\n".join(parts), n_cut


class AnswerCache:
    """One SQLite file; a row per answer, committed as it arrives (a killed run keeps them), opened as
    the judge's label cache is, since both live under `shared_dir` on a cluster."""

    def __init__(self, path):
        from llmblend.judge.cache import open_shared_sqlite

        self.conn = open_shared_sqlite(path)
        self.conn.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, candidate TEXT NOT NULL,"
                          " usd REAL, created REAL)")

    def get_many(self, keys) -> dict:
        out = {}
        keys = list(keys)
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = f"SELECT key, candidate FROM answers WHERE key IN ({','.join('?' * len(chunk))})"
            out.update({k: json.loads(c) for k, c in self.conn.execute(q, chunk)})
        return out

    def put(self, key: str, candidate: dict, usd: float) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)",
                              (key, json.dumps(candidate, ensure_ascii=False), usd, time.time()))

    def close(self) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()


def settings(cfg: dict) -> tuple[dict, dict]:
    """(aggregator settings over the defaults, its generator)."""
    acfg = (cfg.get("fuser") or {}).get("aggregator")
    if not acfg:
        raise ConfigError("config key 'fuser.aggregator' is missing: the aggregator needs a generator")
    acfg = {**DEFAULTS, **acfg}
    gen = acfg["generator"]
    if gen["backend"] == "import":
        raise ConfigError("config key 'fuser.aggregator.generator.backend': import replays released answers; "
                          "the aggregator needs a model (openai, hf or ctranslate2)")
    return acfg, gen


def usd(acfg: dict, prompt_tokens: float, completion_tokens: float) -> float:
    return (prompt_tokens * acfg["prompt_usd_per_1m"] + completion_tokens * acfg["completion_usd_per_1m"]) / 1e6


def aggregate_split(cfg: dict, split_path, out_path, cache_path, rankings_path=None, model_arg: str | None = None,
                    report_path=None, allow_over_budget: bool = False, backend=None, threads: int | None = None) -> dict:
    """Aggregate the top K of every test record; `backend` may be given (tests); `threads`: a
    CTranslate2 model's (generate.shards.make_backend)."""
    from llmblend.generate.shards import make_backend

    acfg, gen = settings(cfg)
    ranker = cfg["fuser"]["ranker"]
    records, names = [], []
    n_cut = 0
    for _, rec, order in iter_ranked(split_path, ranker, rankings_path):
        top = order[: acfg["top_k"]]
        prompt, cut = aggregate_prompt(rec["instruction"], rec.get("input", ""),
                                       [rec["candidates"][j].get("text", "") for j in top], acfg)
        n_cut += cut
        records.append({**{k: rec[k] for k in KEEP if k in rec}, "_prompt": prompt})
        names.append([rec["candidates"][j].get("model", f"#{j}") for j in top])
    model_id = {"models": cfg.get("models", {}).get(gen.get("model")), "model_arg": model_arg}
    keys = [cache_key(PROMPT_VERSION, gen, model_id, cfg["seed"], r["id"], r["_prompt"]) for r in records]
    cache = AnswerCache(cache_path)
    try:
        done = cache.get_many(set(keys))
        todo = [i for i, k in enumerate(keys) if k not in done]
        spent, stats = 0.0, Counter(cached=len(records) - len(todo))
        if todo and gen["backend"] == "openai":
            est = usd(acfg, sum(len(records[i]["_prompt"]) / 4 + 8 for i in todo),
                      len(todo) * decoding_of(gen)["max_new_tokens"])
            msg = (f"aggregator cost estimate: {len(todo)} calls to make ({stats['cached']} cached), about "
                   f"{est:.4f} USD (model {gen['openai']['model']}; cap fuser.aggregator.max_usd = {acfg['max_usd']})")
            print(msg, flush=True)
            log.info("%s", msg)
            if acfg["max_usd"] is not None and est > acfg["max_usd"] and not allow_over_budget:
                raise LLMBlendError(f"{msg}: the estimate is above the cap; raise fuser.aggregator.max_usd or pass "
                                    "--allow-over-budget (the run then stops when the cap is reached)")
        if todo:
            backend = backend or make_backend(cfg, gen, model_arg, threads=threads)
            # calls are started a few at a time on an API, so the cap stops the run close to it
            step = gen.get("openai", {}).get("concurrency", 4) if gen["backend"] == "openai" else len(todo)
            for start in range(0, len(todo), step):
                if acfg["max_usd"] is not None and spent >= acfg["max_usd"]:
                    raise BudgetExhausted(f"fuser.aggregator.max_usd = {acfg['max_usd']} reached (spent {spent:.4f} "
                                          f"USD); {len(todo) - start} answers are missing. Every paid answer is "
                                          "cached: raise the cap and rerun to continue")
                chunk = [{"id": records[i]["id"], "instruction": records[i]["_prompt"], "input": ""}
                         for i in todo[start:start + step]]
                key_of = {records[i]["id"]: keys[i] for i in todo[start:start + step]}
                for batch in backend.batches(chunk):
                    try:
                        results = backend.run_batch(batch)
                    except LLMBlendError as e:
                        for rid, cand in getattr(e, "done", []):
                            cache.put(key_of[rid], cand, usd(acfg, cand.get("n_prompt_tokens") or 0,
                                                             cand.get("n_tokens") or 0))
                        raise
                    for rid, cand in results:
                        cost = usd(acfg, cand.get("n_prompt_tokens") or 0, cand.get("n_tokens") or 0) \
                            if gen["backend"] == "openai" else 0.0
                        spent += cost
                        cache.put(key_of[rid], cand, cost)
                        done[key_of[rid]] = cand
                        stats["asked"] += 1
    finally:
        cache.close()
    rows, flags = [], Counter()
    for rec, key, src in zip(records, keys, names):
        cand = done[key]
        flags.update(cand.get("flags", []))
        if len(src) < acfg["top_k"]:
            flags["fewer_than_k"] += 1
        row = {k: v for k, v in rec.items() if k != "_prompt"}
        row["candidates"] = [{"model": AGGREGATED_MODEL, "decoding_method": cand.get("decoding_method"),
                              "text": cand["text"], "n_tokens": cand.get("n_tokens"),
                              "n_prompt_tokens": cand.get("n_prompt_tokens"), "flags": cand.get("flags", []),
                              "aggregated_from": src, "generator": gen["name"], "base_model": cand.get("base_model"),
                              "prompt_version": PROMPT_VERSION}]
        rows.append(row)
    write_jsonl(out_path, rows)
    report = {"records": len(rows), "ranker": ranker, "prompt_version": PROMPT_VERSION, "generator": gen["name"],
              "backend": gen["backend"], "top_k": acfg["top_k"], "candidates_cut": n_cut,
              "flags": dict(sorted(flags.items())),
              "new_tokens": sum(r["candidates"][0]["n_tokens"] or 0 for r in rows)}
    if report_path:
        write_json(report_path, report)
    # calls and spend of this run go to the log: a rerun from the cache writes the same artifacts
    log.info("aggregated %d records: %d asked now, %d from the cache, %.4f USD spent", len(rows), stats["asked"],
             stats["cached"], spent)
    return {**report, "asked": stats["asked"], "cached": stats["cached"], "spent_usd": spent}
