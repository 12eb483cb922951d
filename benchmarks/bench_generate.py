"""Generated tokens per second of the hf backend on this CPU: one-by-one vs batched, fp32 vs int8.

Runs the default profile's generators (params.yaml) on the first --n records of the demo test split
(made in a temporary folder by the data stage), once per variant, and counts the tokens each
answer really has (up to its end-of-sequence; the padding a finished row sits on is not counted).

    flock /tmp/llmblend-heavy.lock python benchmarks/bench_generate.py \
        --model smollm2=dir:data/demo/models/smollm2 --model gemma3=dir:data/demo/models/gemma3 \
        --n 64 --json results/benchmarks/bench_generate.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path


def run_variant(cfg, gen, spec, records, batch_size, quantize):
    import torch

    from llmblend.generate.hf import HFBackend

    gen = copy.deepcopy(gen)
    gen.setdefault("hf", {}).update(batch_size=batch_size, quantize=quantize)
    t_load = time.time()
    backend = HFBackend(gen, cfg["models"][gen["model"]], spec, cfg["seed"])
    load_s = time.time() - t_load
    torch.manual_seed(0)
    t0 = time.time()
    cands = [c for batch in backend.batches(records) for _, c in backend.run_batch(batch)]
    seconds = time.time() - t0
    tokens = sum(c["n_tokens"] for c in cands)
    return {"generator": gen["name"], "batch_size": batch_size, "quantize": quantize, "records": len(records),
            "new_tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "records_per_s": round(len(records) / seconds, 2), "load_s": round(load_s, 2),
            "empty": sum("empty" in c["flags"] for c in cands),
            "length_capped": sum("length_capped" in c["flags"] for c in cands)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", action="append", default=None, help="config files (default: params.yaml)")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=SPEC",
                    help="a converted model for a models key (e.g. smollm2=dir:data/demo/models/smollm2)")
    ap.add_argument("--generators", nargs="*", help="generator names (default: the first of each model)")
    ap.add_argument("--n", type=int, default=64, help="records of the test split")
    ap.add_argument("--one-by-one-n", type=int, default=16, help="records for the batch-size-1 runs")
    ap.add_argument("--variants", default="1:none,cfg:none,cfg:int8",
                    help="batch:quantize pairs; batch 'cfg' = the generator's configured batch size")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from llmblend.config import load_config
    from llmblend.data.prepare import prepare_splits
    from llmblend.io import read_jsonl

    cfg = load_config(args.config)
    specs = dict(m.split("=", 1) for m in args.model)
    with tempfile.TemporaryDirectory() as tmp:
        prepare_splits(cfg, Path(tmp))
        test = read_jsonl(Path(tmp) / "test.jsonl")
    gens = [g for g in cfg["generate"]["generators"] if g["backend"] == "hf"]
    if args.generators:
        gens = [g for g in gens if g["name"] in args.generators]
    else:
        seen, first = set(), []
        for g in gens:
            if g["model"] not in seen:
                seen.add(g["model"])
                first.append(g)
        gens = first
    results = []
    for gen in gens:
        spec = specs.get(gen["model"], cfg["models"][gen["model"]]["spec"])
        for variant in args.variants.split(","):
            bs, quant = variant.split(":")
            bs = gen.get("hf", {}).get("batch_size", 16) if bs == "cfg" else int(bs)
            records = test[: args.one_by_one_n if bs == 1 else args.n]
            r = run_variant(cfg, gen, spec, records, bs, quant)
            r["threads"] = args.threads
            print(json.dumps(r), flush=True)
            results.append(r)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
