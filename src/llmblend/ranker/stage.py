"""The ranker stage as plain functions (the CLI and tests call these; no Snakemake needed).

- `train_ranker(cfg, kind, train, val, backbone, out, curve, ...)`: train one learned ranker.
- `rank_split(cfg, methods, input, out_dir, split, ...)`: write one rankings file per method:
  `<out_dir>/<method>/<split>.jsonl`, records {id, ranks, scores, n_forward}, plus a report; with
  `matrices_path` (rule rank_test_full) also the full comparison matrices the MaxLogits / MaxWins
  methods were computed from (`infer.write_matrices`), which the evaluate stage replays the best-of-N
  schedules on (`select.simulate_grid`) at no model cost; with `matrices_in` (rule rank_candidates,
  when rank_test_full runs) bubble and the select schedules are played on those matrices: the same
  seeded comparisons and the same `n_forward`, each logit read instead of run again.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from llmblend.checkpoint import checkpoint_key
from llmblend.config import setting
from llmblend.errors import ConfigError, InputError, LLMBlendError
from llmblend.io import atomic_path, sha256_file, share_like_open, write_json, write_jsonl
from llmblend.ranker import baselines, infer
from llmblend.ranker import select as select_schedules
from llmblend.ranker.consensus import combined_scores, consensus_scores, read_part
from llmblend.ranker.data import attach_signal, load_examples, load_judge, signal_metrics, sources
from llmblend.ranker.methods import METHODS, ORACLE, TRAINED, method, select_settings
from llmblend.ranker.model import build_ranker, load_ranker
from llmblend.ranker.rules import train_keys
from llmblend.workflow.snake import config_slice, model_keys

log = logging.getLogger("llmblend.ranker")


def _device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def train_ranker(cfg: dict, kind: str, train_path, val_path, backbone_dir, out_dir, curve_path,
                 train_judge=None, val_judge=None, backbone_spec: str = "") -> dict:
    """Train ranker `kind` on the train split, pick the best epoch on val, save it to out_dir."""
    rc = cfg["ranker"]
    if kind not in TRAINED:
        raise ConfigError(f"ranker type {kind!r} is not trained (one of {', '.join(TRAINED)})")
    t0 = time.time()
    counts = {"train": {}, "val": {}}
    need = signal_metrics(rc["signal"])
    join = setting(cfg, "ranker.source_join")
    train_ex = attach_signal(load_examples(train_path, need, join), rc["signal"], train_judge, counts["train"])
    val_ex = attach_signal(load_examples(val_path, need, join), rc["signal"], val_judge, counts["val"])
    if not train_ex or not val_ex:
        raise LLMBlendError(f"no {'training' if not train_ex else 'validation'} examples with a signal "
                            f"(dropped: {counts})")
    tcfg = dict(rc["train"])
    tcfg.update(max_tokens=rc["infer"]["max_tokens"], max_batch=rc["infer"]["max_batch"],
                checkpoint_seconds=setting(cfg, "ranker.checkpoint_seconds"))
    # the pairwise loss, its pair sampling and the epoch choice are the PairRanker's settings alone: the
    # baselines' rules do not declare them (ranker/rules.py train_keys), so they are not read for them
    pairwise = {}
    if kind == "pairranker":
        pairwise = {"loss": rc["loss"], "pooling": setting(cfg, "ranker.pooling")}
        tcfg.update(pairs_per_input=rc["pairs_per_input"], select_by=setting(cfg, "ranker.select_by"),
                    tie_pairs_per_input=setting(cfg, "ranker.tie_pairs_per_input"))
    else:
        tcfg.update((rc.get("baseline_train") or {}).get(kind) or {})
    seed = int(cfg["seed"]) + TRAINED.index(kind)
    from llmblend.ranker.train import set_seed, train

    set_seed(seed)  # the head's initialisation
    model, tokenizer = build_ranker(kind, backbone_dir, backbone_spec, source_max_len=rc["source_max_len"],
                                    candidate_max_len=rc["candidate_max_len"], dropout=rc["dropout"],
                                    attention_dropout=rc["train"].get("attention_dropout"),
                                    length_sharing=setting(cfg, "ranker.length_sharing"), source_join=join,
                                    **pairwise)
    # a killed training resumes from here (kept beside the model, not a workflow output)
    checkpoint = Path(out_dir).with_name(Path(out_dir).name + ".checkpoint.pt")
    # the keys rule train_ranker declares: another ranking method or checkpoint_seconds keeps the key
    declared = config_slice(cfg, *train_keys(kind, model_keys(cfg, rc.get("backbone"))))
    key = checkpoint_key(declared, kind=kind, backbone=[backbone_spec, str(Path(backbone_dir).resolve())],
                         files=[sha256_file(p) if p else None for p in (train_path, val_path, train_judge, val_judge)])
    model, history = train(model, tokenizer, train_ex, val_ex, tcfg, seed, checkpoint=checkpoint, key=key)
    if int(os.environ.get("RANK", "0")) == 0:  # one writer under accelerate launch
        save_dir_atomic(model, tokenizer, out_dir)
        checkpoint.unlink(missing_ok=True)
    with atomic_path(curve_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["epoch", "loss", "val_score"], lineterminator="\n")
        w.writeheader()
        for row in history:
            w.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
    # inputs whose candidates all share one signal value teach nothing (no pair differs); kept, counted
    counts["train"]["no_preference"] = sum(1 for ex in train_ex if len(set(ex.signal)) < 2)
    # the threads change the float summation order, so the trained weights (not just the speed):
    # recorded, as no rule declares them (llmblend.cli.add_threads)
    report = {"type": kind, "train_examples": len(train_ex), "val_examples": len(val_ex), "dropped": counts,
              "best_epoch": max(history, key=lambda r: r["val_score"])["epoch"], "history": history,
              "torch_threads": torch.get_num_threads(),
              # the precision it trained in, and when the profile said `auto`, why (llmblend.models.precision)
              "precision": {"autocast": tcfg.get("autocast"), "auto": cfg.get("_precision")}}
    log.info("trained %s in %.1fs (best epoch %d)", kind, time.time() - t0, report["best_epoch"])
    return report


def save_dir_atomic(model, tokenizer, out_dir) -> None:
    """Save into a temporary sibling folder, then swap it in: never a half-written model directory."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        share_like_open(tmp, directory=True)
        model.save_pretrained(tmp, tokenizer)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def read_split_matrices(path, examples) -> list:
    """The full comparison matrices of `path`, checked against the split's examples: the same ids in the
    same order, an N x N matrix for N candidates (else InputError naming the file and the example)."""
    ids, mats = infer.read_matrices(path)
    if ids != [ex.id for ex in examples]:
        raise InputError(path, field="ids", problem=f"{len(ids)} matrices whose ids are not the {len(examples)} "
                                                    f"examples of the split, in order (a matrices file of another split?)")
    for e, (ex, m) in enumerate(zip(examples, mats)):
        if m.shape != (len(ex.texts), len(ex.texts)):
            raise InputError(path, field=f"m{e}", problem=f"a {m.shape[0]} x {m.shape[1]} matrix for example "
                                                          f"{ex.id}, which has {len(ex.texts)} candidates")
    return mats


def rank_split(cfg: dict, methods: list[str], input_path, out_dir, split: str, models: dict | None = None,
               judge_path=None, clm_model_dir=None, matrices_path=None, encoder_dir=None,
               rankings: dict | None = None, matrices_in=None) -> dict:
    """Rank every example of a split with each method; `models` maps a trained type to its directory.
    matrices_path: also write the full comparison matrices there (needs a `pair_full` method).
    matrices_in: the split's full comparison matrices (a `matrices_path` file of the same ranker): bubble
    and the select schedules read their logits there instead of running the model.
    encoder_dir: the sentence encoder of `consensus`; rankings: method -> its rankings file of this
    split, for the methods that combine others (`combine`)."""
    rows = [method(m) for m in methods]
    # read only the keys of these methods (methods.METHODS `keys`): its rule declares no other
    rc = cfg["ranker"] if any(k.startswith("ranker.") for r in rows for k in r.keys) else {}
    if matrices_path is not None and not any(r.kind == "pair_full" for r in rows):
        full = [m for m, row in METHODS.items() if row.kind == "pair_full"]
        raise ConfigError(f"--matrices: the full comparison matrices are computed only for "
                          f"{' / '.join(full)}, not for {', '.join(methods)}")
    ranker_model, clm = any(r.model for r in rows), any(r.reads == "clm" for r in rows)
    metrics = sorted({m[len(ORACLE):] for m, r in zip(methods, rows) if r.kind == "oracle_metric"})
    # the source text matters to CLM-Scoring only (a trained ranker joins the sources its own way, srcs)
    examples = load_examples(input_path, metrics, setting(cfg, "ranker.source_join") if clm else "newline")
    cands = [ex.texts for ex in examples]
    kw = {"device": _device()}
    if ranker_model:
        kw.update(max_tokens=rc["infer"]["max_tokens"], max_batch=rc["infer"]["max_batch"])
    if ranker_model or clm:
        kw["autocast"] = rc["infer"].get("autocast")
    loaded: dict = {}

    def get(kind):
        if kind not in loaded:
            if not models or kind not in models:
                raise ConfigError(f"method needs the trained {kind} ranker, but no model directory was given")
            m, t = load_ranker(models[kind])
            loaded[kind] = (m.to(kw["device"]), t)
        return loaded[kind]

    def srcs(kind):  # the sources joined as that ranker was trained to read them (an imported one: concat)
        return sources(examples, get(kind)[0].config.source_join)

    results, reports, matrices = {}, {}, None
    given = read_split_matrices(matrices_in, examples) if matrices_in is not None else None
    for name in methods:
        t0 = time.time()
        row = method(name)
        kind = row.kind
        ids = [ex.id for ex in examples]
        # the method table's passes; bubble and the select schedules count what they spent
        n_fwd = [row.passes(len(c), rc) for c in cands]
        if kind == "pair_full":
            if matrices is None:
                matrices = infer.full_matrices(*get("pairranker"), srcs("pairranker"), cands, **kw)
            scores = [row.aggregate(m).tolist() for m in matrices]
        elif kind == "bubble" and given is not None:
            scores, n_fwd = infer.bubble_on_matrices(given, seed=int(cfg["seed"]))
        elif kind == "bubble":
            scores, n_fwd = infer.bubble(*get("pairranker"), srcs("pairranker"), cands, seed=int(cfg["seed"]), **kw)
        elif kind == "select" and given is not None:
            scores, n_fwd = select_schedules.select_on_matrices(given, row.schedule, int(cfg["seed"]),
                                                                select_settings(row.keys, rc))
        elif kind == "select":
            scores, n_fwd = select_schedules.select(*get("pairranker"), srcs("pairranker"), cands, row.schedule,
                                                    int(cfg["seed"]), select_settings(row.keys, rc), **kw)
        elif kind == "summareranker":
            scores = infer.single_scores(*get("summareranker"), srcs("summareranker"), cands, **kw)
        elif kind == "simcls":
            scores = infer.dual_scores(*get("simcls"), srcs("simcls"), cands, **kw)
        elif kind == "random":
            scores = baselines.random_scores(examples, int(cfg["seed"]))
        elif kind == "longest":
            scores = baselines.longest_scores(examples)
        elif kind == "clm_scoring":
            if clm_model_dir is None:
                raise ConfigError("method clm_scoring needs the causal LM (ranker.clm_scorer)")
            scores = baselines.clm_scores(clm_model_dir, examples, rc["clm_max_len"], device=kw["device"],
                                           autocast=kw["autocast"])
        elif kind == "consensus":
            if encoder_dir is None:
                raise ConfigError(f"method {name} needs the sentence encoder (ranker.consensus.encoder)")
            scores = consensus_scores(encoder_dir, cands, int(setting(cfg, "ranker.consensus.max_len")),
                                      device=kw["device"])
        elif kind == "combine":
            missing = [p for p in row.parts if p not in (rankings or {})]
            if missing:
                raise ConfigError(f"method {name} combines {', '.join(row.parts)}: no rankings file given for "
                                  f"{', '.join(missing)}")
            parts = [read_part(rankings[p], examples) for p in row.parts]
            weights = [1.0] + [float(setting(cfg, "ranker.consensus.weight"))] * (len(parts) - 1)
            scores = combined_scores([s for s, _ in parts], weights)
            n_fwd = [sum(p) for p in zip(*(n for _, n in parts))]  # the pick costs what its parts cost
        elif kind == "oracle_metric":
            metric = name[len(ORACLE):]
            scores = [[float(s[metric]) for s in ex.metric_scores] for ex in examples]
        else:  # oracle_judge: only the judged examples have an oracle pick
            if judge_path is None:
                raise ConfigError(f"method {name} needs judge labels for split {split}")
            counts: dict = {}
            by_id = load_judge(judge_path, examples, counts)
            ids = [i for i in ids if i in by_id]
            scores = [by_id[i] for i in ids]
            n_fwd = [0] * len(ids)
            reports.setdefault(name, {})["judge_counts"] = counts
        rows = [{"id": i, "ranks": infer.ranks_from_scores(s), "scores": [round(float(x), 6) for x in s],
                 "n_forward": int(n)} for i, s, n in zip(ids, scores, n_fwd)]
        results[name] = rows
        rep = reports.setdefault(name, {})
        rep.update(method=name, split=split, examples=len(rows), left_out=len(examples) - len(rows),
                   mean_n_forward=(sum(r["n_forward"] for r in rows) / len(rows)) if rows else 0.0)
        log.info("%s on %s: %d examples, %.1f forwards each, %.1fs", name, split, len(rows),
                 rep["mean_n_forward"], time.time() - t0)
    # write only after every method succeeded: no partial output
    for name, rows in results.items():
        d = Path(out_dir) / name
        write_jsonl(d / f"{split}.jsonl", rows)
        write_json(d / f"{split}.report.json", reports[name])
    if matrices_path is not None:
        infer.write_matrices(matrices_path, [ex.id for ex in examples], matrices)
    return reports
