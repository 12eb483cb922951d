"""The data stage: raw sources -> validated, deduplicated, filtered, split records + a manifest.

Outputs (under data/<run>/splits/): train.jsonl, val.jsonl, test.jsonl and manifest.json with the
counts per source, every drop by reason, and each file's record count and sha256. Everything is
computed in memory first; files are written only once all input has passed its checks, each
through a temporary file and a rename, so a bad input leaves no partial output behind.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from llmblend.config import mirror_root, setting
from llmblend.data.records import REFERENCE, Filters, check_record
from llmblend.data.sources import ADAPTERS
from llmblend.data.sources.paper import MIX_ORDER
from llmblend.data.split import keep_released, split_records
from llmblend.errors import ConfigError, InputError
from llmblend.io import file_entry, write_json, write_jsonl
from llmblend.runlog import progress

log = logging.getLogger("llmblend.data")
SPLITS = ("train", "val", "test")


def collect(cfg: dict) -> tuple[list[dict], dict]:
    """Read every configured source, validate and filter; return records and drop/count stats."""
    dcfg = cfg["data"]
    ctx = {"seed": cfg["seed"], "mirror": mirror_root(cfg)}
    compat = setting(cfg, "data.compat")
    filters = Filters(dcfg.get("filters", {}), compat)
    # the reference dedupes on whole records, its id included: only a record repeated whole can go
    drop_repeats = compat == REFERENCE and dcfg.get("filters", {}).get("dedupe", True)
    mixed = [s["type"] for s in dcfg["sources"] if s["type"] in MIX_ORDER]
    if compat == REFERENCE and mixed != sorted(mixed, key=MIX_ORDER.index):
        raise ConfigError(f"data.sources: data.compat {REFERENCE} shuffles the sources in the order listed, "
                          f"which must be the reference's ({', '.join(MIX_ORDER)}), not {', '.join(mixed)}")
    per_source: Counter = Counter()
    source_drops: Counter = Counter()
    seen_ids: dict[str, tuple] = {}
    records = []
    for spec in dcfg["sources"]:
        kind = spec["type"]
        if kind not in ADAPTERS:
            raise ConfigError(f"data.sources: unknown source type {kind!r} (known: {', '.join(sorted(ADAPTERS))})")
        n_in = 0
        for raw, where in progress(ADAPTERS[kind](spec, ctx), desc=f"read {spec.get('name', kind)}", unit="rec"):
            if "_drop" in raw:
                source_drops[raw["_drop"]] += 1
                continue
            n_in += 1
            rec = check_record(raw, where)
            if "_split" in raw:
                rec["_split"] = raw["_split"]
            if rec["id"] in seen_ids:
                first_where, first = seen_ids[rec["id"]]
                if drop_repeats and first == (rec["instruction"], rec["input"], rec["output"]):
                    source_drops["duplicate_record"] += 1
                    continue
                raise InputError(where, None, "id", f"duplicated id {rec['id']!r} (first seen at {first_where})")
            seen_ids[rec["id"]] = (where, (rec["instruction"], rec["input"], rec["output"]) if drop_repeats else None)
            if filters.keep(rec):
                records.append(rec)
        per_source[spec.get("name", kind)] = n_in
        log.info("source %s: %d records read", spec.get("name", kind), n_in)
    stats = {"read_per_source": dict(per_source), "dropped": dict(sorted((source_drops + filters.dropped).items())),
             "kept_after_filters": len(records)}
    return records, stats


def prepare_splits(cfg: dict, out_dir) -> dict:
    """Build the splits of a profile into `out_dir`; return the manifest."""
    out_dir = Path(out_dir)
    records, stats = collect(cfg)
    split_cfg = cfg["data"]["split"]
    if split_cfg.get("mode", "shuffle") == "released":
        splits, unused = keep_released(records)
    else:
        for r in records:
            r.pop("_split", None)
        # the reference shuffles the sources in the order it mixed them; the project sorts by id first
        splits, unused = split_records(records, split_cfg["sizes"], cfg["seed"],
                                       sort_by_id=setting(cfg, "data.compat") != REFERENCE)
    for name, recs in splits.items():
        by_src = Counter(r["source"] for r in recs)
        log.info("split %s: %d records %s", name, len(recs), dict(sorted(by_src.items())))
    manifest = {"run": cfg["run"], "seed": cfg["seed"], **stats, "unused_after_split": unused, "splits": {}}
    for name in SPLITS:
        recs = splits.get(name, [])
        path = out_dir / f"{name}.jsonl"
        write_jsonl(path, recs)
        manifest["splits"][name] = {**file_entry(path),
                                    "per_source": dict(sorted(Counter(r["source"] for r in recs).items()))}
    write_json(out_dir / "manifest.json", manifest)
    return manifest
