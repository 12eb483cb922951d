"""Generated tokens per second on this CPU: hf vs ctranslate2, one-by-one vs batched, fp32 vs int8.

Runs the default profile's generators (params.yaml) on the first --n records of the demo test split
(made in a temporary folder by the data stage), once per variant, and counts the tokens each
answer really has (up to its end-of-sequence; the padding a finished row sits on is not counted).

    flock /tmp/llmblend-heavy.lock python benchmarks/bench_generate.py \
        --model smollm2=dir:data/demo/models/smollm2 --model gemma3=dir:data/demo/models/gemma3 \
        --n 64 --json results/benchmarks/bench_generate.json

A variant is `backend:batch:quantization`: hf with quantization none|int8 (torch dynamic int8),
ct2 with int8|int8_float32|float32 (the model is converted once into --ct2-cache). The load
time (and, for ct2, the conversion) is reported apart from the generation time.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path


def ct2_model(spec, model, quantization, cache):
    from llmblend.models.ct2_convert import convert_ct2

    out = Path(cache) / quantization / model
    if not (out / "llmblend_ct2.json").is_file():
        t0 = time.time()
        convert_ct2(spec, out, quantization)
        print(json.dumps({"converted": str(out), "seconds": round(time.time() - t0, 1)}), flush=True)
    return f"dir:{out}"


def run_variant(cfg, gen, spec, records, batch_size, quantize, backend_name="hf", threads=2, ct2_cache=None):
    import torch

    from llmblend.generate.ct2_backend import CT2Backend
    from llmblend.generate.hf import HFBackend

    gen = copy.deepcopy(gen)
    if backend_name == "ct2":
        spec = ct2_model(spec, gen["model"], quantize, ct2_cache)
        gen["ct2"] = {"batch_size": batch_size, "quantization": quantize}
    else:
        gen.setdefault("hf", {}).update(batch_size=batch_size, quantize=quantize)
    t_load = time.time()
    if backend_name == "ct2":
        backend = CT2Backend(gen, cfg["models"][gen["model"]], spec, cfg["seed"], threads)
    else:
        backend = HFBackend(gen, cfg["models"][gen["model"]], spec, cfg["seed"])
    load_s = time.time() - t_load
    torch.manual_seed(0)
    t0 = time.time()
    cands = [c for batch in backend.batches(records) for _, c in backend.run_batch(batch)]
    seconds = time.time() - t0
    tokens = sum(c["n_tokens"] for c in cands)
    return {"generator": gen["name"], "backend": backend_name, "batch_size": batch_size, "quantize": quantize,
            "records": len(records),
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
    ap.add_argument("--variants", default="hf:1:none,hf:cfg:none,hf:cfg:int8,ct2:1:int8,ct2:cfg:int8,ct2:cfg:float32",
                    help="backend:batch:quantize triples; batch 'cfg' = the generator's configured batch size")
    ap.add_argument("--ct2-cache", default=os.path.join(tempfile.gettempdir(), "llmblend-bench-ct2"),
                    help="where the CTranslate2 conversions are kept between runs")
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
    gens = [g for g in cfg["generate"]["generators"] if g["backend"] in ("hf", "ctranslate2")]
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
            parts = variant.split(":")
            name, bs, quant = parts if len(parts) == 3 else ["hf", *parts]
            configured = (gen.get("hf") or gen.get("ct2") or {}).get("batch_size", 16)
            bs = configured if bs == "cfg" else int(bs)
            records = test[: args.one_by_one_n if bs == 1 else args.n]
            r = run_variant(cfg, gen, spec, records, bs, quant, name, args.threads, args.ct2_cache)
            r["threads"] = args.threads
            print(json.dumps(r), flush=True)
            results.append(r)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
