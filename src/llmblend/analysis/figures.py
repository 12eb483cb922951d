"""The figures, PNG and SVG (matplotlib, Agg backend), written byte-reproducibly."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from llmblend.io import atomic_path  # noqa: E402

# fixed ids and no timestamps in the files, so reruns give the same bytes
plt.rcParams["svg.hashsalt"] = "llmblend"
plt.rcParams["font.family"] = "DejaVu Sans"


def save(fig, out_dir: Path, name: str) -> list[Path]:
    paths = []
    for ext, meta in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
        path = Path(out_dir) / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=120, bbox_inches="tight", metadata=meta)
        paths.append(path)
    plt.close(fig)
    return paths


def _empty(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def figure1(shares: dict, out_dir: Path):
    """Share of examples where each LLM ranks first by GPT-Rank (the paper's Figure 1 pie)."""
    fig, ax = plt.subplots(figsize=(6.5, 5))
    items = sorted(((m, s) for m, s in shares.items() if s), key=lambda x: -x[1])
    if not items:
        _empty(ax, "no judged examples")
    else:
        ax.pie([s for _, s in items], labels=[f"{m} ({s:.1f}%)" for m, s in items], startangle=90,
               counterclock=False, wedgeprops={"linewidth": 0.5, "edgecolor": "white"})
        ax.set_title("Share of examples where each LLM ranks first (GPT-Rank)")
    return save(fig, out_dir, "figure1")


def gpt_rank_distribution(dist: dict, max_rank: int, out_dir: Path):
    """For each row of Table 2, the share of judged examples at each GPT-Rank (stacked bars)."""
    names = [n for n, v in dist.items() if len(v)]
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(names), 4) + 1.5))
    if not names:
        _empty(ax, "no judged examples")
        return save(fig, out_dir, "gpt_rank_distribution")
    cmap = plt.get_cmap("viridis", max_rank)
    left = np.zeros(len(names))
    for rank in range(1, max_rank + 1):
        share = np.array([100 * np.mean(np.asarray(dist[n]) == rank) for n in names])
        ax.barh(names, share, left=left, color=cmap(rank - 1), label=str(rank))
        left += share
    ax.invert_yaxis()
    ax.set_xlabel("% of judged examples")
    ax.set_title("GPT-Rank of the selected output (1 = best)")
    ax.legend(title="rank", bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=7)
    return save(fig, out_dir, "gpt_rank_distribution")


def correlation_heatmap(names: list, mat: np.ndarray, out_dir: Path):
    fig, ax = plt.subplots(figsize=(0.55 * len(names) + 3, 0.5 * len(names) + 2))
    if not np.isfinite(mat).any():
        _empty(ax, "not enough judged examples")
        return save(fig, out_dir, "correlation_heatmap")
    im = ax.imshow(mat, vmin=-100, vmax=100, cmap="RdBu_r")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            if np.isfinite(mat[i, j]):
                ax.text(j, i, f"{mat[i, j]:.0f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, label="Spearman x100")
    ax.set_title("Rank correlation between rankings (GPT-Rank, metrics, rankers)")
    return save(fig, out_dir, "correlation_heatmap")


def tradeoff(points: list[dict], out_dir: Path):
    """Forward passes spent per example vs GPT-Rank of the selection (lower is better), with 95% CIs."""
    fig, ax = plt.subplots(figsize=(6, 4))
    pts = [p for p in points if p["n_forward"] is not None and p["gpt_rank"] is not None]
    if not pts:
        _empty(ax, "no PairRanker variant with GPT-Rank")
        return save(fig, out_dir, "tradeoff")
    for p in pts:
        lo, hi = p["gpt_rank_ci"]
        yerr = None if not np.isfinite([lo, hi]).all() else [[p["gpt_rank"] - lo], [hi - p["gpt_rank"]]]
        ax.errorbar([p["n_forward"]], [p["gpt_rank"]], yerr=yerr, fmt="o", capsize=3, label=p["method"])
    ax.plot([p["n_forward"] for p in sorted(pts, key=lambda p: p["n_forward"])],
            [p["gpt_rank"] for p in sorted(pts, key=lambda p: p["n_forward"])], color="grey", lw=0.8, zorder=0)
    ax.set_xlabel("ranker forward passes per example")
    ax.set_ylabel("GPT-Rank of the selection (lower is better)")
    ax.set_title("Aggregation trade-off: comparisons spent vs quality")
    ax.legend(fontsize=8)
    return save(fig, out_dir, "tradeoff")


def select_curve(rows: list[dict], out_dir: Path, target_agreement: float = 95.0, target_share: float = 0.25):
    """Best-of-N schedules replayed on the full matrices: forward passes per prompt vs top-1 agreement
    with full MaxLogits (%), one labelled point per cell, a line through the `sampled` cells of each
    opponents value and one through the `race` cells; dashed: the target (>= 95% agreement, <= 25% of N(N-1) passes)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = [r for r in rows if r["passes_per_prompt"] is not None and r["agreement_pct"] is not None]
    if not pts:
        _empty(ax, "no full comparison matrix")
        return save(fig, out_dir, "select_curve")
    sampled = [r for r in pts if r["schedule"] == "sampled"]
    for o in sorted({r["opponents"] for r in sampled}):
        line = sorted((r for r in sampled if r["opponents"] == o), key=lambda r: (r["passes_per_prompt"],
                                                                               r["refine_top"]))
        ax.plot([r["passes_per_prompt"] for r in line], [r["agreement_pct"] for r in line], "o-", ms=4,
                label=f"sampled, {o} opponent{'s' if o > 1 else ''}")
    race = sorted((r for r in pts if r["schedule"] == "race"), key=lambda r: r["z"])
    if race:
        ax.plot([r["passes_per_prompt"] for r in race], [r["agreement_pct"] for r in race], "D-", ms=4,
                label="race (adaptive), by z")
    for name, marker in (("knockout", "s"), ("full", "*")):
        for r in pts:
            if r["schedule"] == name:
                ax.plot([r["passes_per_prompt"]], [r["agreement_pct"]], marker, ms=9, label=name)
    for r in pts:
        ax.annotate(r["label"], (r["passes_per_prompt"], r["agreement_pct"]), fontsize=6, xytext=(3, -9),
                    textcoords="offset points")
    full = [r["passes_per_prompt"] for r in pts if r["schedule"] == "full"]
    ax.axhline(target_agreement, color="grey", lw=0.8, ls="--")
    if full:
        ax.axvline(target_share * full[0], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("PairRanker forward passes per prompt")
    ax.set_ylabel("top-1 agreement with full MaxLogits (%)")
    ax.set_title(f"Best-of-N schedules on the test matrices (dashed: >= {target_agreement:g}% agreement "
                 f"with <= {100 * target_share:g}% of N(N-1) passes)", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    return save(fig, out_dir, "select_curve")
