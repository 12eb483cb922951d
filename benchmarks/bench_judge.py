"""Judge schedules: calls spent vs agreement with the all-pairs GPT-Rank, on replayed AlpacaEval labels.

    LLMBLEND_MIRROR=../shared/mirror python benchmarks/bench_judge.py [--config config/alpaca_eval.yaml]

For each of the 805 AlpacaEval prompts, the 12 configured models' GPT-4 judgments against the
reference are replayed into labels for all 66 pairs (the `replay` backend's rule). The all-pairs
GPT-Rank is the gold ranking. Each schedule then asks the same labels as an oracle, and we report:
calls per prompt, top-1 agreement (the schedule's pick has all-pairs rank 1), the same on the
prompts whose all-pairs winner is unique (the stricter number: replayed labels have only three
levels, so rank 1 is often shared), the mean all-pairs rank of its pick, and a random pick for scale. It also times the replay
judge stage on all 805 prompts (wall time, pairs/s, peak memory).
"""

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llmblend.config import load_config, mirror_root  # noqa: E402
from llmblend.data.fetch import fetch  # noqa: E402
from llmblend.data.sources.alpaca_eval import annotation_url, norm_instruction, outputs_url  # noqa: E402
from llmblend.io import read_json  # noqa: E402
from llmblend.judge import gpt_rank  # noqa: E402
from llmblend.judge.backends import alpaca_pair_label  # noqa: E402
from llmblend.judge.labels import label_for  # noqa: E402
from llmblend.judge.schedule import make_schedule, shown_order  # noqa: E402


def replayed(cfg):
    spec = next(s for s in cfg["data"]["sources"] if s["type"] == "alpaca_eval")
    mirror = mirror_root(cfg)
    prefs, texts = {}, {}
    for m in spec["models"]:
        for row in read_json(fetch(annotation_url(spec, m), mirror)):
            p = row.get("preference")
            prefs.setdefault(norm_instruction(row["instruction"]), {})[m] = p if p in (1, 1.5, 2) else None
        for row in read_json(fetch(outputs_url(spec, m), mirror)):
            texts.setdefault(norm_instruction(row["instruction"]), {})[m] = row["output"]
    return spec, prefs, texts


def all_pairs_labels(models, prefs, seed, pid):
    out = {}
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            x, y = shown_order(seed, pid, a, b)
            if prefs.get(x) is not None and prefs.get(y) is not None:
                out[f"{x},{y}"] = alpaca_pair_label(prefs[x], prefs[y])
    return out


def run_schedule(name, models, cmps, seed, pid):
    sched = make_schedule(name, models, seed, pid)
    asked = {}
    while sched.pending():
        pairs = sched.pending()
        fed = {}
        for a, b in pairs:
            lab = label_for(cmps, a, b)
            asked[f"{a},{b}"] = lab
            if lab is not None:
                fed[(a, b)] = lab
        sched.feed(fed)
    got = {k: v for k, v in asked.items() if v is not None}
    if name == "knockout":
        return len(asked), sched.winner
    ranks = gpt_rank.gpt_ranks(got, models)
    return len(asked), models[ranks.index(1)]


def random_sparse(models, cmps, k, rng):
    """Baseline: k random pairs, pick the best wins-minus-losses."""
    pairs = [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]
    got = {}
    for a, b in rng.sample(pairs, k):
        lab = label_for(cmps, a, b)
        if lab is not None:
            got[f"{a},{b}"] = lab
    sc = gpt_rank.scores(got, models)
    best = max(sc)
    return k, rng.choice([m for m, s in zip(models, sc) if s == best])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", action="append", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = load_config(args.config or [str(ROOT / "params.yaml"), str(ROOT / "config/alpaca_eval.yaml")])
    spec, prefs, texts = replayed(cfg)
    models = list(spec["models"])
    rng = random.Random(args.seed)
    rows = {}
    n_prompts = n_unique = 0
    for pid, p in sorted(prefs.items()):
        ms = [m for m in models if m in texts.get(pid, {})]
        cmps = all_pairs_labels(ms, p, cfg["seed"], pid)
        gold = gpt_rank.gpt_ranks(cmps, ms)
        gold_rank = dict(zip(ms, gold))
        n_prompts += 1
        variants = {"all": run_schedule("all", ms, cmps, cfg["seed"], pid),
                    "knockout": run_schedule("knockout", ms, cmps, cfg["seed"], pid),
                    "random-pairs (k=N-1)": random_sparse(ms, cmps, len(ms) - 1, rng),
                    "random-pairs (k=2(N-1))": random_sparse(ms, cmps, 2 * (len(ms) - 1), rng),
                    "random pick (no calls)": (0, rng.choice(ms))}
        unique = gold.count(1) == 1
        n_unique += unique
        for name, (calls, pick) in variants.items():
            r = rows.setdefault(name, {"calls": 0, "top1": 0, "rank_sum": 0, "unique_top1": 0})
            r["calls"] += calls
            r["top1"] += gold_rank[pick] == 1
            r["rank_sum"] += gold_rank[pick]
            r["unique_top1"] += unique and gold_rank[pick] == 1
    print(f"{n_prompts} prompts, {len(models)} models, replayed AlpacaEval GPT-4 labels (seed {cfg['seed']})")
    print(f"{n_unique} prompts have a unique all-pairs winner (the labels have 3 levels, so rank 1 is often shared)")
    print(f"{'schedule':26s} {'calls/prompt':>12s} {'top-1 agree %':>14s} {'unique-winner %':>16s} {'mean gold rank':>15s}")
    table = {}
    for name, r in rows.items():
        table[name] = {"calls_per_prompt": r["calls"] / n_prompts, "top1_agreement_pct": 100 * r["top1"] / n_prompts,
                       "mean_gold_rank_of_pick": r["rank_sum"] / n_prompts,
                       "unique_winner_found_pct": 100 * r["unique_top1"] / n_unique if n_unique else None}
        t = table[name]
        print(f"{name:26s} {t['calls_per_prompt']:12.1f} {t['top1_agreement_pct']:14.1f} "
              f"{t['unique_winner_found_pct'] or 0:16.1f} {t['mean_gold_rank_of_pick']:15.2f}")

    # throughput of the replay stage itself on all prompts
    from llmblend.judge.run import judge_split

    with tempfile.TemporaryDirectory() as tmp:
        cands = Path(tmp) / "c.jsonl"
        with open(cands, "w") as f:
            for pid, t in texts.items():
                f.write(json.dumps({"id": pid[:40], "instruction": pid, "input": "", "output": "",
                                    "candidates": [{"model": m, "text": t[m]} for m in models if m in t]}) + "\n")
        t0 = time.perf_counter()
        m = judge_split(cfg, cands, Path(tmp) / "o.jsonl", Path(tmp) / "m.json", Path(tmp) / "c.sqlite")
        dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"replay judge stage: {m['examples']} prompts, {m['pairs_labelled']} pairs labelled, "
          f"{m['dropped_pairs']} dropped (unusable GPT-4 judgments), {dt:.2f} s, "
          f"{m['pairs_labelled'] / dt:.0f} pairs/s, peak RSS {rss:.0f} MB")
    print(json.dumps({"schedules": table, "replay_stage": {"seconds": dt, "pairs": m["pairs_labelled"],
                                                           "dropped": m["dropped_pairs"], "labels": m["labels"]}}))


if __name__ == "__main__":
    main()
