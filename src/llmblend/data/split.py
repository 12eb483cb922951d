"""Seeded train/val/test splitting.

Records are first sorted by id, so the split depends only on the set of records and the seed, not
on the order a source happened to list them in (data.compat reference-4594f09 skips the sort, as
get_mixinstruct.py does: its split depends on the sources' order). Then one seeded shuffle, and the splits are cut
in the order val, test, train (as the reference script does: dev first, then test, then train).
A size is a count or "rest" (what is left); what no split takes is counted as unused.
"""

from __future__ import annotations

import random

from llmblend.errors import ConfigError

ORDER = ("val", "test", "train")


def split_records(records: list[dict], sizes: dict, seed: int,
                  sort_by_id: bool = True) -> tuple[dict[str, list[dict]], int]:
    recs = sorted(records, key=lambda r: r["id"]) if sort_by_id else list(records)
    random.Random(seed).shuffle(recs)
    fixed = {k: v for k, v in sizes.items() if v != "rest"}
    rest = [k for k, v in sizes.items() if v == "rest"]
    if len(rest) > 1:
        raise ConfigError("data.split.sizes: at most one split may be 'rest'")
    need = sum(fixed.values())
    if need > len(recs):
        raise ConfigError(f"data.split.sizes asks for {need} records ({fixed}) but only {len(recs)} remain after filtering")
    out, pos = {}, 0
    for name in ORDER:
        if name in fixed:
            out[name] = recs[pos: pos + fixed[name]]
            pos += fixed[name]
    for name in rest:
        out[name] = recs[pos:]
        pos = len(recs)
    return {k: out[k] for k in ("train", "val", "test") if k in out}, len(recs) - pos


def keep_released(records: list[dict]) -> tuple[dict[str, list[dict]], int]:
    """Keep the split each record was released in (the MixInstruct files are the canonical split)."""
    out = {"train": [], "val": [], "test": []}
    for r in records:
        out[r.pop("_split")].append(r)
    return out, 0
