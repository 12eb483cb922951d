"""Fusion speed of a trained fuser by weight precision and batch size (the choice behind `fuser.dtype`
and `fuser.batch_size`): fused tokens/s, and how many greedy answers equal the float32 ones.

    python benchmarks/bench_fusion.py --fuser data/alpaca_eval/fuser/model \\
        --split data/alpaca_eval/candidates/test.jsonl --rankings data/alpaca_eval/rankings/pairranker/test.jsonl \\
        --n 32 --runs float32:8,bfloat16:8,bfloat16:16,bfloat16:32 [--ct2 float32:16,int8:16]

`--ct2` decodes the same prompts with the product's CTranslate2 fuser (`fuser.backend: ctranslate2`,
llmblend.fuser.api.load_ct2_fuser), in the compute types given. Print the CPU flags with the figures (`grep -o 'avx[^ ]*' /proc/cpuinfo`).
"""

from __future__ import annotations

import argparse
import tempfile
import time


def prompts_of(split, rankings, ranker, n):
    from llmblend.fuser.data import iter_ranked

    rows = []
    for _, rec, order in iter_ranked(split, ranker, rankings):
        rows.append((rec["instruction"], rec.get("input", ""), [rec["candidates"][j].get("text", "") for j in order[:3]]))
        if len(rows) >= n:
            break
    return rows


def run_hf(path, rows, dtype, batch, max_new):
    import torch

    from llmblend.fuser.api import load_fuser

    fuser = load_fuser(path, dtype=getattr(torch, dtype))
    t0 = time.perf_counter()
    res = fuser.fuse_detailed(*zip(*rows), batch_size=batch, num_beams=1, do_sample=False, max_new_tokens=max_new)
    return [r["text"] for r in res], sum(r["n_tokens"] for r in res), time.perf_counter() - t0


def run_ct2(path, rows, compute_type, batch, max_new, threads):
    """The product's CTranslate2 fuser (fuser.backend ctranslate2): float32 weights converted once,
    decoded in `compute_type`; the conversion is not timed."""
    from llmblend.fuser.api import load_ct2_fuser

    fuser = load_ct2_fuser(path, tempfile.mkdtemp() + "/ct2", compute_type=compute_type, threads=threads)
    t0 = time.perf_counter()
    res = fuser.fuse_detailed(*zip(*rows), batch_size=batch, num_beams=1, do_sample=False, max_new_tokens=max_new)
    return [r["text"] for r in res], sum(r["n_tokens"] for r in res), time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fuser", required=True, help="a trained fuser folder (llmblend train-fuser)")
    ap.add_argument("--split", required=True)
    ap.add_argument("--rankings", required=True)
    ap.add_argument("--ranker", default="pairranker")
    ap.add_argument("--n", type=int, default=32, help="test prompts")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--runs", default="float32:8,bfloat16:8,bfloat16:16", help="dtype:batch,... (transformers)")
    ap.add_argument("--ct2", default="", help="compute_type:batch,... (CTranslate2), e.g. float32:16,int8:16")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = prompts_of(args.split, args.rankings, args.ranker, args.n)
    base = None
    print(f"{len(rows)} prompts, greedy, up to {args.max_new_tokens} new tokens, {args.threads} threads")
    print("| engine | weights | batch | s | fused tokens | tokens/s | answers equal to float32 |")
    print("|---|---|---|---|---|---|---|")
    runs = [("transformers", *r.split(":")) for r in args.runs.split(",") if r]
    runs += [("ctranslate2", *r.split(":")) for r in args.ct2.split(",") if r]
    for engine, dtype, batch in runs:
        if engine == "transformers":
            texts, n_tok, secs = run_hf(args.fuser, rows, dtype, int(batch), args.max_new_tokens)
        else:
            texts, n_tok, secs = run_ct2(args.fuser, rows, dtype, int(batch), args.max_new_tokens, args.threads)
        if base is None and engine == "transformers" and dtype == "float32":
            base = texts
        same = f"{sum(a == b for a, b in zip(texts, base))}/{len(texts)}" if base else "-"
        print(f"| {engine} | {dtype} | {batch} | {secs:.1f} | {n_tok} | {n_tok / secs:.1f} | {same} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
