"""`llmblend prepare-data`: the data stage."""

from llmblend.cli import config_of


def register(sub, add_common):
    p = sub.add_parser("prepare-data", help="raw sources -> train/val/test splits + manifest")
    add_common(p)
    p.add_argument("--out-dir", required=True, help="folder for train/val/test.jsonl and manifest.json")
    p.set_defaults(func=run)


def run(args):
    from llmblend.data.prepare import prepare_splits

    m = prepare_splits(config_of(args), args.out_dir)
    print({k: v["records"] for k, v in m["splits"].items()})
