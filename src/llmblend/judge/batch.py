"""The Batch API path of the openai judge: prepare, submit, poll, ingest (separate steps).

Every step reads and rewrites `<batch dir>/state.json` atomically, so any step can be killed and
run again: `submit` never uploads or creates a batch twice (the file id and batch id are saved
the moment they exist), `ingest` writes the labels into the same cache as the online path, after
which `llmblend judge-pairs` finds every label cached and makes zero calls. Only `pairs: all`
(every pair known up front) can be batched. Requests are split into parts of at most 50,000
lines (the API's limit per batch).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from llmblend.errors import LLMBlendError
from llmblend.io import read_json, write_json, write_text
from llmblend.judge.cache import LabelCache
from llmblend.judge.labels import ERROR, parse_reply
from llmblend.judge.run import _jobs_for, read_examples
from llmblend.judge.schedule import make_schedule

log = logging.getLogger("llmblend.judge")
MAX_PER_BATCH = 50_000
DONE = ("completed", "failed", "expired", "cancelled")


def _state_path(batch_dir) -> Path:
    return Path(batch_dir) / "state.json"


def load_state(batch_dir) -> dict:
    p = _state_path(batch_dir)
    return read_json(p) if p.exists() else {}


def _save(batch_dir, state) -> None:
    write_json(_state_path(batch_dir), state)


def _judge(cfg, cache_path, client=None):
    from llmblend.judge.backends import OpenAIJudge

    jcfg = cfg["judge"]
    return OpenAIJudge(jcfg, LabelCache(cache_path), seed=cfg["seed"], max_usd=jcfg.get("max_usd"), client=client)


def prepare(cfg, candidates, batch_dir, cache_path, allow_over_budget=False, per_batch=MAX_PER_BATCH) -> dict:
    state = load_state(batch_dir)
    if state.get("parts") and state.get("status") != "ingested":
        raise LLMBlendError(f"{_state_path(batch_dir)}: a batch run is already prepared ({state['status']}); "
                            "submit/poll/ingest it first")
    jcfg = cfg["judge"]
    if jcfg.get("pairs", "all") != "all":
        raise LLMBlendError("the Batch API path needs judge.pairs: all (a knockout's later pairs depend on labels)")
    judge = _judge(cfg, cache_path)
    jobs = []
    for rec in read_examples(candidates):
        texts = {c["model"]: c["text"] for c in rec["candidates"]}
        jobs.extend(_jobs_for(rec, make_schedule("all", list(texts), cfg["seed"], rec["id"]).pending(), texts,
                              bool(jcfg.get("both_orders", False))))
    keys, cached, todo = judge.plan(jobs)
    bodies = [judge.request_body(jobs[i][0], jobs[i][3], jobs[i][4]) for i in todo]
    est = judge.estimate_usd(bodies, judge.o["batch_discount"])
    print(f"batch estimate: {len(todo)} requests ({len(jobs) - len(todo)} cached), about {est:.4f} USD", flush=True)
    if judge.max_usd is not None and est > judge.max_usd and not allow_over_budget:
        raise LLMBlendError(f"batch estimate {est:.4f} USD is above judge.max_usd = {judge.max_usd}")
    parts = []
    for n, start in enumerate(range(0, len(todo), per_batch)):
        lines = [json.dumps({"custom_id": keys[i], "method": "POST", "url": "/v1/chat/completions", "body": body},
                            ensure_ascii=False)
                 for i, body in zip(todo[start:start + per_batch], bodies[start:start + per_batch])]
        path = Path(batch_dir) / f"requests-{n:03d}.jsonl"
        write_text(path, "\n".join(lines) + "\n")
        parts.append({"requests": path.name, "n": len(lines), "file_id": None, "batch_id": None, "status": "prepared"})
    state = {"status": "prepared" if parts else "ingested", "parts": parts, "estimate_usd": est,
             "model": judge.o["model"], "meta": judge.meta}
    _save(batch_dir, state)
    return state


def submit(cfg, batch_dir, cache_path, client=None) -> dict:
    state = load_state(batch_dir)
    if not state.get("parts"):
        raise LLMBlendError(f"{_state_path(batch_dir)}: nothing prepared (run `llmblend judge-batch prepare`)")
    judge = _judge(cfg, cache_path, client)
    api = judge.client()
    for part in state["parts"]:
        if part["batch_id"]:
            continue  # submitted before a restart: never twice
        if not part["file_id"]:
            with open(Path(batch_dir) / part["requests"], "rb") as f:
                part["file_id"] = api.files.create(file=f, purpose="batch").id
            _save(batch_dir, state)
        b = api.batches.create(input_file_id=part["file_id"], endpoint="/v1/chat/completions",
                               completion_window=judge.o["completion_window"])
        part["batch_id"], part["status"] = b.id, b.status
        _save(batch_dir, state)
    state["status"] = "submitted"
    _save(batch_dir, state)
    return state


def poll(cfg, batch_dir, cache_path, client=None) -> dict:
    state = load_state(batch_dir)
    api = _judge(cfg, cache_path, client).client()
    for part in state.get("parts", []):
        if part["batch_id"] and part["status"] not in DONE and part["status"] != "ingested":
            b = api.batches.retrieve(part["batch_id"])
            part["status"], part["output_file_id"] = b.status, b.output_file_id
            part["error_file_id"] = getattr(b, "error_file_id", None)
    if state.get("parts") and all(p["status"] in DONE + ("ingested",) for p in state["parts"]):
        state["status"] = "done" if state["status"] != "ingested" else "ingested"
    _save(batch_dir, state)
    return state


def ingest(cfg, batch_dir, cache_path, client=None) -> dict:
    """Write every finished part's answers into the cache; returns counts."""
    state = load_state(batch_dir)
    judge = _judge(cfg, cache_path, client)
    api = judge.client()
    counts = {"labels": 0, "errors": 0, "usd": 0.0}
    for part in state.get("parts", []):
        if part["status"] != "completed":
            continue
        rows = []  # one transaction per part (llmblend.judge.cache: a commit per row is slow on NFS)
        for file_id in (part.get("output_file_id"), part.get("error_file_id")):
            if not file_id:
                continue
            for line in api.files.content(file_id).text.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                resp = item.get("response") or {}
                body = resp.get("body") or {}
                if resp.get("status_code") == 200 and body.get("choices"):
                    usage = body.get("usage") or {}
                    pt, ct = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
                    usd = judge.usd(pt, ct, judge.o["batch_discount"])
                    reply = body["choices"][0]["message"].get("content")
                    rows.append((item["custom_id"], dict(label=parse_reply(reply), reply=reply, prompt_tokens=pt,
                                                         completion_tokens=ct, usd=usd, attempts=1, **judge.meta)))
                    counts["labels"] += 1
                    counts["usd"] += usd
                else:
                    reason = json.dumps(item.get("error") or body.get("error") or {"status": resp.get("status_code")})
                    rows.append((item["custom_id"], dict(label=ERROR, reason=judge.scrub(f"batch: {reason}"),
                                                         prompt_tokens=0, completion_tokens=0, usd=0.0, attempts=1,
                                                         **judge.meta)))
                    counts["errors"] += 1
        judge.cache.put_many(rows)
        part["status"] = "ingested"
        _save(batch_dir, state)
    if state.get("parts") and all(p["status"] == "ingested" for p in state["parts"]):
        state["status"] = "ingested"
    state["ingested"] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in counts.items()}
    _save(batch_dir, state)
    return state
