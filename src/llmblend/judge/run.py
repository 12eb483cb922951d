"""The judge stage as plain functions: `judge_split` (rule judge_pairs) and `judge_fused` (rule judge_fused).

Output record (one per example, in input order):
    {"id": ..., "cmp_results": {"<A>,<B>": label, ...},
     "judge": {"backend", "model", "temperature", "prompt_version", "pairs", "both_orders"},
     "errors": {"<A>,<B>": reason, ...}}          # only pairs labelled error/unparsable, with why
Keys are in the order shown to the judge. The metrics file holds the counts: calls, cache hits,
faults by kind, spend, label distribution, order agreement, dropped pairs.
"""

from __future__ import annotations

import logging
from collections import Counter

from llmblend.errors import InputError, LLMBlendError
from llmblend.io import iter_jsonl, write_json, write_jsonl
from llmblend.judge.cache import LabelCache
from llmblend.judge.labels import ALL_LABELS, ERROR, FAILED, INCONSISTENT, flip, pair_key
from llmblend.judge.schedule import make_schedule, n_pairs

log = logging.getLogger("llmblend.judge")

FUSED_MODEL = "llm-blender"


def read_examples(path) -> list[dict]:
    """Split records with candidates; every candidate needs a model name (unique) and a text."""
    out = []
    for lineno, rec in iter_jsonl(path, {"id": str, "candidates": list}):
        names = []
        for k, c in enumerate(rec["candidates"]):
            if not isinstance(c, dict) or not isinstance(c.get("model"), str):
                raise InputError(path, lineno, f"candidates[{k}].model", "missing or not a string")
            if not isinstance(c.get("text"), str):
                raise InputError(path, lineno, f"candidates[{k}].text", "missing or not a string")
            if c["model"] in names:
                raise InputError(path, lineno, f"candidates[{k}].model", f"duplicate model name {c['model']!r}")
            names.append(c["model"])
        rec["_where"], rec["_line"] = str(path), lineno
        out.append(rec)
    return out


def make_backend(cfg: dict, name: str, split: str, records: list[dict], cache_path, allow_over_budget=False,
                 client=None, with_reference: bool = True):
    jcfg = cfg["judge"]
    if name == "rubric":
        from llmblend.judge.backends import RubricJudge

        return RubricJudge()
    if name == "replay":
        from llmblend.judge.backends import ReplayJudge

        return ReplayJudge(cfg, split, records)
    if name == "openai":
        from llmblend.judge.backends import OpenAIJudge

        return OpenAIJudge(jcfg, LabelCache(cache_path), seed=cfg["seed"], max_usd=jcfg.get("max_usd"),
                           retry_errors=jcfg.get("retry_errors", False), client=client,
                           with_reference=with_reference)
    raise LLMBlendError(f"unknown judge backend {name!r}")


def _check_budget(backend, jobs_upper_bound: list, allow_over_budget: bool) -> dict:
    """Print the cost estimate of the calls still to make; refuse above judge.max_usd unless told."""
    if backend.name != "openai":
        return {}
    keys, cached, todo = backend.plan(jobs_upper_bound)
    est = backend.estimate_usd([backend.request_body(jobs_upper_bound[i][0], jobs_upper_bound[i][3],
                                                     jobs_upper_bound[i][4]) for i in todo])
    asked = {keys[i] for i in todo}
    n_cached = sum(1 for k in keys if k in cached and k not in asked)
    n_repeats = len(jobs_upper_bound) - len(todo) - n_cached
    msg = (f"judge cost estimate: {len(todo)} calls to make ({n_cached} cached, {n_repeats} repeated texts "
           f"asked once), "
           f"about {est:.4f} USD (model {backend.o['model']}; cap judge.max_usd = {backend.max_usd})")
    print(msg, flush=True)
    log.info("%s", msg)
    if backend.max_usd is not None and est > backend.max_usd and not allow_over_budget:
        raise LLMBlendError(f"{msg}: the estimate is above the cap; raise judge.max_usd or pass --allow-over-budget "
                            "(the run then stops when the cap is reached)")
    return {"estimate_usd": est, "calls_planned": len(todo), "cached_at_start": n_cached,
            "repeated_texts": n_repeats}


def _jobs_for(rec, pairs, texts, both_orders):
    jobs = []
    for a, b in pairs:
        jobs.append((rec, a, b, texts[a], texts[b]))
        if both_orders:
            jobs.append((rec, b, a, texts[b], texts[a]))
    return jobs


def _combine(res_ab: dict, res_ba: dict | None) -> tuple[str | None, str | None, bool | None]:
    """(label, reason, orders agreed?) of one pair from one or both shown orders."""
    if res_ba is None:
        return res_ab["label"], res_ab.get("reason"), None
    la, lb = res_ab["label"], res_ba["label"]
    if la is None or lb is None:
        return None, res_ab.get("reason") or res_ba.get("reason"), None
    if la in FAILED or lb in FAILED:
        bad = res_ab if la in FAILED else res_ba
        return bad["label"], bad.get("reason"), None
    if la == flip(lb):
        return la, None, True
    return INCONSISTENT, f"order A,B said {la!r}; order B,A said {lb!r}", False


def label_examples(examples, backend, schedule: str, seed: int, both_orders: bool, extra: dict | None = None):
    """Run the schedule of every example round by round through the backend.

    `extra` (for fused answers) maps example id -> (name, text): then only the pairs of that extra
    output against each candidate are judged (all of them, in a seeded order each).
    Returns (records, counters).
    """
    from llmblend.judge.schedule import shown_order

    counts: Counter = Counter()
    state = []
    for rec in examples:
        texts = {c["model"]: c["text"] for c in rec["candidates"]}
        if extra is not None:
            name, text = extra[rec["id"]]
            texts = {**texts, name: text}
            sched = _FixedPairs([shown_order(seed, rec["id"], name, m) for m in texts if m != name])
        else:
            sched = make_schedule(schedule, list(texts), seed, rec["id"])
        state.append({"rec": rec, "texts": texts, "sched": sched, "cmp": {}, "errors": {}})
    round_no = 0
    while True:
        jobs, owners = [], []
        for st in state:
            pairs = st["sched"].pending()
            if pairs:
                js = _jobs_for(st["rec"], pairs, st["texts"], both_orders)
                owners.append((st, pairs, len(jobs), len(js)))
                jobs.extend(js)
        if not jobs:
            break
        round_no += 1
        log.info("judge round %d: %d judgments for %d examples", round_no, len(jobs), len(owners))
        results = backend.judge(jobs)
        for st, pairs, start, n in owners:
            res = results[start:start + n]
            step = 2 if both_orders else 1
            fed = {}
            for k, (a, b) in enumerate(pairs):
                label, reason, agreed = _combine(res[k * step], res[k * step + 1] if both_orders else None)
                if agreed is not None:
                    counts["orders_agree" if agreed else "orders_disagree"] += 1
                if label is None:
                    counts["dropped_pairs"] += 1
                    continue
                st["cmp"][pair_key(a, b)] = label
                if label in FAILED and reason:
                    st["errors"][pair_key(a, b)] = reason
                fed[(a, b)] = label
                counts[label] += 1
            st["sched"].feed(fed)
    return state, counts


def _check_some_label(backend, state, counts) -> None:
    """An LLM judge whose every pair ended in `error` judged nothing: stop with the reason instead of
    writing a label file of errors (they stay cached; judge.retry_errors asks them again)."""
    if backend.name != "openai" or not counts.get(ERROR):
        return
    if any(v not in FAILED for st in state for v in st["cmp"].values()):
        return
    reason = next((r for st in state for r in st["errors"].values()), "no reason recorded")
    raise LLMBlendError(f"the openai judge gave no label: all {counts[ERROR]} judged pairs are `error` "
                        f"(first: {reason}). Fix the endpoint (judge.openai.base_url, model, key), then rerun "
                        "with judge.retry_errors: true to ask the cached errors again")


def _close(backend) -> None:
    cache = getattr(backend, "cache", None)
    if cache is not None:
        cache.close()


class _FixedPairs:
    def __init__(self, pairs):
        self._pairs, self._done = pairs, False

    def pending(self):
        return [] if self._done else list(self._pairs)

    def feed(self, labels):
        self._done = True


def _write(state, backend, jcfg, schedule, both_orders, out_path, note=None) -> None:
    meta = {**backend.meta, "pairs": schedule, "both_orders": both_orders}

    def rows():
        for st in state:
            row = {"id": st["rec"]["id"], "cmp_results": st["cmp"], "judge": meta}
            if st["errors"]:
                row["errors"] = st["errors"]
            if "vs_reference" in st:
                row["vs_reference"] = st["vs_reference"]
            if note and not st["cmp"]:
                row["note"] = note  # why this example has no label (the evaluate stage repeats it)
            yield row

    write_jsonl(out_path, rows())


def _metrics(state, backend, counts, extra: dict, schedule, both_orders) -> dict:
    agree, disagree = counts.get("orders_agree", 0), counts.get("orders_disagree", 0)
    stats = dict(backend.stats)
    m = {
        "backend": backend.meta, "pairs": schedule, "both_orders": both_orders,
        # a failure label (error, unparsable, inconsistent) is no judgment: counted apart, never as a label
        "examples": len(state),
        "examples_with_labels": sum(1 for st in state if any(v not in FAILED for v in st["cmp"].values())),
        "pairs_labelled": sum(1 for st in state for v in st["cmp"].values() if v not in FAILED),
        "pairs_failed": sum(1 for st in state for v in st["cmp"].values() if v in FAILED),
        "labels": {lab: counts.get(lab, 0) for lab in ALL_LABELS},
        "dropped_pairs": counts.get("dropped_pairs", 0),
        "order_agreement": {"agree": agree, "disagree": disagree,
                            "rate": agree / (agree + disagree) if agree + disagree else None},
        "backend_stats": stats,
    }
    if backend.name == "openai":
        m["spent_usd"] = round(backend.spent_usd, 6)
        m["calls"] = stats.get("calls", 0)
        m["cache_hits"] = stats.get("cache_hits", 0)
    m.update(extra)
    return m


def judge_split(cfg: dict, candidates, out, metrics, cache, split: str = "test", allow_over_budget: bool = False,
                client=None) -> dict:
    """Label the candidate pairs of one split (rule judge_pairs); returns the metrics written."""
    jcfg = cfg["judge"]
    schedule, both_orders = jcfg.get("pairs", "all"), bool(jcfg.get("both_orders", False))
    examples = read_examples(candidates)
    backend = make_backend(cfg, jcfg["backend"], split, examples, cache, allow_over_budget, client)
    extra = {}
    if backend.name == "openai":
        if schedule != "all":
            # the later rounds depend on earlier labels; bound the estimate by the first round's size ratio
            log.info("pairs: %s - the estimate counts %s pairs per example", schedule, "N-1")
        upper = []
        for rec in examples:
            texts = {c["model"]: c["text"] for c in rec["candidates"]}
            sched = make_schedule("all", list(texts), cfg["seed"], rec["id"])
            pairs = sched.pending()
            if schedule != "all":
                pairs = pairs[:n_pairs(schedule, len(texts))]
            upper.extend(_jobs_for(rec, pairs, texts, both_orders))
        extra = _check_budget(backend, upper, allow_over_budget)
    try:
        state, counts = label_examples(examples, backend, schedule, cfg["seed"], both_orders)
    finally:
        _close(backend)
    _check_some_label(backend, state, counts)
    _write(state, backend, jcfg, schedule, both_orders, out)
    m = _metrics(state, backend, counts, extra, schedule, both_orders)
    m["split"] = split
    write_json(metrics, m)
    log.info("judge %s: %d examples, %d pairs labelled, labels %s", split, m["examples"], m["pairs_labelled"],
             {k: v for k, v in m["labels"].items() if v})
    return m


def fused_settings(cfg: dict) -> dict:
    """The judge section judge_fused runs with: judge.fused_openai over judge.openai (e.g. a GPT-4-class
    judge for the fused answers of a profile whose candidate labels are replayed)."""
    jcfg = cfg["judge"]
    return {**jcfg, "openai": {**(jcfg.get("openai") or {}), **(jcfg.get("fused_openai") or {})}}


def read_fused(path, examples) -> dict:
    """id -> (name, text) of the blended answer file (one candidate per record, one name for all of them,
    a name no candidate has); every test example needs one."""
    models = {c["model"] for r in examples for c in r["candidates"]}
    by_id, name = {}, None
    for lineno, rec in iter_jsonl(path, {"id": str, "candidates": list}):
        c = rec["candidates"]
        if len(c) != 1 or not isinstance(c[0], dict) or not isinstance(c[0].get("text"), str):
            raise InputError(path, lineno, "candidates", "expected exactly one fused candidate with a text")
        m = c[0].get("model", FUSED_MODEL)
        if not isinstance(m, str) or (name is not None and m != name):
            raise InputError(path, lineno, "candidates[0].model", f"expected {name!r}, as on the first line")
        if m in models:
            raise InputError(path, lineno, "candidates[0].model", f"{m!r} is also a candidate's name")
        name = m
        by_id[rec["id"]] = (m, c[0]["text"])
    missing = [r["id"] for r in examples if r["id"] not in by_id]
    if missing:
        raise InputError(path, None, "id", f"{len(missing)} test examples have no fused answer (first: {missing[0]})")
    return by_id


def vs_reference_mode(cfg: dict, name: str) -> bool:
    """AlpacaEval with replayed candidate labels: a new answer is judged against the reference answer
    (text-davinci-003), as GPT-4 judged every released one, so its pair labels follow the same rule."""
    jcfg = cfg["judge"]
    return name == "openai" and jcfg["backend"] == "replay" and any(
        s["type"] == "alpaca_eval" for s in cfg["data"]["sources"])


REFERENCE_NAME = "text_davinci_003"
# the reference's AlpacaEval preference level of the answer judged against it (2 better, 1.5 tie, 1 worse)
LEVEL = {"A is better": 2.0, "B is better": 1.0, "Same good": 1.5, "Same bad": 1.5}


def _label_vs_reference(cfg, examples, by_id, backend, both_orders):
    """Each blended answer against the reference by the OpenAI judge (one pair per example, or two with
    both_orders); its label against each candidate is the replay rule on the two preference levels
    (backends.alpaca_pair_label), the candidate's own being its released GPT-4 judgment."""
    from llmblend.data.sources.alpaca_eval import norm_instruction
    from llmblend.judge.backends import ReplayJudge, alpaca_pair_label
    from llmblend.judge.schedule import shown_order

    seed = cfg["seed"]
    replay = ReplayJudge(cfg, "test", examples)
    jobs, shown = [], []
    for rec in examples:
        name, text = by_id[rec["id"]]
        a, b = shown_order(seed, rec["id"], name, REFERENCE_NAME)
        shown.append((a, b))
        jobs.extend(_jobs_for(rec, [(a, b)], {name: text, REFERENCE_NAME: rec.get("output", "")}, both_orders))
    results = backend.judge(jobs)
    step = 2 if both_orders else 1
    counts: Counter = Counter()
    state = []
    for e, rec in enumerate(examples):
        name = by_id[rec["id"]][0]
        a, b = shown[e]
        label, reason, agreed = _combine(results[e * step], results[e * step + 1] if both_orders else None)
        if agreed is not None:
            counts["orders_agree" if agreed else "orders_disagree"] += 1
        level = None
        if label is not None and label not in FAILED:
            level = LEVEL[label] if a == name else LEVEL[flip(label)]
        prefs = replay.prefs.get(norm_instruction(rec["instruction"]), {})
        st = {"rec": rec, "cmp": {}, "errors": {},
              "vs_reference": {"reference": REFERENCE_NAME, "shown": pair_key(a, b), "label": label,
                               "preference": level}}
        for c in rec["candidates"]:
            x, y = shown_order(seed, rec["id"], name, c["model"])
            if label in FAILED:  # the one judgment failed: every pair fails with it, never a tie
                st["cmp"][pair_key(x, y)] = label
                if reason:
                    st["errors"][pair_key(x, y)] = reason
                counts[label] += 1
            elif level is None or prefs.get(c["model"]) is None:
                counts["dropped_pairs"] += 1
            else:
                lv = {name: level, c["model"]: prefs[c["model"]]}
                lab = alpaca_pair_label(lv[x], lv[y])
                st["cmp"][pair_key(x, y)] = lab
                counts[lab] += 1
        state.append(st)
    return state, counts


def judge_fused(cfg: dict, fused, candidates, out, metrics, cache, allow_over_budget: bool = False,
                client=None) -> dict:
    """Judge each example's blended answer (fused, verified or aggregated: the file's one candidate,
    whatever its name) against every original candidate (rule judge_fused)."""
    import os

    cfg = {**cfg, "judge": fused_settings(cfg)}
    jcfg = cfg["judge"]
    both_orders = bool(jcfg.get("both_orders", False))
    name = jcfg.get("fused_backend") or jcfg["backend"]
    examples = read_examples(candidates)
    by_id = read_fused(fused, examples)
    note = None
    if name == "replay":
        # a new text has no released label: every pair is dropped and counted, never invented
        note = ("judge.fused_backend is replay: a fused answer has no released label, so no pair is labelled; "
                "set judge.fused_backend to openai (or rubric on the demo data) to judge fused answers")
        log.warning("%s", note)
    vs_reference = vs_reference_mode(cfg, name)
    key_env = jcfg["openai"].get("api_key_env", "OPENAI_API_KEY")
    if name == "openai" and jcfg["backend"] != "openai" and client is None and not os.environ.get(key_env):
        # only the blended answers would be paid for here: without a key they stay unjudged, and the
        # tables say why (the candidates' own labels need no key)
        note = (f"judge.fused_backend is openai but the environment variable {key_env} holds no API key: "
                "the blended answers are not judged; set it and rerun rule judge_fused (snakemake --forcerun "
                "judge_fused)")
        log.warning("%s", note)
        from llmblend.judge.backends import OpenAIJudge

        meta = {**OpenAIJudge(jcfg, cache=None, with_reference=not vs_reference).meta,
                "pairs": "fused-vs-reference" if vs_reference else "fused-vs-each", "both_orders": both_orders}
        write_jsonl(out, ({"id": r["id"], "cmp_results": {}, "judge": meta, "note": note} for r in examples))
        m = {"backend": meta, "examples": len(examples), "examples_with_labels": 0, "pairs_labelled": 0,
             "split": "fused_test", "note": note}
        write_json(metrics, m)
        return m
    backend = make_backend(cfg, name, "test", examples, cache, allow_over_budget, client,
                           with_reference=not vs_reference)
    extra = {}
    if backend.name == "openai":
        from llmblend.judge.schedule import shown_order

        upper = []
        for rec in examples:
            fname, text = by_id[rec["id"]]
            if vs_reference:
                texts = {fname: text, REFERENCE_NAME: rec.get("output", "")}
                others = [REFERENCE_NAME]
            else:
                texts = {c["model"]: c["text"] for c in rec["candidates"]} | {fname: text}
                others = [m for m in texts if m != fname]
            upper.extend(_jobs_for(rec, [shown_order(cfg["seed"], rec["id"], fname, m) for m in others], texts,
                                   both_orders))
        extra = _check_budget(backend, upper, allow_over_budget)
    try:
        if vs_reference:
            state, counts = _label_vs_reference(cfg, examples, by_id, backend, both_orders)
        else:
            state, counts = label_examples(examples, backend, "all", cfg["seed"], both_orders, extra=by_id)
    finally:
        _close(backend)
    _check_some_label(backend, state, counts)
    pairs = "fused-vs-reference" if vs_reference else "fused-vs-each"
    _write(state, backend, jcfg, pairs, both_orders, out, note)
    m = _metrics(state, backend, counts, extra, pairs, both_orders)
    m["split"] = "fused_test"
    if note:
        m["note"] = note
    write_json(metrics, m)
    return m
