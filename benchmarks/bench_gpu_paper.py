"""Paper-size PairRanker and GenFuser on one GPU: training step and inference in bf16, with weights
built from config (no hub access needed; speed and memory do not depend on the weights).

- PairRanker: the project's `PairRanker` on a DeBERTa-v3-large backbone (24 layers, hidden 1024),
  384-token pairs (128 source + 2 x 128 candidates). Training: comparisons/s of forward+backward+
  Adafactor steps at the paper's 64 inputs/step layout; inference: ordered-pair comparisons/s.
- GenFuser: Flan-T5-XL (T5 v1.1 layout, d_model 2048, 24+24 layers), ~700 input and 128 target
  tokens. Training: examples/s of AdamW steps (one GPU; the paper profile runs FSDP on 4);
  inference: fused examples/s and new tokens/s with 4 beams and 128 new tokens.

For each: throughput, peak GPU memory, and the GPU-hours of the full reproduction implied by the
measured throughput and the paper profile's work (llmblend.workflow.cost.job_units), next to the
configured estimate in config/paper.yaml (`resources.stages`). Put measured numbers back there.

    flock /tmp/llmblend-heavy.lock python benchmarks/bench_gpu_paper.py --out results/bench/gpu_paper.json
    python benchmarks/bench_gpu_paper.py --tiny          # CPU smoke test of the script (tiny dims)

Not run in this project's session (no GPU machine was lent); see docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

DEBERTA_V3_LARGE = dict(model_type="deberta-v2", hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                        intermediate_size=4096, vocab_size=128100, max_position_embeddings=512,
                        relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm",
                        share_att_key=True, pos_att_type=["p2c", "c2p"], position_biased_input=False,
                        max_relative_positions=-1, type_vocab_size=0, layer_norm_eps=1e-7, hidden_act="gelu")
FLAN_T5_XL = dict(d_model=2048, d_ff=5120, d_kv=64, num_heads=32, num_layers=24, num_decoder_layers=24,
                  vocab_size=32128, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                  decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
TINY_DEBERTA = {**DEBERTA_V3_LARGE, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                "intermediate_size": 128, "vocab_size": 1000}
TINY_T5 = {**FLAN_T5_XL, "d_model": 64, "d_ff": 128, "d_kv": 16, "num_heads": 4, "num_layers": 2,
           "num_decoder_layers": 2, "vocab_size": 1000}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / steps


def _peak_gb(device) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None


def _reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def bench_ranker(device, dtype, backbone: dict, batch: int, seq: int, steps: int) -> dict:
    from transformers.optimization import Adafactor

    from llmblend.ranker.model import PairRanker, RankerConfig

    torch.manual_seed(0)
    model = PairRanker(RankerConfig(backbone=backbone)).to(device=device, dtype=dtype)
    vocab = backbone["vocab_size"]
    ids = torch.randint(5, vocab, (batch, seq), device=device)
    mask = torch.ones_like(ids)
    pos = torch.tensor([[0, seq // 3, 2 * seq // 3]] * batch, device=device)
    target = torch.randint(0, 2, (batch,), device=device).float() * 2 - 1
    opt = Adafactor(model.parameters(), lr=1e-5, scale_parameter=False, relative_step=False)

    def train_step():
        s1, s2 = model(ids, mask, pos)
        loss = -torch.nn.functional.logsigmoid(target * (s1 - s2).float()).mean()  # instructgpt loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    _reset_peak(device)
    model.train()
    t_train = _timed(train_step, device, 2, steps)
    train_peak = _peak_gb(device)

    @torch.no_grad()
    def infer_step():
        model(ids, mask, pos)

    _reset_peak(device)
    model.eval()
    infer_batch_s = _timed(infer_step, device, 2, steps)
    return {"params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1), "batch": batch, "seq": seq,
            "train_comparisons_per_s": round(batch / t_train, 2), "train_peak_gb": train_peak,
            "infer_comparisons_per_s": round(batch / infer_batch_s, 2), "infer_peak_gb": _peak_gb(device)}


def bench_fuser(device, dtype, t5: dict, batch: int, src_len: int, tgt_len: int, beams: int, steps: int) -> dict:
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(**t5)).to(device=device, dtype=dtype)
    vocab = t5["vocab_size"]
    src = torch.randint(2, vocab, (batch, src_len), device=device)
    labels = torch.randint(2, vocab, (batch, tgt_len), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, eps=1e-6)

    def train_step():
        model(input_ids=src, attention_mask=torch.ones_like(src), labels=labels).loss.backward()
        opt.step()  # noqa: F821 (a false positive: `del opt` below comes after the training steps)
        opt.zero_grad(set_to_none=True)  # noqa: F821

    _reset_peak(device)
    model.train()
    t_train = _timed(train_step, device, 1, steps)
    train_peak = _peak_gb(device)
    del opt

    @torch.no_grad()
    def gen_step():
        # min_new_tokens: random weights must not stop early, so every run decodes the full length
        model.generate(input_ids=src, attention_mask=torch.ones_like(src), num_beams=beams,
                       max_new_tokens=tgt_len, min_new_tokens=tgt_len, do_sample=False)

    _reset_peak(device)
    model.eval()
    t_gen = _timed(gen_step, device, 1, max(1, steps // 2))
    return {"params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1), "batch": batch,
            "src_len": src_len, "tgt_len": tgt_len, "beams": beams,
            "train_examples_per_s": round(batch / t_train, 3), "train_peak_gb": train_peak,
            "fuse_examples_per_s": round(batch / t_gen, 3), "fuse_new_tokens_per_s": round(batch * tgt_len / t_gen, 1),
            "fuse_peak_gb": _peak_gb(device)}


def implied_gpu_hours(ranker: dict, fuser: dict, configs: list[str]) -> dict:
    """GPU-hours of the paper profile's ranker and fuser stages at the measured throughput."""
    from llmblend.config import load_config
    from llmblend.ranker.methods import method_kind, trained_rankers
    from llmblend.workflow.cost import job_units

    cfg = load_config(configs)
    train_units = sum(job_units(cfg, "train_ranker", {"ranker": r}) for r in trained_rankers(cfg["ranker"]))
    full = [m for m in cfg["ranker"]["methods"] if method_kind(m) == "pair_full"]
    rank_units = job_units(cfg, "rank_candidates", {"split": "test", "methods": full})
    rank_units += sum(job_units(cfg, "rank_candidates", {"split": s}) for s in cfg["ranker"]["rank_splits"] if s != "test")
    fuser_train = job_units(cfg, "train_fuser", {})
    fuse = job_units(cfg, "fuse_candidates", {})
    h = lambda units, per_s: round(units / per_s / 3600, 2)  # noqa: E731
    return {"train_ranker": h(train_units, ranker["train_comparisons_per_s"]),
            "rank_candidates": h(rank_units, ranker["infer_comparisons_per_s"]),
            "train_fuser": h(fuser_train, fuser["train_examples_per_s"]),
            "fuse_candidates": h(fuse, fuser["fuse_examples_per_s"]),
            "configured_per_s": {s: cfg["resources"]["stages"][s]["per_s"]
                                 for s in ("train_ranker", "rank_candidates", "train_fuser", "fuse_candidates")}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny dims on CPU: checks the script, measures nothing")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--ranker-batch", type=int, default=32)
    ap.add_argument("--fuser-batch", type=int, default=6)
    ap.add_argument("--config", action="append", default=None, help="profile for the implied GPU-hours")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if device.type != "cuda" and not args.tiny:
        raise SystemExit("no GPU: run with --tiny for a CPU smoke test of the script")
    dtype = torch.bfloat16
    if args.tiny:
        torch.set_num_threads(2)
    ranker = bench_ranker(device, dtype, TINY_DEBERTA if args.tiny else DEBERTA_V3_LARGE,
                          4 if args.tiny else args.ranker_batch, 384, 2 if args.tiny else args.steps)
    print("ranker", json.dumps(ranker), flush=True)
    fuser = bench_fuser(device, dtype, TINY_T5 if args.tiny else FLAN_T5_XL, 2 if args.tiny else args.fuser_batch,
                        64 if args.tiny else 700, 8 if args.tiny else 128, 4, 2 if args.tiny else args.steps)
    print("fuser", json.dumps(fuser), flush=True)
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (tiny smoke test)",
              "dtype": "bf16", "tiny": args.tiny, "torch": torch.__version__, "ranker": ranker, "fuser": fuser,
              "implied_gpu_hours_paper": implied_gpu_hours(ranker, fuser, args.config or
                                                           ["params.yaml", "config/paper.yaml"])}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
