"""Fine-tune a fuser (HF Trainer): best checkpoint by validation loss, resumable after a kill.

Checkpoints go to a work folder beside the model folder (the rule's output is only the final
model, which Snakemake deletes before a rerun); a rerun with the same inputs and settings resumes
from the last checkpoint there, and a finished run removes it.
"""

from __future__ import annotations

import csv
import logging
import shutil
import time
from pathlib import Path

from llmblend.checkpoint import checkpoint_key
from llmblend.config import schema_defaults, schema_node
from llmblend.errors import LLMBlendError
from llmblend.fuser.model import FUSER_META, encode_example, freeze_below, load_model
from llmblend.fuser.prompt import PromptSpec
from llmblend.models import precision, takes_logits_to_keep
from llmblend.io import atomic_path, read_jsonl, sha256_file, write_json

log = logging.getLogger("llmblend.fuser")

FUSER_DATA_FIELDS = {"id": str, "prompt": str, "target": str}


class LabelledPositionsCollator:
    """Pads a batch (DataCollatorForSeq2Seq: labels padded with -100) and, for a causal LM, keeps the
    vocabulary projection to the positions that predict a label: from the batch's earliest answer on
    (`logits_to_keep`, labels cut to match). A fuser's prompt holds the top K answers and is most of
    each sequence, and the projection onto a 49k-token vocabulary with its float32 softmax and
    gradient is a large share of a small model's step; the loss is the same (its masked positions
    contribute nothing). A seq2seq model, or a causal LM whose forward lacks the argument, gets the
    padded batch as it is."""

    def __init__(self, tokenizer, model, family: str):
        from transformers import DataCollatorForSeq2Seq

        self.pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
        self.cut = family == "causal_lm" and takes_logits_to_keep(model)

    def __call__(self, features):
        batch = self.pad(features)
        if not self.cut:
            return batch
        labels = batch["labels"]
        labelled = labels != -100
        if not labelled.any():
            return batch
        width = labels.shape[1]
        first = int(labelled.int().argmax(dim=1)[labelled.any(dim=1)].min())
        # the logit at position first - 1 predicts the first label
        keep = min(width, width - first + 1)
        batch["labels"] = labels[:, width - keep:]
        batch["logits_to_keep"] = keep
        return batch


def _encode_file(path, tokenizer, family, spec: PromptSpec) -> list[dict]:
    return [encode_example(tokenizer, family, r["prompt"], r["target"], spec.max_target_tokens)
            for r in read_jsonl(path, FUSER_DATA_FIELDS)]


def write_loss_csv(log_history: list[dict], path) -> list[dict]:
    """The DVC plot: one row per logged step with the training loss and/or the validation loss."""
    rows: dict[int, dict] = {}
    for entry in log_history:
        if "loss" not in entry and "eval_loss" not in entry:
            continue
        row = rows.setdefault(entry["step"], {"step": entry["step"], "epoch": "", "loss": "", "val_loss": ""})
        row["epoch"] = round(entry.get("epoch", 0.0), 4)
        if "loss" in entry:
            row["loss"] = round(entry["loss"], 6)
        if "eval_loss" in entry:
            row["val_loss"] = round(entry["eval_loss"], 6)
    out = [rows[k] for k in sorted(rows)]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["step", "epoch", "loss", "val_loss"], lineterminator="\n")
        w.writeheader()
        w.writerows(out)
    return out


def train_fuser(model_dir, train_path, val_path, out_dir, spec: PromptSpec, train_cfg: dict, seed: int,
                plot_csv=None, work_dir=None, threads: int | None = None, generate_cfg: dict | None = None, callbacks=(),
                *, config_slice: dict) -> dict:
    """config_slice: the config keys rule train_fuser declares (fuser.snake.genfuser_keys); with the
    inputs it keys the resume checkpoints in work_dir."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

    cfg = {**schema_defaults("fuser.train"), **(train_cfg or {})}  # for callers of the Python API
    cfg["bf16"] = precision.resolve(cfg["bf16"], "fuser.train.bf16")
    unknown = set(cfg) - set(schema_node("fuser.train")["properties"])
    if unknown:
        raise LLMBlendError(f"fuser.train: unknown setting(s) {sorted(unknown)}")
    if threads:
        torch.set_num_threads(threads)
    set_seed(seed)
    out_dir = Path(out_dir)
    work_dir = Path(work_dir or out_dir.with_name(out_dir.name + ".checkpoints"))
    fingerprint = checkpoint_key(config_slice, model=str(Path(model_dir).resolve()),
                                 files=[sha256_file(train_path), sha256_file(val_path)])
    stamp = work_dir / "fingerprint.txt"
    if work_dir.exists() and (not stamp.exists() or stamp.read_text().strip() != fingerprint):
        log.info("checkpoints in %s are from other inputs or settings: starting afresh", work_dir)
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint + "\n")

    model, tokenizer, family = load_model(model_dir)
    if family != spec.family:
        raise LLMBlendError(f"{model_dir}: a {family} model, but the fuser data was formatted for {spec.family}")
    n_train, n_all = freeze_below(model, cfg["train_layers"])
    log.info("fuser %s (%s): training %d of %d parameters", model_dir, family, n_train, n_all)
    tokenizer.padding_side = "right"
    train_set = _encode_file(train_path, tokenizer, family, spec)
    # validation in batches of similar length (the trainer's eval batches follow the dataset's order):
    # alpaca_eval's 100 val examples pad to 38.0k tokens instead of 44.6k. The trainer's val loss is a
    # mean of the batches' mean token losses, so the grouping moves it (the demo's 1.016 -> 1.025 for
    # the same weights, docs/results.md); it still ranks checkpoints of one run alike
    val_set = sorted(_encode_file(val_path, tokenizer, family, spec), key=lambda e: len(e["input_ids"]))
    if not train_set or not val_set:
        raise LLMBlendError(f"fuser training needs examples in both {train_path} ({len(train_set)}) and {val_path} ({len(val_set)})")
    n_tokens = sum(len(e["input_ids"]) for e in train_set)

    by_steps = cfg["eval_steps"] is not None
    args = TrainingArguments(
        output_dir=str(work_dir), seed=seed, data_seed=seed, report_to="none",
        per_device_train_batch_size=cfg["batch_size"], per_device_eval_batch_size=cfg["batch_size"],
        gradient_accumulation_steps=cfg["grad_accum"], train_sampling_strategy=cfg["sampling"],
        learning_rate=cfg["lr"], weight_decay=cfg["weight_decay"],
        warmup_steps=cfg["warmup_steps"], num_train_epochs=cfg["epochs"], max_steps=cfg["max_steps"] or -1,
        eval_strategy="steps" if by_steps else "epoch", save_strategy="steps" if by_steps else "epoch",
        eval_steps=cfg["eval_steps"], save_steps=cfg["eval_steps"], logging_strategy="steps",
        logging_steps=cfg["logging_steps"], logging_first_step=True,
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
        save_total_limit=2, bf16=cfg["bf16"], fsdp=cfg["fsdp"] or "", deepspeed=cfg["deepspeed"],
        dataloader_num_workers=0, dataloader_pin_memory=False, disable_tqdm=False, adam_epsilon=1e-6,
        use_cpu=not torch.cuda.is_available(),  # without it transformers refuses bf16 mixed precision on a CPU
    )

    class LogToRunLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            log.info("step %d: %s", state.global_step, {k: round(v, 5) if isinstance(v, float) else v for k, v in (logs or {}).items()})

    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
                      data_collator=LabelledPositionsCollator(tokenizer, model, family),
                      callbacks=[LogToRunLog(), *callbacks])
    resume = any(work_dir.glob("checkpoint-*"))
    if resume:
        log.info("resuming from the last checkpoint in %s", work_dir)
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    seconds = time.perf_counter() - t0
    history = trainer.state.log_history
    val_losses = [e["eval_loss"] for e in history if "eval_loss" in e]
    report = {
        "family": family, "base_model": str(model_dir), "n_train": len(train_set), "n_val": len(val_set),
        "train_tokens_per_epoch": n_tokens, "trainable_parameters": n_train, "parameters": n_all,
        "steps": trainer.state.global_step, "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_val_loss": trainer.state.best_metric, "val_losses": val_losses,
        "train_loss": result.training_loss,
        "torch_threads": torch.get_num_threads(),  # the summation order, so the weights, depend on it
        "bf16": bool(cfg["bf16"]),  # a profile's `auto` resolved (llmblend.models.precision)
    }
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for p in model.parameters():
        p.requires_grad = True  # saved weights are the whole model either way
    trainer.model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_json(tmp / FUSER_META, {"prompt": spec.to_dict(), "generate": generate_cfg or {}, "seed": seed})
    write_json(tmp / "train_report.json", report)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    if plot_csv:
        write_loss_csv(history, plot_csv)
    shutil.rmtree(work_dir, ignore_errors=True)
    # wall time and rate go to the log only: artifacts must not change from one run to the next
    log.info("fuser trained in %.1f s (%s, %.1f train tok/s): best val loss %s at %s", seconds,
             "resumed" if resume else "from scratch", n_tokens * cfg["epochs"] / seconds if seconds else float("nan"),
             report["best_val_loss"], report["best_checkpoint"])
    return report
