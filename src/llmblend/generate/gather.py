"""Gather the shards of every generator into `candidates/<split>.jsonl`.

Each split record gets `candidates` in the configured generator order, one per generator. A shard
that lacks a record, holds an id the split does not have, or repeats an id is an error naming the
shard file and line: nothing is dropped or invented here. The manifest counts records, flags and
tokens per generator; import generators' join reports are merged into `join_report.json`.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from llmblend.errors import InputError
from llmblend.io import file_entry, iter_jsonl, read_json, read_jsonl, write_json, write_jsonl
from llmblend.generate.shards import SPLIT_FIELDS

log = logging.getLogger("llmblend.generate")


def shard_paths(gen_dir: Path, generator: str, split: str, n_shards: int) -> list[Path]:
    return [gen_dir / generator / split / f"shard-{k}.jsonl" for k in range(n_shards)]


def gather_split(cfg: dict, split_path, gen_dir, out_path) -> dict:
    gen_dir, split = Path(gen_dir), Path(split_path).stem
    records = read_jsonl(split_path, SPLIT_FIELDS)
    index = {r["id"]: i for i, r in enumerate(records)}
    n_shards = cfg["generate"]["shards"]
    per_gen = {}
    for gen in cfg["generate"]["generators"]:
        name = gen["name"]
        found: dict[str, dict] = {}
        for path in shard_paths(gen_dir, name, split, n_shards):
            for lineno, row in iter_jsonl(path, {"id": str, "candidate": dict}):
                if row["id"] not in index:
                    raise InputError(path, lineno, "id", f"{row['id']!r} is not a record of {split_path}")
                if row["id"] in found:
                    raise InputError(path, lineno, "id", f"{row['id']!r} appears twice in {name}'s shards")
                if row["candidate"].get("model") != name:
                    raise InputError(path, lineno, "candidate.model", f"expected {name!r}")
                found[row["id"]] = row["candidate"]
        missing = [r["id"] for r in records if r["id"] not in found]
        if missing:
            raise InputError(gen_dir / name / split, problem=f"{len(missing)} records of {split_path} have no "
                             f"{name} candidate (first: {missing[0]})")
        per_gen[name] = found
    for rec in records:
        rec["candidates"] = [per_gen[g["name"]][rec["id"]] for g in cfg["generate"]["generators"]]
    write_jsonl(out_path, records)
    stats = {}
    for gen in cfg["generate"]["generators"]:
        cands = per_gen[gen["name"]].values()
        flags = Counter(f for c in cands for f in c.get("flags", []))
        n_tok = [c["n_tokens"] for c in cands if isinstance(c.get("n_tokens"), int)]
        stats[gen["name"]] = {"records": len(cands), "flags": dict(sorted(flags.items())),
                              "new_tokens": sum(n_tok), "mean_new_tokens": round(sum(n_tok) / len(n_tok), 2)
                              if n_tok else None}
    log.info("%s: %d records x %d candidates -> %s", split, len(records), len(per_gen), out_path)
    return {"file": file_entry(out_path), "generators": stats}


def gather_candidates(cfg: dict, splits_dir, gen_dir, out_dir) -> dict:
    splits_dir, gen_dir, out_dir = Path(splits_dir), Path(gen_dir), Path(out_dir)
    g = cfg["generate"]
    # the generator settings as configured (an openai generator names its key's env var, never the key)
    manifest = {"generators": g["generators"], "shards": g["shards"], "splits": {}}
    for split in g["splits"]:
        manifest["splits"][split] = gather_split(cfg, splits_dir / f"{split}.jsonl", gen_dir,
                                                 out_dir / f"{split}.jsonl")
    imports = [gen["name"] for gen in g["generators"] if gen["backend"] == "import"]
    if imports:
        write_json(out_dir / "join_report.json", join_report(cfg, gen_dir, imports))
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def join_report(cfg: dict, gen_dir: Path, generators: list[str]) -> dict:
    """Per import generator and split: how many records joined, and every one that did not."""
    out = {}
    for name in generators:
        per_split = {}
        for split in cfg["generate"]["splits"]:
            joined, failed = 0, []
            for path in shard_paths(gen_dir, name, split, cfg["generate"]["shards"]):
                rep = read_json(path.with_name(path.stem + ".report.json"))
                joined += rep.get("joined", 0)
                failed += rep.get("join_failures", [])
            per_split[split] = {"joined": joined, "not_joined": len(failed), "failures": failed}
        out[name] = per_split
    return out
