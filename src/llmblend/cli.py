"""The `llmblend` command: one subcommand per workflow stage (what each Snakemake rule runs).

Each stage module exposes `register(subparsers)`; the subcommand's handler gets the parsed
arguments and the merged, validated config. A user-facing error (bad input, bad config, an
unreachable source) prints one line naming what is wrong and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from llmblend.errors import LLMBlendError
from llmblend.runlog import setup_logging

STAGE_MODULES = [
    "llmblend.data.cli",
    "llmblend.models.cli",
    "llmblend.generate.cli",
    "llmblend.metrics.cli",
    "llmblend.ranker.cli",
    "llmblend.judge.cli",
    "llmblend.analysis.cli",
    "llmblend.fuser.cli",
    "llmblend.workflow.cli",
]

log = logging.getLogger("llmblend")


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", metavar="YAML",
                   help="config file; repeat to overlay a profile on params.yaml (default: params.yaml)")
    p.add_argument("--keys", metavar="KEY[,KEY...]",
                   help="the config keys this stage may read (dotted, comma-separated; its rule's declared "
                        "keys): reading any other fails, naming it. Default: the whole config")
    p.add_argument("--log", metavar="FILE", help="also write the log to FILE (the rule's log:)")


def name_value_pairs(items, flag: str) -> dict:
    """Repeated `flag NAME=VALUE` arguments as {NAME: VALUE}; a malformed one is an error naming the flag."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise LLMBlendError(f"{flag}: expected NAME=VALUE, got {item!r}")
        out[key] = value
    return out


def add_threads(p: argparse.ArgumentParser) -> None:
    """`--threads N` of a stage that runs a model. The rules pass Snakemake's `{threads}`, i.e.
    `resources.stages.<stage>.threads`: the one setting of a job's cores, what the scheduler reserves
    and what torch (and CTranslate2) use. Like Snakemake's resources, no rule declares it (a new thread
    count reruns nothing); it can change a float sum's last bits, and through them a trained model,
    so the trainings record it (`torch_threads` in their reports)."""
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads of this job (the rule's threads; default: torch's)")


def build_parser() -> argparse.ArgumentParser:
    from llmblend import __version__

    parser = argparse.ArgumentParser(prog="llmblend", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    add_parser = sub.add_parser

    def add_stage(name, **kw):
        # the one-line `help` of `llmblend --help` is also what `llmblend <stage> --help` opens with
        kw.setdefault("description", kw.get("help"))
        return add_parser(name, **kw)

    sub.add_parser = add_stage
    for name in STAGE_MODULES:
        importlib.import_module(name).register(sub, add_common)
    return parser


def _pin_hash_seed() -> None:
    """Re-run this command with PYTHONHASHSEED=0 unless it is already pinned.

    Libraries iterate sets of strings (bert_score batches its sentences in set order), so with
    Python's per-process random hash seed two runs batch and pad differently and the floats differ
    in the last bits; a pinned seed makes every stage byte-deterministic across processes."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, "-m", "llmblend.cli", *sys.argv[1:]])


def main(argv=None) -> int:
    if argv is None:  # a command-line run (tests call main([...]) in-process and keep their hash seed)
        _pin_hash_seed()
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "log", None))
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        rc = args.func(args)
    except LLMBlendError as e:
        log.error("%s", e)
        print(f"llmblend {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"llmblend {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


def config_of(args) -> dict:
    """The merged, validated config; with --keys only the keys the stage's rule declares (restrict)."""
    from llmblend.config import load_config, restrict

    cfg = load_config(args.config)
    keys = getattr(args, "keys", None)
    return restrict(cfg, [k for k in keys.split(",") if k]) if keys is not None else cfg


if __name__ == "__main__":
    sys.exit(main())
