"""Loading a fuser model of either family and turning (prompt, target) pairs into training tensors."""

from __future__ import annotations

from pathlib import Path

from llmblend.errors import LLMBlendError
from llmblend.fuser.prompt import chat_prompt

FUSER_META = "llmblend_fuser.json"


def family_of(config) -> str:
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal_lm"


def load_model(path, dtype=None):
    """(model, tokenizer, family) from a local model directory."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    path = Path(path)
    config = AutoConfig.from_pretrained(path)
    family = family_of(config)
    cls = AutoModelForSeq2SeqLM if family == "seq2seq" else AutoModelForCausalLM
    model = cls.from_pretrained(path, dtype=dtype or torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise LLMBlendError(f"{path}: the tokenizer has no end-of-sequence token; a fuser needs one to stop")
    return model, tokenizer, family


def encode_example(tokenizer, family: str, prompt: str, target: str, max_target_tokens: int) -> dict:
    """Token ids of one example; labels are -100 wherever the loss must not look (the prompt)."""
    if family == "seq2seq":
        # the paper tokenises the source without special tokens; the target ends in </s>
        source = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        labels = tokenizer(target, add_special_tokens=False)["input_ids"][:max_target_tokens]
        return {"input_ids": source, "attention_mask": [1] * len(source), "labels": labels + [tokenizer.eos_token_id]}
    prompt_ids = tokenizer(chat_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    answer = tokenizer(target, add_special_tokens=False)["input_ids"][:max_target_tokens] + [tokenizer.eos_token_id]
    ids = prompt_ids + answer
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] * len(prompt_ids) + answer}


def trainable_blocks(model):
    """The stack of transformer blocks that `train_layers` counts from the top of."""
    for attr in ("model.layers", "decoder.block", "transformer.h", "model.decoder.layers"):
        node = model
        for part in attr.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if node is not None:
            return node
    raise LLMBlendError(f"fuser.train.train_layers: cannot find the block stack of {type(model).__name__}; set it to null")


def freeze_below(model, train_layers: int | None) -> tuple[int, int]:
    """Train only the top `train_layers` blocks (and the final norm), to fit a CPU budget.
    Returns (trainable parameters, all parameters)."""
    if train_layers is not None:
        blocks = trainable_blocks(model)
        for p in model.parameters():
            p.requires_grad = False
        for block in list(blocks)[-train_layers:]:
            for p in block.parameters():
                p.requires_grad = True
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") and ".layers." not in name and ".block." not in name:
                p.requires_grad = True  # the final norm sits on top of the trained blocks
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return n_train, sum(p.numel() for p in model.parameters())
