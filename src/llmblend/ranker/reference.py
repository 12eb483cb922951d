"""The reference implementation's PairRanker checkpoint layout, both ways.

The released `llm-blender/pair-ranker` (and any checkpoint of the reference's `train_ranker.py`) is a
`pytorch_model.bin` with `pretrained_model.*` (the backbone, special tokens already added) and
`head_layer.*` (Dropout, Linear(2H, H), Tanh, Dropout, Linear(H, n_tasks)), plus the reference's
`config.json` (source_maxlength, candidate_maxlength, drop_out, n_tasks, ...). Its logit is the mean
over tasks of score_1 - score_2, which equals one output whose last-layer weights are the task rows'
mean, so a multi-task head imports exactly into this project's single-output head.

An imported ranker reads its inputs as the reference trained it: source = instruction + input
(source_join concat) and each candidate cut at a flat candidate_maxlength (length_sharing none, the
paper-era collator of 4594f09 that trained the released pair-ranker). Sharing the source's unused
budget came to the reference on 2023-10-31, per batch, which this project does not offer.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from llmblend.errors import LLMBlendError


def _load_state(ckpt: Path) -> dict:
    if (ckpt / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(ckpt / "model.safetensors"))
    if (ckpt / "pytorch_model.bin").is_file():
        return torch.load(ckpt / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise LLMBlendError(f"{ckpt}: no pytorch_model.bin or model.safetensors (not a reference ranker checkpoint)")


def import_reference_pairranker(ckpt_dir, backbone_dir, backbone_spec: str, out_dir) -> dict:
    """Convert a reference PairRanker checkpoint into this project's format (reload with load_ranker)."""
    from llmblend.ranker.model import build_ranker

    ckpt = Path(ckpt_dir)
    cfg_file = ckpt / "config.json"
    if not cfg_file.is_file():
        raise LLMBlendError(f"{ckpt}: no config.json (not a reference ranker checkpoint)")
    ref = json.loads(cfg_file.read_text(encoding="utf-8"))
    kind = ref.get("ranker_type", "pairranker")
    if kind != "pairranker":
        raise LLMBlendError(f"{cfg_file}: field 'ranker_type' is {kind!r}; only pairranker checkpoints are imported")
    model, tokenizer = build_ranker("pairranker", backbone_dir, backbone_spec,
                                    source_max_len=int(ref.get("source_maxlength", 128)),
                                    candidate_max_len=int(ref.get("candidate_maxlength", 128)),
                                    dropout=float(ref.get("drop_out", 0.05)),
                                    loss=ref.get("loss_type", "instructgpt"),
                                    length_sharing="none", source_join="concat")
    state = _load_state(ckpt)
    ours = model.state_dict()
    head_keys = sorted(k for k in ours if k.startswith("head."))
    last_w, last_b = head_keys[-1].rsplit(".", 1)[0] + ".weight", head_keys[-1].rsplit(".", 1)[0] + ".bias"
    mapped = {}
    for k, v in state.items():
        if k.startswith("pretrained_model."):
            name = "backbone." + k[len("pretrained_model."):]
        elif k.startswith("head_layer."):
            name = "head." + k[len("head_layer."):]
            if name in (last_w, last_b):
                v = v.mean(dim=0, keepdim=True) if name == last_w else v.mean().reshape(1)
        else:
            continue
        if name in ours:
            mapped[name] = v
    missing = sorted(set(ours) - set(mapped))
    if missing:
        raise LLMBlendError(f"{ckpt}: checkpoint lacks {len(missing)} weights of the ranker, e.g. {missing[:3]} "
                            f"(is the backbone {backbone_spec!r} the one it was trained on?)")
    for k, v in mapped.items():
        if v.shape != ours[k].shape:
            raise LLMBlendError(f"{ckpt}: weight {k} has shape {tuple(v.shape)}, the backbone gives "
                                f"{tuple(ours[k].shape)} (a different backbone or special tokens?)")
    model.load_state_dict(mapped, strict=True)
    model.eval()
    model.save_pretrained(out_dir, tokenizer)
    return {"checkpoint": str(ckpt), "backbone": backbone_spec, "n_tasks": int(ref.get("n_tasks", 1)),
            "source_max_len": model.config.source_max_len, "candidate_max_len": model.config.candidate_max_len,
            "length_sharing": model.config.length_sharing, "source_join": model.config.source_join}


def export_reference_pairranker(model, backbone_dir, out_dir, model_type: str = "bert") -> Path:
    """This project's PairRanker in the reference's checkpoint layout (for side-by-side benchmarks)."""
    from transformers import AutoModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        if k.startswith("backbone."):
            state["pretrained_model." + k[len("backbone."):]] = v.clone()
        elif k.startswith("head."):
            state["head_layer." + k[len("head."):]] = v.clone()
    # the reference's BertModel keeps a pooler it never uses; give it the original one
    for k, v in AutoModel.from_pretrained(backbone_dir).state_dict().items():
        if k.startswith("pooler."):
            state["pretrained_model." + k] = v.clone()
    torch.save(state, out / "pytorch_model.bin")
    cfg = {"ranker_type": "pairranker", "model_type": model_type, "model_name": str(backbone_dir),
           "source_maxlength": model.config.source_max_len, "candidate_maxlength": model.config.candidate_max_len,
           "n_tasks": 1, "num_pos": 5, "num_neg": 5, "sub_sampling_mode": "all_pair", "loss_type": "instructgpt",
           "drop_out": model.config.dropout, "inference_mode": "bubble", "fp16": False}
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return out
