"""Best-of-N selection schedules: forward passes vs top-1 agreement with full MaxLogits.

    python benchmarks/bench_select.py --model data/alpaca_eval/rankers/pairranker/model \\
        --input data/alpaca_eval/scored/test.jsonl --judge data/alpaca_eval/judge/test.jsonl \\
        --matrices results/bench/select_matrices.npz --out results/bench/select

The full comparison matrices of the split are computed once (`infer.full_matrices`, N(N-1) passes
per prompt; with --matrices they are saved there, and a rerun loads them and costs no model call).
Every schedule of `llmblend.ranker.select` is then SIMULATED on those matrices by
`select.simulate_grid` (a schedule's passes are entries of the full matrix; the evaluate stage's
select_curve runs the same function on rule rank_test_full's test.matrices.npz, which --matrices also
reads): `sampled` over opponents 1..4 x refine_top 2..5, `race` over the z of --race-z, `knockout`, `full`,
each over the seeds of --seeds (the permutations differ by seed; agreement is pooled over seeds and
prompts); --rules adds `sampled` rows for other leader rules (lsq, lsq_plain, mean, sub; the default
is select.LEADER_RULE). Per cell: mean forward passes per prompt and as % of N(N-1), top-1
agreement with full MaxLogits (also on the prompts whose full MaxLogits top-1 is unique), and with
--judge the mean GPT-Rank of the pick (1 + candidates with a strictly higher judge score,
llmblend.ranker.data.load_judge; judged prompts only) next to full MaxLogits'.
Writes <out>/select.csv, <out>/select.png (passes per prompt vs agreement) and <out>/select.json, and
prints a table. The target: >= 95% agreement with <= 25% of the passes.

--synthetic <regime> simulates matrices instead (REGIMES below: consistent, intransitive,
pair-symmetric, position; --prompts, --n), to compare the schedules and leader rules without a model.

With --time the default `sampled`, `race` (and `full`) also run for real through the model, and the
wall times are printed with the CPU flags line.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llmblend.ranker import infer, select  # noqa: E402

TARGET_AGREEMENT, TARGET_SHARE = select.TARGET_AGREEMENT, select.TARGET_SHARE
# synthetic matrices (--synthetic): M_ij = f_i - f_j + 0.3 + noise, f ~ N(0, 1); the noise of each regime:
# (antisymmetric pair noise u_ij - u_ji, symmetric pair noise s_ij + s_ji, per-candidate position effect
# g_i + g_j, independent per-entry noise), standard deviations of u, s, g and the entry noise
REGIMES = {"consistent": (0.0, 0.0, 0.0, 0.3), "intransitive": (0.5, 0.0, 0.0, 0.2),
           "pair-symmetric": (0.2, 0.5, 0.0, 0.2), "position": (0.2, 0.0, 0.7, 0.2)}


def synthetic(regime, prompts, n, seed=0):
    """Full matrices of `prompts` prompts with N candidates under a REGIMES noise model (seeded)."""
    anti, sym, pos, entry = REGIMES[regime]
    rng = np.random.default_rng(seed)
    mats = []
    for _ in range(prompts):
        f = rng.normal(size=n)
        u, s, g = rng.normal(scale=anti, size=(n, n)), rng.normal(scale=sym, size=(n, n)), rng.normal(scale=pos, size=n)
        m = f[:, None] - f[None, :] + 0.3 + (u - u.T) + (s + s.T) + g[:, None] + g[None, :]
        m += rng.normal(scale=entry, size=(n, n))
        np.fill_diagonal(m, 0.0)
        mats.append(m)
    return mats


def cpu_line() -> str:
    """The CPU model, whether it has avx2 / avx512f / avx512_bf16, torch's threads and the load."""
    from hwpeak import cpu_info, loadavg

    info = cpu_info()
    have = ", ".join(f"{f}={'yes' if info['flags'][f] else 'no'}" for f in ("avx2", "avx512f", "avx512_bf16"))
    return f"CPU: {info['model']}; {have}; torch {info['torch_threads']} threads; load {loadavg()}"


def load_matrices(path, ids):
    saved, mats = infer.read_matrices(path)  # also reads rule rank_test_full's test.matrices.npz
    if saved[: len(ids)] != ids:
        raise SystemExit(f"{path}: matrices of other prompts (first ids {saved[:3]} vs {ids[:3]}); remove it or "
                         "pass the split it was made from")
    return mats[: len(ids)]


def compute_matrices(args, examples):
    import torch

    from llmblend.ranker.model import load_ranker

    torch.set_num_threads(args.threads)
    model, tok = load_ranker(args.model)
    kw = dict(max_tokens=args.max_tokens, max_batch=args.max_batch, device=args.device, autocast=args.autocast)
    t0 = time.perf_counter()
    mats = infer.full_matrices(model, tok, [x.source for x in examples], [x.texts for x in examples], **kw)
    sec = time.perf_counter() - t0
    passes = sum(len(x.texts) * (len(x.texts) - 1) for x in examples)
    print(cpu_line())
    print(f"full matrices: {len(examples)} prompts, {passes} passes in {sec:.1f}s ({passes / sec:.1f} passes/s)")
    return mats, (model, tok, kw), {"seconds": round(sec, 2), "passes": passes}


def gpt_rank_of(picks, judged):
    """Mean GPT-Rank of the picks over the judged prompts; judged[e] = judge scores or None."""
    vals = [1 + sum(x > sc[p] for x in sc) for p, sc in zip(picks, judged) if sc is not None]
    return float(np.mean(vals)) if vals else None


def grid(mats, seeds, judged=None, opponents=(1, 2, 3, 4), refine_top=(2, 3, 4, 5), rules=(select.LEADER_RULE,),
         race_z=(0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)):
    """select.simulate_grid over the cells (full, knockout, sampled rules x opponents x refine_top, race
    for each z), as printable rows (rounded, "" for a setting a schedule does not have), with the picks'
    GPT-Rank and, for race, the largest passes of one prompt."""
    full_pick = [int(np.argmax(infer.max_logits(m))) for m in mats]
    rows = []
    for r in select.simulate_grid(mats, seeds, select.grid_cells(opponents, refine_top, rules, race_z)):
        row = {"schedule": r["schedule"], "opponents": r["opponents"] or "", "refine_top": r["refine_top"] or "",
               "rule": r["rule"] or "", "z": "" if r["z"] is None else r["z"], "prompts": r["prompts"],
               "seeds": r["seeds"], "max_passes": max(r["n_forward"]) if r["n_forward"] else "",
               "passes_per_prompt": round(r["passes_per_prompt"], 2), "passes_pct": round(r["passes_pct"], 1),
               "top1_agreement": round(r["top1_agreement"], 4),
               "top1_agreement_unique": round(r["top1_agreement_unique"], 4)}
        if judged is not None:
            row["gpt_rank"] = gpt_rank_of(r["picks"], judged * len(seeds))
            row["gpt_rank_full"] = gpt_rank_of(full_pick, judged)
        row["meets_target"] = r["meets_target"]
        rows.append(row)
    return rows


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    sampled = [r for r in rows if r["schedule"] == "sampled" and r["rule"] == select.LEADER_RULE]
    for o in sorted({r["opponents"] for r in sampled}):
        pts = sorted((r["passes_per_prompt"], r["top1_agreement"], r["refine_top"]) for r in sampled
                     if r["opponents"] == o)
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], "o-", label=f"sampled, {o} opponent(s)")
        for x, y, k in pts:
            ax.annotate(f"k={k}", (x, 100 * y), fontsize=6, xytext=(2, -8), textcoords="offset points")
    race = sorted((r for r in rows if r["schedule"] == "race"), key=lambda r: r["z"])
    if race:
        ax.plot([r["passes_per_prompt"] for r in race], [100 * r["top1_agreement"] for r in race], "D-",
                label="race (adaptive)")
        for r in race:
            ax.annotate(f"z={r['z']:g}", (r["passes_per_prompt"], 100 * r["top1_agreement"]), fontsize=6,
                        xytext=(2, 4), textcoords="offset points")
    for name, marker in (("knockout", "s"), ("full", "*")):
        for r in rows:
            if r["schedule"] == name:
                ax.plot([r["passes_per_prompt"]], [100 * r["top1_agreement"]], marker, ms=9, label=name)
    n_full = max(r["passes_per_prompt"] for r in rows if r["schedule"] == "full")
    ax.axhline(100 * TARGET_AGREEMENT, color="grey", lw=0.8, ls="--")
    ax.axvline(TARGET_SHARE * n_full, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("PairRanker forward passes per prompt")
    ax.set_ylabel("top-1 agreement with full MaxLogits (%)")
    ax.set_title("Best-of-N schedules (dashed: the target, >= 95% with <= 25% of the passes)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def told_top2_agreement(mats, share=TARGET_SHARE, seed=0) -> float:
    """How often a schedule that is TOLD the full MaxLogits top two (a, b) and spends its whole budget
    (share x N(N-1) passes) on deciding between them gets the top-1 right: it plays (a, b) in both
    orders, then a and b against the same opponents in both orders (4 passes each, as many as the
    budget allows, seeded), and picks by 2 d(a, b) + sum_j (d(a, j) - d(b, j)), d(x, y) = M_xy - M_yx,
    which is N (S_a - S_b) once every opponent is played. No schedule knows the top two, so where this
    stays under the target the noise of the matrices, not the schedule, is what keeps agreement there."""
    rng, right = np.random.default_rng(seed), []
    for m in mats:
        n = m.shape[0]
        if n < 3:
            continue
        s = infer.max_logits(m)
        a, b = (int(x) for x in np.argsort(-s, kind="stable")[:2])
        d = lambda x, y: m[x, y] - m[y, x]  # noqa: E731
        k = min(n - 2, max(0, (int(share * n * (n - 1)) - 2) // 4))
        opp = [int(j) for j in rng.permutation(n) if j not in (a, b)][:k]
        right.append(2 * d(a, b) + sum(d(a, j) - d(b, j) for j in opp) > 0)
    return float(np.mean(right)) if right else float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a saved PairRanker directory (not needed when --matrices exists)")
    ap.add_argument("--input", help="a scored (or candidates) split JSONL")
    ap.add_argument("--synthetic", choices=sorted(REGIMES), help="simulated matrices instead of --input (no model)")
    ap.add_argument("--prompts", type=int, default=300, help="--synthetic: prompts")
    ap.add_argument("--n", type=int, default=12, help="--synthetic: candidates per prompt")
    ap.add_argument("--judge", help="judge labels of that split (JSONL): the pick's GPT-Rank")
    ap.add_argument("--limit", type=int, help="the first N prompts only")
    ap.add_argument("--matrices", help="an .npz of the full matrices: loaded when it exists, else written")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="permutation seeds of the simulation (comma-separated)")
    ap.add_argument("--out", default="results/bench/select", help="folder for select.csv, select.png, select.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-tokens", type=int, default=8192)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--autocast", choices=["bfloat16"])
    ap.add_argument("--rules", default=select.LEADER_RULE,
                    help="leader rules of `sampled` to simulate (comma-separated: lsq, lsq_plain, mean, sub; "
                         f"the plot shows the default, {select.LEADER_RULE})")
    ap.add_argument("--race-z", default="1,1.5,2,2.5,3,4", help="z values of the race cells (comma-separated)")
    ap.add_argument("--time", action="store_true", help="also run full and the default sampled and race for real (timed)")
    args = ap.parse_args(argv)

    from llmblend.ranker.data import load_examples, load_judge

    if not args.input and not args.synthetic:
        raise SystemExit("--input or --synthetic is needed")
    examples = load_examples(args.input, []) if args.input else []
    if args.limit:
        examples = examples[: args.limit]
    ids = [x.id for x in examples]
    runner, speed = None, None
    if args.synthetic:
        mats = synthetic(args.synthetic, args.prompts, args.n)
        print(f"synthetic regime {args.synthetic!r}: {args.prompts} prompts of {args.n} candidates, noise "
              f"(u, s, g, entry) = {REGIMES[args.synthetic]}")
    elif args.matrices and Path(args.matrices).exists():
        mats = load_matrices(args.matrices, ids)
        print(f"loaded {len(mats)} full matrices from {args.matrices} (no model call)")
    else:
        if not args.model:
            raise SystemExit("--model is needed to compute the full matrices")
        mats, runner, speed = compute_matrices(args, examples)
        if args.matrices:
            Path(args.matrices).parent.mkdir(parents=True, exist_ok=True)
            infer.write_matrices(args.matrices, ids, mats)
    judged = None
    if args.judge and not args.synthetic:
        by_id = load_judge(args.judge, examples)
        judged = [by_id.get(i) for i in ids]
        print(f"judge labels for {sum(j is not None for j in judged)} of {len(ids)} prompts")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    rows = grid(mats, seeds, judged, rules=tuple(r for r in args.rules.split(",") if r),
                race_z=tuple(float(z) for z in args.race_z.split(",") if z))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0])
    with open(out / "select.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    plot(rows, out / "select.png")
    sizes = sorted({m.shape[0] for m in mats})
    print(f"{len(mats)} prompts, N = {sizes}, seeds {seeds}; agreement = top-1 equal to full MaxLogits'")
    head = f"{'schedule':9} {'opp':>3} {'top':>3} {'rule':>9} {'z':>5} {'passes':>7} {'% N(N-1)':>8} {'agree':>6}"
    head += f" {'GPT-Rank':>8} {'(full)':>6}" if judged is not None else ""
    print(head)
    for r in rows:
        line = (f"{r['schedule']:9} {r['opponents']!s:>3} {r['refine_top']!s:>3} {r['rule']:>9} {r['z']!s:>5} "
                f"{r['passes_per_prompt']:7.1f} "
                f"{r['passes_pct']:7.1f}% {100 * r['top1_agreement']:5.1f}%")
        if judged is not None:
            g, gf = r["gpt_rank"], r["gpt_rank_full"]
            line += f" {g:8.2f} {gf:6.2f}" if g is not None else f" {'-':>8} {'-':>6}"
        print(line + ("  <- meets the target" if r["meets_target"] else ""))
    bound = told_top2_agreement(mats)
    print(f"a schedule told the true top two, spending {100 * TARGET_SHARE:.0f}% of the passes on them alone: "
          f"{100 * bound:.1f}% top-1 agreement (target {100 * TARGET_AGREEMENT:.0f}%)")
    timing = {}
    if args.time and runner is not None:
        model, tok, kw = runner
        srcs, cands = [x.source for x in examples], [x.texts for x in examples]
        print(cpu_line())
        for name in ("sampled", "race", "full"):
            t0 = time.perf_counter()
            _, n_fwd = select.select(model, tok, srcs, cands, name, seeds[0], **kw)
            sec = time.perf_counter() - t0
            timing[name] = {"seconds": round(sec, 2), "passes": int(sum(n_fwd))}
            print(f"{name} (run for real): {sum(n_fwd)} passes in {sec:.1f}s ({sum(n_fwd) / sec:.1f} passes/s, "
                  f"{1000 * sec / len(srcs):.0f} ms per prompt)")
    with open(out / "select.json", "w", encoding="utf-8") as f:
        json.dump({"prompts": len(mats), "sizes": sizes, "seeds": seeds, "leader_rule": select.LEADER_RULE,
                   "full_matrices": speed, "timing": timing, "cpu": cpu_line(), "told_top2_agreement": bound,
                   "rows": rows}, f, indent=1)
    print(f"wrote {out / 'select.csv'}, {out / 'select.png'}, {out / 'select.json'}")


if __name__ == "__main__":
    main()
