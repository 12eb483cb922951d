"""`llmblend build-fuser-data`, `train-fuser`, `fuse-candidates`: the GenFuser stage."""

from llmblend.cli import add_threads, config_of, name_value_pairs
from llmblend.errors import LLMBlendError


def register(sub, add_common):
    p = sub.add_parser("build-fuser-data", help="top-K ranked candidates + instruction -> fuser training data")
    add_common(p)
    p.add_argument("--model", required=True, help="the fuser's base model spec (its tokenizer sets the budget)")
    p.add_argument("--split", action="append", required=True, metavar="NAME=JSONL", help="a split with candidates")
    p.add_argument("--rankings", action="append", default=[], metavar="NAME=JSONL", help="that split's rankings")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--report", help="counts of what the budget and the data did (JSON)")
    p.set_defaults(func=run_build)

    p = sub.add_parser("train-fuser", help="fine-tune the fuser; best checkpoint by validation loss")
    add_common(p)
    p.add_argument("--model", required=True, help="the base model spec")
    p.add_argument("--train", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--out", required=True, help="the model folder to write")
    p.add_argument("--plot", help="CSV of step, epoch, loss, val_loss (a DVC plot)")
    add_threads(p)
    p.set_defaults(func=run_train)

    p = sub.add_parser("fuse-candidates", help="fuse the top-K ranked candidates of a split with a trained fuser")
    add_common(p)
    p.add_argument("--fuser", required=True, help="the trained fuser folder (or a spec)")
    p.add_argument("--split", required=True, help="the split with candidates")
    p.add_argument("--rankings", help="its rankings (not for an oracle ranker)")
    p.add_argument("--out", required=True)
    p.add_argument("--report")
    add_threads(p)
    p.set_defaults(func=run_fuse)

    p = sub.add_parser("verify-fused", help="keep each fused answer only where the PairRanker prefers it to "
                                            "its top-1 (two forward passes); else the top-1")
    add_common(p)
    p.add_argument("--fused", required=True, help="results/<run>/fuser/test_fused.jsonl")
    p.add_argument("--split", required=True, help="the test candidates (the top-1 texts)")
    p.add_argument("--ranker", required=True, help="the PairRanker folder (data/<run>/rankers/pairranker/model)")
    p.add_argument("--out", required=True, help="results/<run>/fuser/test_verified.jsonl")
    p.add_argument("--report", help="how often the fused answer was kept (JSON)")
    add_threads(p)
    p.set_defaults(func=run_verify)

    p = sub.add_parser("aggregate-candidates", help="a chat model synthesises the top-K candidates into one "
                                                    "answer (fuser.aggregator; no training)")
    add_common(p)
    p.add_argument("--split", required=True, help="the test candidates")
    p.add_argument("--rankings", help="their rankings by fuser.ranker (not for an oracle ranker)")
    p.add_argument("--model", help="model spec overriding the models section (e.g. a converted dir:)")
    p.add_argument("--out", required=True, help="results/<run>/fuser/test_aggregated.jsonl")
    p.add_argument("--report")
    p.add_argument("--cache", required=True, help="SQLite answer cache (kept across reruns: no answer paid twice)")
    p.add_argument("--allow-over-budget", action="store_true",
                   help="start even if the cost estimate is above fuser.aggregator.max_usd (the run still stops at the cap)")
    add_threads(p)
    p.set_defaults(func=run_aggregate)


def _spec(cfg, family):
    from llmblend.config import section
    from llmblend.fuser.prompt import PromptSpec

    return PromptSpec(family=family, **section(cfg, "fuser", "prompt"))


def run_build(args):
    from transformers import AutoConfig, AutoTokenizer

    from llmblend.fuser.data import build_fuser_data, data_ranker, parse_ranker
    from llmblend.fuser.model import family_of
    from llmblend.models.resolve import resolve

    cfg = config_of(args)
    ranker = data_ranker(cfg["fuser"])
    splits, rankings = name_value_pairs(args.split, "--split"), name_value_pairs(args.rankings, "--rankings")
    if parse_ranker(ranker)[0] == "rankings" and set(rankings) != set(splits):
        raise LLMBlendError(f"fuser.ranker {ranker!r} needs --rankings for each split ({sorted(splits)})")
    path = resolve(args.model)
    spec = _spec(cfg, family_of(AutoConfig.from_pretrained(path)))
    report = build_fuser_data(spec, AutoTokenizer.from_pretrained(path), ranker,
                              {n: (p, rankings.get(n)) for n, p in splits.items()}, args.out_dir, args.report)
    print(report["splits"])


def run_train(args):
    from transformers import AutoConfig

    from llmblend.config import section, setting
    from llmblend.fuser.model import family_of
    from llmblend.fuser.snake import genfuser_keys
    from llmblend.fuser.train import train_fuser
    from llmblend.models.resolve import resolve
    from llmblend.workflow.snake import config_slice

    cfg = config_of(args)
    _relaunch(setting(cfg, "fuser.train.launcher"))
    path = resolve(args.model)
    spec = _spec(cfg, family_of(AutoConfig.from_pretrained(path)))
    report = train_fuser(path, args.train, args.val, args.out, spec, section(cfg, "fuser", "train"), cfg["seed"],
                         plot_csv=args.plot, generate_cfg=section(cfg, "fuser", "generate"),
                         config_slice=config_slice(cfg, *genfuser_keys(cfg)))
    print({k: report[k] for k in ("steps", "best_val_loss")})


def _relaunch(launcher: str):
    """Multi-GPU training: rerun this very command under `fuser.train.launcher` (e.g. `accelerate launch
    -m llmblend.cli`); the processes it starts carry LOCAL_RANK and train in place."""
    import os
    import shlex
    import sys

    if launcher and launcher != "llmblend" and "LOCAL_RANK" not in os.environ:
        argv = shlex.split(launcher) + sys.argv[1:]
        os.execvp(argv[0], argv)


def run_fuse(args):
    from llmblend.config import section, setting
    from llmblend.fuser.infer import fuse_split

    cfg = config_of(args)
    style = setting(cfg, "fuser.reference_input")  # for a released fuser (the schema asks fuser.pretrained)
    report = fuse_split(args.fuser, args.split, section(cfg, "fuser", "ranker"), args.out, args.rankings,
                        generate=section(cfg, "fuser", "generate"), batch_size=section(cfg, "fuser", "batch_size"),
                        report_path=args.report, reference_input=style, threads=args.threads,
                        dtype=setting(cfg, "fuser.dtype"), backend=setting(cfg, "fuser.backend"))
    print({k: report[k] for k in ("records", "flags", "fused_tokens")})


def run_verify(args):
    from llmblend.fuser.verify import verify_split

    report = verify_split(config_of(args), args.fused, args.split, args.ranker, args.out, args.report)
    print({k: report[k] for k in ("records", "fused_kept", "fused_kept_pct")})


def run_aggregate(args):
    from llmblend.fuser.aggregate import aggregate_split

    cfg = config_of(args)
    report = aggregate_split(cfg, args.split, args.out, args.cache, args.rankings, args.model,
                             args.report, args.allow_over_budget, threads=args.threads)
    print({k: report[k] for k in ("records", "asked", "cached", "flags")})
