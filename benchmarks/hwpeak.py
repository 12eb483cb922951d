"""Hardware-limit helpers for the ranker benchmark (benchmarks/bench_ranker.py).

- `cpu_info()`: CPU model and the flags that decide matmul speed (AVX2, AVX-512, bf16, VNNI, AMX).
- `matmul_peak()`: measured GFLOP/s of square torch matmuls in fp32, in bf16 (bf16 tensors) and
  under CPU bf16 autocast (fp32 tensors), with the caller's torch thread count, after a warm-up,
  best of a few repeats; and the same at the encoder's own GEMM shapes.
- `encoder_flops()`: FLOPs of a BERT-style encoder on one sequence of length L.
- `EncoderRecorder`: forward hooks on the backbone that record, for every forward that really runs,
  the padded shape, the useful (attention-mask) lengths and the wall time inside the encoder.
"""

from __future__ import annotations

import time

import torch

# the instructions that make bf16 matmuls native (the product's `auto` rule reads the same list); without
# them torch emulates bf16, ~100x slower than fp32 (a 2048 x 2048 bf16 probe alone then runs for minutes)
from llmblend.models.precision import NATIVE_BF16_CPU_FLAGS as NATIVE_BF16

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "avx_vnni")


def cpu_info() -> dict:
    model, flags = "?", set()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "flags": {f: f in flags for f in FLAGS},
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads()}


def native_bf16(cpu: dict) -> bool:
    """Whether `cpu_info()`'s flags include a native bf16 matmul instruction."""
    return any(cpu["flags"].get(f) for f in NATIVE_BF16)


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg", encoding="utf-8").read().split()[:3])
    except OSError:
        return "?"


def best_gflops(fn, flops, repeats, warmup=2) -> tuple[float, float]:
    """Best GFLOP/s over the repeats: by wall time, and by CPU time received (process CPU seconds
    divided by the thread count), which a time-shared machine disturbs much less."""
    for _ in range(warmup):
        fn()
    best, best_cpu, threads = float("inf"), float("inf"), torch.get_num_threads()
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, (time.process_time() - c0) / threads)
    return flops / best / 1e9, flops / max(best_cpu, 1e-9) / 1e9


def _gemm_rates(m, k, n, repeats, bf16=True) -> dict:
    g = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    flops = 2 * m * k * n

    def autocast_mm():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.matmul(a32, b32)

    with torch.inference_mode():
        rates = {"fp32": best_gflops(lambda: torch.matmul(a32, b32), flops, repeats)}
        if bf16:
            rates["bf16"] = best_gflops(lambda: torch.matmul(a16, b16), flops, repeats)
            rates["bf16_autocast"] = best_gflops(autocast_mm, flops, repeats)
        return rates


def matmul_peak(sizes=(1024, 2048), repeats=5, shapes=(), bf16=True) -> dict:
    """GFLOP/s per dtype: the best over `sizes` (square n x n @ n x n) is the peak, by wall time
    (peak_gflops) and by CPU time received (peak_gflops_cpu); `shapes` are (m, k, n) GEMMs reported
    alongside (e.g. the encoder's linear layers), not part of the peak. bf16=False: fp32 only, the
    bf16 peaks None (for a CPU without native bf16, `native_bf16`)."""
    dts = ("fp32", "bf16", "bf16_autocast") if bf16 else ("fp32",)
    square = {n: _gemm_rates(n, n, n, repeats, bf16) for n in sizes}
    out = {"threads": torch.get_num_threads(), "repeats": repeats, "bf16_probed": bf16,
           "square": {str(n): {k: round(v[0], 1) for k, v in r.items()} for n, r in square.items()},
           "square_cpu": {str(n): {k: round(v[1], 1) for k, v in r.items()} for n, r in square.items()}}
    for key, j in (("peak_gflops", 0), ("peak_gflops_cpu", 1)):
        peak = {dt: round(max(r[dt][j] for r in square.values()), 1) if dt in dts else None
                for dt in ("fp32", "bf16", "bf16_autocast")}
        peak["bf16_best"] = max(peak["bf16"], peak["bf16_autocast"]) if bf16 else None
        out[key] = peak
    if shapes:
        rates = {f"{m}x{k}x{n}": _gemm_rates(m, k, n, repeats, bf16) for m, k, n in shapes}
        out["shapes"] = {s: {dt: round(v[0], 1) for dt, v in r.items()} for s, r in rates.items()}
        out["shapes_cpu"] = {s: {dt: round(v[1], 1) for dt, v in r.items()} for s, r in rates.items()}
    return out


def encoder_flops(L: int, d: int, d_ff: int, n_layers: int) -> int:
    """Forward FLOPs of a BERT-style encoder on one sequence of L tokens (a multiply-add = 2):
    per layer Q, K, V, O projections 2*L*4*d^2, MLP 2*L*2*d*d_ff, attention scores QK^T and the
    weighted sum of V 2*2*L^2*d. Embeddings, LayerNorm, GELU, softmax are not counted (O(L*d))."""
    return n_layers * (2 * L * 4 * d * d + 2 * L * 2 * d * d_ff + 2 * 2 * L * L * d)


def pair_head_flops(d: int) -> int:
    """The PairRanker head, run twice per pair: Linear(2d -> d) and Linear(d -> 1)."""
    return 2 * (2 * 2 * d * d + 2 * d)


class EncoderRecorder:
    """Forward pre-/post-hooks on an encoder (called with input_ids=, attention_mask= keywords or
    positionally): per forward, the padded shape (B, L), the per-row mask lengths and the seconds
    spent inside it. Keeps one copy of the batch with the most padded tokens for profiling."""

    def __init__(self, backbone, d: int, d_ff: int, n_layers: int):
        self.dims = (d, d_ff, n_layers)
        self.batches: list[dict] = []
        self.largest = None
        self._t0 = None
        self._handles = [backbone.register_forward_pre_hook(self._pre, with_kwargs=True),
                         backbone.register_forward_hook(self._post, with_kwargs=True)]

    def _pre(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        b, width = ids.shape
        lengths = mask.sum(dim=1).tolist() if mask is not None else [width] * b
        self.batches.append({"batch": b, "width": width, "lengths": [int(x) for x in lengths]})
        if self.largest is None or b * width > self.largest[0].numel():
            self.largest = (ids.clone(), None if mask is None else mask.clone())
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def _post(self, module, args, kwargs, output):
        self.batches[-1]["seconds"] = time.perf_counter() - self._t0
        self.batches[-1]["cpu_seconds"] = (time.process_time() - self._c0) / torch.get_num_threads()

    def reset(self):
        self.batches = []

    def remove(self):
        for h in self._handles:
            h.remove()

    def summary(self, seconds: float, n_pairs: int, cpu_seconds: float | None = None) -> dict:
        """Totals over the recorded forwards; rates per second of `seconds` (end to end), of the
        time inside the encoder, and per CPU second received (process CPU time / threads: the rate
        had the threads had their cores to themselves)."""
        d, d_ff, n_layers = self.dims
        padded_tok = sum(x["batch"] * x["width"] for x in self.batches)
        useful_tok = sum(sum(x["lengths"]) for x in self.batches)
        head = pair_head_flops(d) * sum(x["batch"] for x in self.batches)
        padded = sum(x["batch"] * encoder_flops(x["width"], d, d_ff, n_layers) for x in self.batches) + head
        useful = sum(encoder_flops(n, d, d_ff, n_layers) for x in self.batches for n in x["lengths"]) + head
        enc_sec = sum(x.get("seconds", 0.0) for x in self.batches)
        enc_cpu = sum(x.get("cpu_seconds", 0.0) for x in self.batches)
        per = [{"batch": x["batch"], "width": x["width"], "useful": sum(x["lengths"]),
                "seconds": round(x.get("seconds", 0.0), 4),
                "gflops": round(x["batch"] * encoder_flops(x["width"], d, d_ff, n_layers)
                                / max(x.get("seconds", 0.0), 1e-9) / 1e9, 1)} for x in self.batches]
        return {"forwards": len(self.batches), "sequences": sum(x["batch"] for x in self.batches),
                "padded_tokens": padded_tok, "useful_tokens": useful_tok,
                "padding_share": round(1 - useful_tok / max(padded_tok, 1), 4),
                "gflop_padded": round(padded / 1e9, 2), "gflop_useful": round(useful / 1e9, 2),
                "seconds": round(seconds, 3), "encoder_seconds": round(enc_sec, 3),
                "pairs_per_s": round(n_pairs / seconds, 2),
                "padded_tokens_per_s": round(padded_tok / seconds, 1),
                "useful_tokens_per_s": round(useful_tok / seconds, 1),
                "gflops_padded": round(padded / seconds / 1e9, 2),
                "gflops_useful": round(useful / seconds / 1e9, 2),
                "encoder_gflops_padded": round(padded / max(enc_sec, 1e-9) / 1e9, 2),
                "encoder_cpu_seconds": round(enc_cpu, 3),
                "encoder_cpu_gflops_padded": round(padded / max(enc_cpu, 1e-9) / 1e9, 2),
                **({"cpu_seconds": round(cpu_seconds, 3), "cpu_pairs_per_s": round(n_pairs / cpu_seconds, 2),
                    "cpu_padded_tokens_per_s": round(padded_tok / cpu_seconds, 1),
                    "cpu_useful_tokens_per_s": round(useful_tok / cpu_seconds, 1),
                    "cpu_gflops_padded": round(padded / cpu_seconds / 1e9, 2),
                    "cpu_gflops_useful": round(useful / cpu_seconds / 1e9, 2)} if cpu_seconds else {}),
                "per_forward": per}


def profile_top_ops(fn, top=12) -> tuple[list[dict], float]:
    """torch.profiler over one call of fn(): the top ops by self CPU time (with the profiler's FLOP
    count and GFLOP/s where it has one: the matrix products), and the total self time in ms."""
    from torch.profiler import ProfilerActivity, profile

    fn()  # warm
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        fn()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    rows = []
    for e in events[:top]:
        row = {"op": e.key, "calls": e.count, "self_ms": round(e.self_cpu_time_total / 1e3, 2),
               "share": round(e.self_cpu_time_total / total, 3)}
        if getattr(e, "flops", 0):
            row["gflops"] = round(e.flops / (e.self_cpu_time_total / 1e6) / 1e9, 1)
        rows.append(row)
    return rows, total / 1e3
