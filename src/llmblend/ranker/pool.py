"""The ranker's training pool (`ranker.train_generators`): answers of imported models on the train
and val prompts, apart from the profile's generators that Table 2 ranks at test.

A ranker learns more from more judged answers (the AlpacaEval mirror has 37 models against one
reference; the profile ranks 12), and a pool that leaves some models out is how a user checks that
a ranker generalises to LLMs it never saw. Each pool entry is the name of a model in the profile's
one released source (`alpaca_eval` or `mixinstruct`), imported by the `import` backend exactly as a
generator would be. The pool records have the split records' fields and one candidate per model
that answered; the judge labels them like any candidates file (rule judge_ranker_pool).
"""

from __future__ import annotations

import logging
from collections import Counter

from llmblend.errors import ConfigError
from llmblend.io import iter_jsonl, write_json, write_jsonl

log = logging.getLogger("llmblend.ranker")

IMPORT_SOURCES = ("alpaca_eval", "mixinstruct")


def pool_generators(cfg: dict) -> list[dict]:
    """The generator specs of the pool (import backend), one per name of ranker.train_generators."""
    names = cfg["ranker"].get("train_generators") or []
    sources = [s["type"] for s in cfg["data"]["sources"] if s["type"] in IMPORT_SOURCES]
    if names and len(sources) != 1:
        raise ConfigError("config key 'ranker.train_generators': the pool is imported from the profile's one "
                          f"released source ({' or '.join(IMPORT_SOURCES)}), found {sources or 'none'}")
    return [{"name": n, "backend": "import", "import": {"source": sources[0], "model": n}} for n in names]


def build_pool(cfg: dict, split: str, split_path, out_path, report_path=None) -> dict:
    """Write the pool records of one split: each split record with the pool's answers as candidates.
    A model with no (or an empty) answer to a prompt is left out of that record; a record left with
    fewer than two answers teaches nothing and is dropped. Both are counted in the report."""
    from llmblend.generate.importer import ImportBackend

    gens = pool_generators(cfg)
    if not gens:
        raise ConfigError("config key 'ranker.train_generators' is empty: there is no pool to build")
    records = [rec for _, rec in iter_jsonl(split_path, {"id": str, "instruction": str})]
    answers: dict[str, dict] = {}
    missing, empty = Counter(), Counter()
    for gen in gens:
        backend = ImportBackend(gen, cfg, split)
        for rec_id, cand in backend.run_batch(records):
            if "missing" in cand["flags"]:
                missing[gen["name"]] += 1
            elif "empty" in cand["flags"]:
                empty[gen["name"]] += 1
            else:
                answers.setdefault(rec_id, {})[gen["name"]] = cand
    out, too_few = [], 0
    for rec in records:
        cands = [answers.get(rec["id"], {}).get(g["name"]) for g in gens]
        cands = [c for c in cands if c is not None]
        if len(cands) < 2:
            too_few += 1
            continue
        out.append({**rec, "candidates": cands})
    write_jsonl(out_path, out)
    report = {"split": split, "models": [g["name"] for g in gens], "records_in": len(records),
              "records_out": len(out), "dropped_fewer_than_2_answers": too_few,
              "answers": sum(len(r["candidates"]) for r in out),
              "missing_answers": dict(sorted(missing.items())), "empty_answers": dict(sorted(empty.items()))}
    if report_path:
        write_json(report_path, report)
    log.info("ranker pool %s: %d records, %d answers of %d models (%d missing, %d empty, %d records dropped)",
             split, len(out), report["answers"], len(gens), sum(missing.values()), sum(empty.values()), too_few)
    return report
