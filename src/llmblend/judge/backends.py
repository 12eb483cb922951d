"""Judge backends: one interface, `judge(jobs) -> [result]`, for a list of shown pairs.

A job is (example record, shown A model, shown B model, text A, text B); a result is a dict with
`label` (one of labels.ALL_LABELS) and optionally `reason`. Backends:

- RubricJudge: the demo items' rubric checks (offline, exact).
- ReplayJudge: labels that already exist (MixInstruct `cmp_results`; AlpacaEval GPT-4 judgments
  against the fixed reference, turned into pair labels).
- OpenAIJudge: an LLM judge through the official `openai` client, cached, retried, budgeted.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from llmblend.errors import InputError, LLMBlendError
from llmblend.judge.cache import LabelCache, cache_key
from llmblend.judge.labels import (A_BETTER, B_BETTER, ERROR, SAME_BAD, SAME_GOOD, UNPARSABLE, label_for,
                                   parse_reply)
from llmblend.judge.prompt import NO_REFERENCE_VERSION, PROMPT_VERSION, build_messages
from llmblend.openai_retry import GaveUp, Retrier, Unusable

log = logging.getLogger("llmblend.judge")

OPENAI_DEFAULTS = {"model": "gpt-3.5-turbo", "base_url": None, "api_key_env": "OPENAI_API_KEY", "temperature": 0.0,
                   "max_tokens": 16, "timeout_s": 60.0, "max_attempts": 6, "backoff_s": 1.0, "max_backoff_s": 60.0,
                   "concurrency": 4, "prompt_usd_per_1m": 0.5, "completion_usd_per_1m": 1.5,
                   "batch_discount": 0.5, "completion_window": "24h"}


class BudgetExhausted(LLMBlendError):
    """The spend reached judge.max_usd: the run stopped; what was paid is cached."""


class EndpointUnreachable(LLMBlendError):
    """No reply ever came from the endpoint (connection errors, timeouts) after a pair's retries:
    the run stops and caches nothing as an error, so a rerun asks again."""


# ---------------------------------------------------------------------------------------------
# rubric


def rubric_label(passed_a: list[bool], passed_b: list[bool]) -> str:
    """More checks passed wins; both pass all: Same good; equal counts otherwise: Same bad.

    Equal partial counts are "Same bad": a rubric check is part of the instruction, so an answer
    failing one does not follow it, and neither answer is better by the rubric's measure.
    """
    na, nb, total = sum(passed_a), sum(passed_b), len(passed_a)
    if na > nb:
        return A_BETTER
    if nb > na:
        return B_BETTER
    return SAME_GOOD if na == total else SAME_BAD


class RubricJudge:
    name = "rubric"

    def __init__(self):
        from llmblend.data.rubric import evaluate_rubric

        self._evaluate = evaluate_rubric
        self.meta = {"backend": "rubric", "model": "rubric-checks", "temperature": None, "prompt_version": None}
        self.stats: Counter = Counter()

    def judge(self, jobs) -> list[dict]:
        out = []
        for ex, a, b, ta, tb in jobs:
            rubric = ex.get("rubric")
            if not isinstance(rubric, list) or not rubric:
                raise InputError(ex.get("_where", "?"), ex.get("_line"), "rubric",
                                 "missing or empty: the rubric judge needs the demo items' checks")
            out.append({"label": rubric_label(self._evaluate(ta, rubric), self._evaluate(tb, rubric))})
            self.stats["judged"] += 1
        return out


# ---------------------------------------------------------------------------------------------
# replay


def alpaca_pair_label(pref_a: float, pref_b: float) -> str:
    """Two models' GPT-4 preferences against the same reference -> a label for (A, B).

    Each preference reads as a level: 2 = better than the reference, 1.5 = tie, 1 = worse. Both
    better or both tied: Same good (both at least as good as the reference); both worse: Same bad;
    otherwise the higher level wins (so "tied the reference" beats "lost to it" and loses to "beat it").
    """
    if pref_a == pref_b:
        return SAME_BAD if pref_a == 1 else SAME_GOOD
    return A_BETTER if pref_a > pref_b else B_BETTER


class ReplayJudge:
    """Released labels; which release is chosen by the profile's data source type."""

    name = "replay"

    def __init__(self, cfg: dict, split: str, records: list[dict]):
        from llmblend.config import mirror_root

        self.stats: Counter = Counter()
        sources = cfg["data"]["sources"]
        kinds = [s for s in sources if s["type"] in ("mixinstruct", "alpaca_eval")]
        if len(kinds) != 1:
            raise LLMBlendError("the replay judge needs exactly one data source of type mixinstruct or alpaca_eval, "
                                f"found {[s['type'] for s in sources]}")
        self.spec, self.mirror = kinds[0], mirror_root(cfg)
        if self.spec["type"] == "mixinstruct":
            self._load_mixinstruct(split)
            self.meta = {"backend": "replay", "model": "mixinstruct:chatgpt (gpt-3.5-turbo, 2023)",
                         "temperature": 0.0, "prompt_version": "llm-blender-gpt_eval"}
        else:
            models = sorted({c["model"] for r in records for c in r["candidates"]})
            self._load_alpaca_eval(models)
            self.meta = {"backend": "replay", "model": "alpaca_eval_gpt4 (vs text_davinci_003)",
                         "temperature": None, "prompt_version": "alpaca_eval_gpt4"}

    def _load_mixinstruct(self, split):
        import json

        from llmblend.data.sources.mixinstruct import released_path
        from llmblend.io import iter_jsonl

        if split not in self.spec["files"]:
            raise LLMBlendError(f"the MixInstruct release has no {split} file configured: no labels to replay")
        path = released_path(self.spec, split, self.mirror)
        self.released = {}
        for lineno, rec in iter_jsonl(path, {"id": str}):
            raw = rec.get("cmp_results")
            if isinstance(raw, str):
                try:
                    raw = json.loads(raw)
                except ValueError:
                    raise InputError(path, lineno, "cmp_results", "not a JSON string") from None
            if raw is None:
                self.stats["examples_without_released_labels"] += 1
                continue
            if not isinstance(raw, dict):
                raise InputError(path, lineno, "cmp_results", f"expected an object, got {type(raw).__name__}")
            self.released[rec["id"]] = raw

    def _load_alpaca_eval(self, models):
        from llmblend.data.fetch import fetch
        from llmblend.data.sources.alpaca_eval import annotation_url, norm_instruction
        from llmblend.io import read_json

        self.prefs: dict[str, dict[str, float | None]] = {}
        self.outputs: dict[str, dict[str, str]] = {}
        for model in models:
            path = fetch(annotation_url(self.spec, model), self.mirror)
            rows = read_json(path)
            if not isinstance(rows, list):
                raise InputError(path, problem="expected a JSON list of annotations")
            for i, row in enumerate(rows):
                if not isinstance(row.get("instruction"), str):
                    raise InputError(path, None, f"[{i}].instruction", "missing or not a string")
                pref = row.get("preference")
                if pref is not None and not isinstance(pref, (int, float)):
                    raise InputError(path, None, f"[{i}].preference", f"expected a number, got {pref!r}")
                key = norm_instruction(row["instruction"])
                usable = pref in (1, 1.5, 2)
                if not usable:
                    self.stats["unusable_annotations"] += 1
                self.prefs.setdefault(key, {})[model] = float(pref) if usable else None
                self.outputs.setdefault(key, {})[model] = row.get("output_2") or ""

    def judge(self, jobs) -> list[dict]:
        out = []
        for ex, a, b, ta, tb in jobs:
            if self.spec["type"] == "mixinstruct":
                label = label_for(self.released.get(ex["id"], {}), a, b)
                reason = "no released label for this pair"
            else:
                from llmblend.data.sources.alpaca_eval import norm_instruction

                key = norm_instruction(ex["instruction"])
                prefs = self.prefs.get(key, {})
                pa, pb = prefs.get(a), prefs.get(b)
                label = alpaca_pair_label(pa, pb) if pa is not None and pb is not None else None
                reason = ("no annotation" if a not in prefs or b not in prefs
                          else "unusable preference (0 or null)")
                for m, t in ((a, ta), (b, tb)):
                    if m in prefs and " ".join(self.outputs[key][m].split()) != " ".join(t.split()):
                        self.stats["candidate_text_differs_from_annotated"] += 1
            if label is None:
                self.stats["dropped_pairs"] += 1
                out.append({"label": None, "reason": reason})
            else:
                self.stats["judged"] += 1
                out.append({"label": label})
        return out


# ---------------------------------------------------------------------------------------------
# openai


class OpenAIJudge:
    """Chat-completions judge with a cache, retries (backoff + full jitter), and a spending cap."""

    name = "openai"

    def __init__(self, cfg: dict, cache: LabelCache, seed: int = 0, max_usd: float | None = None,
                 retry_errors: bool = False, client=None, with_reference: bool = True):
        """with_reference=False: the prompt shows no reference answer (judging an answer against the
        reference itself, judge_fused's AlpacaEval mode)."""
        self.o = {**OPENAI_DEFAULTS, **(cfg.get("openai") or {})}
        self.cache, self.seed, self.max_usd, self.retry_errors = cache, seed, max_usd, retry_errors
        self.with_reference = with_reference
        self.prompt_version = PROMPT_VERSION if with_reference else NO_REFERENCE_VERSION
        self.meta = {"backend": "openai", "model": self.o["model"], "temperature": self.o["temperature"],
                     "prompt_version": self.prompt_version}
        self.stats: Counter = Counter()
        self.spent_usd = 0.0
        self._stop = threading.Event()
        # calls, retries and faults count into self.stats, under the judge's names (backend_stats)
        self.retrier = Retrier(self.o["max_attempts"], self.o["backoff_s"], self.o["max_backoff_s"], self.stats,
                               self.stats, _stat_name, self._stop, log)
        self._lock = self.retrier.lock
        self._client = client
        self._reached = False      # any HTTP answer from the endpoint in this run
        self._unreachable = None   # the EndpointUnreachable message, once raised

    # -- pieces shared with the Batch path --------------------------------------------------------
    def key(self, ex, ta, tb) -> str:
        return cache_key("openai", self.o["model"], self.prompt_version, self.o["temperature"],
                         ex.get("instruction", ""), ex.get("input", ""),
                         ex.get("output", "") if self.with_reference else "", ta, tb)

    def request_body(self, ex, ta, tb) -> dict:
        return {"model": self.o["model"], "messages": build_messages(ex, ta, tb, self.with_reference),
                "temperature": self.o["temperature"],
                "max_tokens": self.o["max_tokens"], "stop": ["\n"]}

    def usd(self, prompt_tokens: int, completion_tokens: int, factor: float = 1.0) -> float:
        return factor * (prompt_tokens * self.o["prompt_usd_per_1m"] + completion_tokens * self.o["completion_usd_per_1m"]) / 1e6

    def estimate_usd(self, bodies, factor: float = 1.0) -> float:
        """Before the run: ~4 characters a token for the prompt, max_tokens for the reply (an upper bound)."""
        chars = sum(len(m["content"]) for body in bodies for m in body["messages"])
        return self.usd(chars / 4 + 4 * len(bodies), self.o["max_tokens"] * len(bodies), factor)

    def client(self):
        if self._client is None:
            import openai

            key = self.retrier.key = os.environ.get(self.o["api_key_env"])
            if not key:
                raise LLMBlendError(f"the openai judge needs an API key in the environment variable "
                                    f"{self.o['api_key_env']} (it is never read from config files)")
            self._client = openai.OpenAI(api_key=key, base_url=self.o["base_url"] or None,
                                         timeout=self.o["timeout_s"], max_retries=0)
        return self._client

    def scrub(self, text: str) -> str:
        return self.retrier.scrub(text)

    # -- one pair --------------------------------------------------------------------------------
    def _call(self, body: dict, rng: random.Random) -> dict:
        """Ask once per attempt until a parsable reply, a final error, or the attempt limit."""
        client = self.client()
        paid = {"prompt_tokens": 0, "completion_tokens": 0, "usd": 0.0}
        reply = None

        def attempt() -> str:
            nonlocal reply
            resp = client.chat.completions.create(**body)
            self._reached = True
            usage = resp.usage
            pt, ct = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
            cost = self.usd(pt, ct)
            paid["prompt_tokens"] += pt
            paid["completion_tokens"] += ct
            paid["usd"] += cost
            self._spend(cost)
            reply = resp.choices[0].message.content if resp.choices else None
            label = parse_reply(reply)
            if label == UNPARSABLE:
                raise Unusable("unparsable", "unparsable reply")  # asked again, like a fault
            return label

        def on_fault(fault) -> None:
            self._reached = self._reached or fault.kind not in ("connection", "timeout")
            if fault.status in (401, 403):
                self._stop.set()
                raise LLMBlendError(f"the judge endpoint refused the API key (HTTP {fault.status}); "
                                    "nothing more is asked")

        try:  # which faults are retried: llmblend/openai_retry.py (shared with generate)
            label, attempts = self.retrier.call(attempt, rng, "judge call", on_fault)
            return {"label": label, "reply": reply, **paid, "attempts": attempts}
        except GaveUp as e:
            if not e.retried_out:
                return {"label": ERROR, "reason": self.scrub(e.fault.message), **paid, "attempts": e.attempts}
            reason, attempts = e.fault.message, e.attempts
        if not self._reached and reason != "unparsable reply" and not self._stop.is_set():
            # not one answer from the endpoint: a wrong base_url or no network, not a judgment to cache
            self._unreachable = self.scrub(
                f"the judge endpoint {self.o['base_url'] or 'of the OpenAI API'} cannot be reached: {reason} "
                f"after {attempts} attempts, and no call of this run got an answer. Check judge.openai.base_url "
                "and the network; nothing was cached as an error")
            self._stop.set()
            raise EndpointUnreachable(self._unreachable)
        final = UNPARSABLE if reason == "unparsable reply" else ERROR
        return {"label": final, "reason": self.scrub(f"{reason} (after {attempts} attempts)"), "reply": reply,
                **paid, "attempts": attempts}

    def _spend(self, usd):
        with self._lock:
            self.spent_usd += usd
            if self.max_usd is not None and self.spent_usd >= self.max_usd:
                self._stop.set()

    # -- many pairs --------------------------------------------------------------------------------
    def plan(self, jobs):
        """Cache lookups: (keys, cached rows, indexes still to ask)."""
        keys = [self.key(ex, ta, tb) for ex, a, b, ta, tb in jobs]
        cached = self.cache.get_many(set(keys))
        todo = [i for i, k in enumerate(keys) if k not in cached or (self.retry_errors and cached[k]["label"] == ERROR)]
        # identical texts asked twice in one run are asked once
        seen, unique = set(), []
        for i in todo:
            if keys[i] not in seen:
                seen.add(keys[i])
                unique.append(i)
        return keys, cached, unique

    def judge(self, jobs) -> list[dict]:
        keys, cached, todo = self.plan(jobs)
        self.stats["cache_hits"] += len(jobs) - len(todo)
        results: dict[str, dict] = {k: row for k, row in cached.items()}
        if todo:
            self._run(jobs, keys, todo, results)
        out = []
        for k in keys:
            row = results[k]
            out.append({"label": row["label"], "reason": row.get("reason")})
        return out

    def _run(self, jobs, keys, todo, results):
        from llmblend.runlog import progress

        if self._stop.is_set():
            raise BudgetExhausted(self._budget_msg(len(todo)))
        bar = progress(total=len(todo), desc="judge calls", unit="pair")
        pending = list(todo)
        with ThreadPoolExecutor(max_workers=self.o["concurrency"]) as pool:
            futures = {}
            while pending or futures:
                while pending and len(futures) < self.o["concurrency"] and not self._stop.is_set():
                    i = pending.pop(0)
                    ex, a, b, ta, tb = jobs[i]
                    rng = random.Random(f"{self.seed}|{keys[i]}")
                    futures[pool.submit(self._call, self.request_body(ex, ta, tb), rng)] = i
                if not futures:
                    break
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = futures.pop(fut)
                    res = fut.result()
                    if self._stop.is_set() and res["label"] == ERROR and self.max_usd is not None \
                            and self.spent_usd >= self.max_usd:
                        continue  # cut short by the cap, not a real failure: ask again next run
                    if self._unreachable and res["label"] == ERROR:
                        continue  # cut short by an unreachable endpoint: ask again next run
                    self.cache.put(keys[i], label=res["label"], reason=res.get("reason"), reply=res.get("reply"),
                                   prompt_tokens=res["prompt_tokens"], completion_tokens=res["completion_tokens"],
                                   usd=res["usd"], attempts=res["attempts"], **self.meta)
                    results[keys[i]] = res
                    self.stats["labels_" + res["label"].replace(" ", "_")] += 1
                    bar.update(1)
        bar.close()
        missing = sum(1 for i in todo if keys[i] not in results)
        if missing:
            raise BudgetExhausted(self._budget_msg(missing))

    def _budget_msg(self, missing):
        return (f"judge.max_usd = {self.max_usd} reached (spent {self.spent_usd:.4f} USD in this run); "
                f"{missing} pairs are not labelled yet. Every paid label is cached: raise judge.max_usd "
                "and rerun to continue")


# the judge's backend_stats names for the shared fault kinds (HTTP faults: http_<status>)
_STAT_OF_KIND = {"timeout": "timeout", "connection": "connection_error", "malformed": "bad_response",
                 "unparsable": "unparsable_reply"}


def _stat_name(fault) -> str:
    return _STAT_OF_KIND.get(fault.kind) or f"http_{fault.status}"
