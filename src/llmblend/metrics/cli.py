"""`llmblend score-candidates`, `gather-scores`, `summarize-scores`: the metrics stage."""

from llmblend.cli import add_threads, config_of, name_value_pairs
from llmblend.errors import ConfigError


def register(sub, add_common):
    p = sub.add_parser("score-candidates", help="score each candidate against the reference (one shard)")
    add_common(p)
    p.add_argument("--in", dest="inp", required=True, help="split file with candidates (JSONL)")
    p.add_argument("--out", required=True, help="scored JSONL (the same records, candidates get `scores`)")
    p.add_argument("--report", help="JSON report with counts for this shard")
    p.add_argument("--shard", type=int, default=0, help="which block of records (0-based)")
    p.add_argument("--n-shards", type=int, default=1, help="how many blocks the records are cut into")
    p.add_argument("--model", action="append", default=[], metavar="METRIC=SPEC",
                   help="the model spec a model-based metric loads (repeat per metric)")
    add_threads(p)
    p.set_defaults(func=run_score)

    g = sub.add_parser("gather-scores", help="concatenate scored shards in order; merge their reports")
    add_common(g)
    g.add_argument("--shards", nargs="+", required=True, help="scored shard files, in order")
    g.add_argument("--reports", nargs="+", required=True, help="their reports, same order")
    g.add_argument("--out", required=True)
    g.add_argument("--report", required=True)
    g.set_defaults(func=run_gather)

    s = sub.add_parser("summarize-scores", help="per-model means per split: DVC metric JSON, CSV table, report")
    add_common(s)
    s.add_argument("--scored", nargs="+", required=True, metavar="SPLIT=FILE")
    s.add_argument("--reports", nargs="+", required=True, metavar="SPLIT=FILE")
    s.add_argument("--metrics-json", required=True)
    s.add_argument("--table", required=True)
    s.add_argument("--report", help="the stage report (all counts, settings, metrics not computed)")
    s.set_defaults(func=run_summarize)


def run_score(args):
    from llmblend.metrics.stage import score_file

    rep = score_file(config_of(args), name_value_pairs(args.model, "--model"), args.inp, args.out, args.report,
                     args.shard, args.n_shards)
    print(rep["counts"])


def run_gather(args):
    from llmblend.metrics.stage import gather_shards

    if len(args.shards) != len(args.reports):
        raise ConfigError("gather-scores: --shards and --reports must list the same number of files")
    rep = gather_shards(args.shards, args.reports, args.out, args.report)
    print(rep["output"])


def run_summarize(args):
    from llmblend.metrics.stage import summarize

    summarize(config_of(args), name_value_pairs(args.scored, "--scored"), name_value_pairs(args.reports, "--reports"),
              args.metrics_json, args.table, args.report)
