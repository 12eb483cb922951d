"""`llmblend generate-candidates` (one shard of one generator) and `llmblend gather-candidates`."""

from llmblend.cli import add_threads, config_of


def register(sub, add_common):
    p = sub.add_parser("generate-candidates", help="one generator answers one shard of a split (resumable)")
    add_common(p)
    p.add_argument("--generator", required=True, help="a name from generate.generators")
    p.add_argument("--split-file", required=True, help="the split's records (splits/<split>.jsonl)")
    p.add_argument("--shard", required=True, type=int, help="shard index k of generate.shards")
    p.add_argument("--out", required=True, help="shard output: generate/<generator>/<split>/shard-<k>.jsonl")
    p.add_argument("--model", help="model spec overriding the models section (e.g. a converted dir:)")
    add_threads(p)
    p.set_defaults(func=run_generate)

    p = sub.add_parser("gather-candidates", help="shards of every generator -> candidates/<split>.jsonl")
    add_common(p)
    p.add_argument("--splits-dir", required=True)
    p.add_argument("--gen-dir", required=True, help="the generate/ folder holding the shards")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=run_gather)


def run_generate(args):
    import torch

    from llmblend.generate.shards import generate_shard

    cfg = config_of(args)
    torch.manual_seed(cfg["seed"])
    generate_shard(cfg, args.generator, args.split_file, args.shard, args.out, args.model, threads=args.threads)


def run_gather(args):
    from llmblend.generate.gather import gather_candidates

    m = gather_candidates(config_of(args), args.splits_dir, args.gen_dir, args.out_dir)
    print({s: v["file"]["records"] for s, v in m["splits"].items()})
