"""`llmblend train-ranker` and `llmblend rank-candidates` (rules train_ranker, rank_*)."""

from __future__ import annotations

import logging

from llmblend.cli import add_threads, name_value_pairs

log = logging.getLogger("llmblend.ranker")


def register(sub, add_common):
    p = sub.add_parser("train-ranker", help="train PairRanker, SimCLS or SummaReranker; best epoch on val")
    add_common(p)
    p.add_argument("--type", required=True, choices=["pairranker", "simcls", "summareranker"])
    p.add_argument("--train", required=True, help="scored train split (JSONL)")
    p.add_argument("--val", required=True, help="scored val split (JSONL)")
    p.add_argument("--train-judge", help="judge labels of the train split (signal type judge)")
    p.add_argument("--val-judge", help="judge labels of the val split (signal type judge)")
    p.add_argument("--backbone", required=True, help="model spec of the encoder backbone")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--curve", required=True, help="CSV of loss and val score per epoch (a DVC plot)")
    p.add_argument("--report", help="JSON report (counts, history)")
    add_threads(p)
    p.set_defaults(func=run_train)

    p = sub.add_parser("import-ranker-pool", help="the ranker's training pool of one split (ranker.train_generators)")
    add_common(p)
    p.add_argument("--split", required=True, choices=["train", "val"])
    p.add_argument("--split-file", required=True, help="the split's records (JSONL)")
    p.add_argument("--out", required=True, help="pool records with the pool models' answers (JSONL)")
    p.add_argument("--report", help="JSON report (answers per model, what was left out)")
    p.set_defaults(func=run_pool)

    p = sub.add_parser("import-ranker", help="convert a released PairRanker checkpoint (reference layout)")
    add_common(p)
    p.add_argument("--checkpoint", required=True, help="model spec of the checkpoint, e.g. hf:llm-blender/pair-ranker")
    p.add_argument("--backbone", required=True, help="model spec of the backbone it was trained on")
    p.add_argument("--out", required=True, help="output model directory (this project's format)")
    p.set_defaults(func=run_import)

    p = sub.add_parser("rank-candidates", help="rank each example's candidates with one or more methods")
    add_common(p)
    p.add_argument("--methods", required=True, help="comma-separated method names (see ranker.methods)")
    p.add_argument("--input", required=True, help="scored split (JSONL)")
    p.add_argument("--split", required=True, help="split name: output is <out-dir>/<method>/<split>.jsonl")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--model", action="append", default=[], metavar="TYPE=DIR",
                   help="a trained ranker directory, e.g. pairranker=data/demo/rankers/pairranker/model")
    p.add_argument("--judge", help="judge labels of this split (oracle-gpt_rank)")
    p.add_argument("--clm-model", help="causal LM spec for clm_scoring")
    p.add_argument("--encoder", help="sentence encoder spec for consensus (ranker.consensus.encoder)")
    p.add_argument("--rankings", action="append", default=[], metavar="METHOD=FILE",
                   help="another method's rankings of this split, for a method that combines it (pairranker-consensus)")
    p.add_argument("--matrices", help="also write the full comparison matrices here (.npz; needs pairranker or "
                                      "pairranker-maxwins among --methods)")
    p.add_argument("--from-matrices", help="this split's full comparison matrices (a --matrices file): bubble and "
                                           "the select schedules read their logits there instead of running the model")
    add_threads(p)
    p.set_defaults(func=run_rank)


def run_train(args):
    from llmblend.cli import config_of
    from llmblend.io import write_json
    from llmblend.models.resolve import resolve
    from llmblend.ranker.stage import train_ranker

    cfg = config_of(args)
    report = train_ranker(cfg, args.type, args.train, args.val, resolve(args.backbone), args.out, args.curve,
                          train_judge=args.train_judge, val_judge=args.val_judge, backbone_spec=args.backbone)
    if args.report:
        write_json(args.report, report)


def run_pool(args):
    from llmblend.cli import config_of
    from llmblend.ranker.pool import build_pool

    build_pool(config_of(args), args.split, args.split_file, args.out, args.report)


def run_import(args):
    from llmblend.models.resolve import resolve
    from llmblend.ranker.reference import import_reference_pairranker

    info = import_reference_pairranker(resolve(args.checkpoint), resolve(args.backbone), args.backbone, args.out)
    log.info("imported %s into %s: %s", args.checkpoint, args.out, info)


def run_rank(args):
    from llmblend.cli import config_of
    from llmblend.models.resolve import resolve
    from llmblend.ranker.stage import rank_split

    cfg = config_of(args)
    rank_split(cfg, [m for m in args.methods.split(",") if m], args.input, args.out_dir, args.split,
               name_value_pairs(args.model, "--model"), judge_path=args.judge,
               clm_model_dir=resolve(args.clm_model) if args.clm_model else None, matrices_path=args.matrices,
               encoder_dir=resolve(args.encoder) if args.encoder else None,
               rankings=name_value_pairs(args.rankings, "--rankings"), matrices_in=args.from_matrices)
