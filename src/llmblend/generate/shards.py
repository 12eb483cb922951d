"""Sharded, resumable candidate generation: one job per (generator, split, shard).

Shard k of K holds the split's records [k*n/K, (k+1)*n/K) (contiguous, so the gather keeps the split
order). A job appends each finished record as one line `{"id": ..., "candidate": {...}}` to its
answer log `cache/shard-<k>.jsonl` beside the shard (llmblend/answerlog.py), and syncs it after every
batch (an API backend: after every answer); a killed job leaves complete lines (a torn last line is cut off on resume), and
the rerun skips every id already there. When all records are done the lines are written in split
order to `shard-<k>.jsonl` (atomic rename).

The answer log outlives the shard: a job can finish and then lose its record (DVC killed before it
writes dvc.lock, Snakemake killed before it marks the job done), and both tools then delete the
outputs and run the job again; the log turns that rerun into a reassembly, with no answer generated
(or paid for) twice. Its first line is the key of what the answers depend on (generator and model
settings, model argument, seed, shard bounds and the shard's records); a log with another key is
discarded, with a warning, so changed settings never reuse old answers.

A summary of the shard (counts, flags, tokens) goes to `shard-<k>.report.json` beside it; what this
run did (resumed, seconds, tokens/s) goes to the log only. The one exception is the openai
backend's accounting of this run's calls (calls, retries, faults by kind, tokens, as the judge
reports them): it counts what this run paid, so a resumed shard's
report differs there, and only there, from an uninterrupted one's; the shard's records are identical.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from pathlib import Path

from llmblend.answerlog import AnswerLog
from llmblend.errors import ConfigError, InputError, LLMBlendError
from llmblend.generate.backend import GenerationBackend
from llmblend.io import dumps, read_json, read_jsonl, unwritable, write_json, write_jsonl
from llmblend.runlog import progress

log = logging.getLogger("llmblend.generate")

SPLIT_FIELDS = {"id": str, "instruction": str, "input": str}


def shard_slice(n: int, k: int, n_shards: int) -> slice:
    if not 0 <= k < n_shards:
        raise ConfigError(f"shard {k} is out of range for {n_shards} shards")
    return slice(k * n // n_shards, (k + 1) * n // n_shards)


def find_generator(cfg: dict, name: str) -> dict:
    names = [g["name"] for g in cfg["generate"]["generators"]]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"generate.generators: names must be unique (a candidate's `model`); repeated: {dup}")
    for gen in cfg["generate"]["generators"]:
        if gen["name"] == name:
            return gen
    known = ", ".join(g["name"] for g in cfg["generate"]["generators"])
    raise ConfigError(f"generator {name!r} is not in generate.generators ({known})")


def answer_log_path(out_path) -> Path:
    """Where a shard's answers are logged as they finish (kept after the shard is written)."""
    out_path = Path(out_path)
    return out_path.parent / "cache" / out_path.name


def answers_key(cfg: dict, gen: dict, model_arg: str | None, shard: int, records: list[dict]) -> str:
    """What a shard's answers depend on: a changed setting or record gives another key."""
    # a generator without a model (an import) reads no `models` entry (its rule declares none)
    model = cfg.get("models", {}).get(gen["model"]) if gen.get("model") else None
    what = {"generator": gen, "model": model, "model_arg": model_arg,
            "seed": cfg["seed"], "shard": shard, "shards": cfg["generate"]["shards"], "records": records}
    return hashlib.sha256(dumps(what).encode()).hexdigest()


def make_backend(cfg: dict, gen: dict, model_arg: str | None, split: str | None = None,
                 threads: int | None = None) -> GenerationBackend:
    """The backend object for one generator (`model_arg` overrides the models' spec, e.g. a
    converted directory passed by the workflow). `threads`: CTranslate2's (default: torch's count;
    an hf model runs on torch's, which the command's --threads sets)."""
    backend = gen["backend"]
    if backend == "hf":
        model_cfg = cfg.get("models", {}).get(gen["model"])
        if model_cfg is None:
            raise ConfigError(f"generator {gen['name']}: model {gen['model']!r} is not in the models section")
        from llmblend.generate.hf import HFBackend

        return HFBackend(gen, model_cfg, model_arg or model_cfg["spec"], cfg["seed"])
    if backend == "ctranslate2":
        model_cfg = cfg.get("models", {}).get(gen["model"])
        if model_cfg is None:
            raise ConfigError(f"generator {gen['name']}: model {gen['model']!r} is not in the models section")
        if model_arg is None:
            raise ConfigError(f"generator {gen['name']}: the ctranslate2 backend needs --model dir:<CTranslate2 dir> "
                              "(rule convert_ct2_model makes it)")
        import torch

        from llmblend.generate.ct2_backend import CT2Backend

        return CT2Backend(gen, model_cfg, model_arg, cfg["seed"], threads or torch.get_num_threads())
    if backend == "openai":
        from llmblend.generate.openai_backend import OpenAIBackend

        return OpenAIBackend(gen, cfg["seed"])
    if backend == "import":
        from llmblend.generate.importer import ImportBackend

        return ImportBackend(gen, cfg, split)
    raise ConfigError(f"generator {gen['name']}: unknown backend {backend!r}")


def generate_shard(cfg: dict, generator: str, split_path, shard: int, out_path, model_arg: str | None = None,
                   backend=None, threads: int | None = None) -> dict:
    """Generate one shard's candidates; return its report. `backend` may be given (tests, benchmarks);
    `threads`: a CTranslate2 model's (make_backend)."""
    out_path = Path(out_path)
    gen = find_generator(cfg, generator)
    n_shards = cfg["generate"]["shards"]
    records = read_jsonl(split_path, SPLIT_FIELDS)
    mine = records[shard_slice(len(records), shard, n_shards)]
    report_path = out_path.with_name(out_path.stem + ".report.json")
    key = answers_key(cfg, gen, model_arg, shard, mine)
    if out_path.exists() and report_path.exists():
        report = read_json(report_path)
        if report.get("answers_for") == key and [r["id"] for r in read_jsonl(out_path)] == [r["id"] for r in mine]:
            log.info("%s: complete already; not redone", out_path)
            return report
    partial = answer_log_path(out_path)
    answers = AnswerLog(partial, key, "candidate")
    done = answers.read()
    todo = [r for r in mine if r["id"] not in done]
    log.info("%s %s shard %d/%d: %d records, %d already done, %d to generate",
             generator, Path(split_path).stem, shard, n_shards, len(mine), len(done), len(todo))
    t0 = time.time()
    n_tokens = 0
    # built once, when there is something to generate or an import join to report
    if backend is None and (todo or gen["backend"] == "import"):
        backend = make_backend(cfg, gen, model_arg, Path(split_path).stem, threads)

    def keep(results) -> None:
        answers.append(results)
        done.update(results)

    if todo:
        bar = progress(total=len(todo), desc=f"{generator} shard {shard}", unit="rec")
        try:  # a full disk or read-only folder: one line naming the file (finished lines stay resumable)
            with answers:
                for batch in backend.shard_batches(mine, done):
                    try:
                        if backend.streams:
                            results = backend.run_batch(batch, on_result=lambda r: keep([r]))
                        else:
                            results = backend.run_batch(batch)
                    except LLMBlendError as e:
                        # keep what this batch finished before the failure, then fail naming the shard
                        if not backend.streams:
                            keep(getattr(e, "done", []))
                        raise LLMBlendError(f"{Path(split_path).stem} shard {shard}: {e} ({len(done)} of {len(mine)} "
                                            f"records are saved in {partial}; rerun to resume)") from None
                    if not backend.streams:
                        keep(results)
                    batch_tokens = sum(c.get("n_tokens") or 0 for _, c in results)
                    n_tokens += batch_tokens
                    bar.update(len(results))
                    bar.set_postfix(tok_s=f"{n_tokens / max(time.time() - t0, 1e-9):.1f}")
        except OSError as e:
            answers.drop_if_no_answer()
            raise unwritable(partial, e) from None
        bar.close()
    missing = [r["id"] for r in mine if r["id"] not in done]
    if missing:
        raise InputError(partial, problem=f"{len(missing)} records have no candidate (first: {missing[0]})")
    write_jsonl(out_path, ({"id": r["id"], "candidate": done[r["id"]]} for r in mine))
    seconds = time.time() - t0
    flags = Counter(f for r in mine for f in done[r["id"]].get("flags", []))
    report = {"generator": generator, "split": Path(split_path).stem, "shard": shard, "shards": n_shards,
              "answers_for": key, "records": len(mine),
              "new_tokens": sum(done[r["id"]].get("n_tokens") or 0 for r in mine), "flags": dict(sorted(flags.items()))}
    if backend is not None:
        report.update(backend.report(mine))  # an import's join report covers the whole shard
    write_json(report_path, report)
    log.info("%s shard %d: %d records (%d resumed), %d new tokens in %.1f s (%.1f tok/s), flags %s", generator, shard,
             len(mine), len(mine) - len(todo), n_tokens, seconds, n_tokens / seconds if todo and seconds > 0 else 0.0,
             dict(flags))
    return report
