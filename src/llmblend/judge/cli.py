"""`llmblend judge-pairs`, `judge-fused` and `judge-batch`: the judge stage's commands."""

from llmblend.cli import config_of


def register(sub, add_common):
    p = sub.add_parser("judge-pairs", help="candidates of a split -> pairwise labels (cmp_results) + metrics")
    add_common(p)
    p.add_argument("--split", required=True, choices=["train", "val", "test"])
    p.add_argument("--candidates", required=True, help="data/<run>/candidates/<split>.jsonl")
    p.add_argument("--out", required=True, help="data/<run>/judge/<split>.jsonl")
    p.add_argument("--metrics", required=True, help="results/<run>/metrics/judge_<split>.json")
    p.add_argument("--cache", required=True, help="SQLite label cache (kept across reruns)")
    p.add_argument("--allow-over-budget", action="store_true",
                   help="start even if the cost estimate is above judge.max_usd (the run still stops at the cap)")
    p.set_defaults(func=run_pairs)

    p = sub.add_parser("judge-fused", help="fused answers judged against every candidate -> labels + metrics")
    add_common(p)
    p.add_argument("--fused", required=True, help="results/<run>/fuser/test_fused.jsonl")
    p.add_argument("--candidates", required=True, help="data/<run>/candidates/test.jsonl")
    p.add_argument("--out", required=True, help="data/<run>/judge/fused_test.jsonl")
    p.add_argument("--metrics", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--allow-over-budget", action="store_true")
    p.set_defaults(func=run_fused)

    p = sub.add_parser("judge-batch", help="the openai judge through the Batch API: prepare, submit, poll, ingest")
    add_common(p)
    p.add_argument("step", choices=["prepare", "submit", "poll", "ingest"])
    p.add_argument("--candidates", help="for prepare: data/<run>/candidates/<split>.jsonl")
    p.add_argument("--batch-dir", required=True, help="folder for the request files and state.json")
    p.add_argument("--cache", required=True, help="the same cache judge-pairs uses")
    p.add_argument("--allow-over-budget", action="store_true")
    p.set_defaults(func=run_batch)


def _declared_cache(path) -> None:
    """The label cache is a declared (persist) output of the DVC judge stages whatever the backend: an
    offline judge (rubric, replay) or an unjudged run leaves it empty, but it exists."""
    from llmblend.judge.cache import LabelCache

    LabelCache(path).close()


def run_pairs(args):
    from llmblend.judge.run import judge_split

    m = judge_split(config_of(args), args.candidates, args.out, args.metrics, args.cache, split=args.split,
                    allow_over_budget=args.allow_over_budget)
    _declared_cache(args.cache)
    print({"examples": m["examples"], "pairs": m["pairs_labelled"], "labels": {k: v for k, v in m["labels"].items() if v}})


def run_fused(args):
    from llmblend.judge.run import judge_fused

    m = judge_fused(config_of(args), args.fused, args.candidates, args.out, args.metrics, args.cache,
                    allow_over_budget=args.allow_over_budget)
    _declared_cache(args.cache)
    # without a key the blended answers are written unjudged: no labels, only the note
    print({"examples": m.get("examples"), "pairs": m.get("pairs_labelled", 0),
           "labels": {k: v for k, v in (m.get("labels") or {}).items() if v}, "note": m.get("note")})


def run_batch(args):
    from llmblend.errors import LLMBlendError
    from llmblend.judge import batch

    cfg = config_of(args)
    if args.step == "prepare":
        if not args.candidates:
            raise LLMBlendError("judge-batch prepare needs --candidates")
        state = batch.prepare(cfg, args.candidates, args.batch_dir, args.cache, args.allow_over_budget)
    else:
        state = getattr(batch, args.step)(cfg, args.batch_dir, args.cache)
    print({"status": state.get("status"), "parts": [(p["batch_id"], p["status"]) for p in state.get("parts", [])]})
