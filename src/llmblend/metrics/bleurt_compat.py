"""Import the bleurt-pytorch port (0.0.1, its only release) under transformers 5.

The port was written for transformers 4.x and uses four things transformers 5 removed. Only where a
name is missing, this module puts back a small equivalent before (or right after) the import; with
a transformers that still has them, nothing is touched. None of it changes what the model computes
at inference:

1. `transformers.pytorch_utils.find_pruneable_heads_and_indices`: imported at module level by
   `modeling_bleurt` (only `prune_heads` calls it; BLEURT never prunes heads).
2. `transformers.models.bert.tokenization_bert_fast`: the module the port's fast tokenizer
   subclasses from; in transformers 5 `BertTokenizer` is the tokenizers-backed class and
   `BertTokenizerFast` is an alias of it in `tokenization_bert`.
3. `PreTrainedModel.get_extended_attention_mask`: the padding mask turned into an additive bias
   (0 where a token is attended, the dtype's minimum where it is padding).
4. `PreTrainedModel.get_head_mask`: `None` (no head masking) per layer, or a given mask broadcast
   to (layers, batch, heads, query, key).

Written for this project (not copied): each helper is a few lines of plain tensor arithmetic.
"""

from __future__ import annotations

import sys
import types

import torch


def find_pruneable_heads_and_indices(heads, n_heads: int, head_size: int, already_pruned: set):
    """The heads still to prune (minus those pruned before) and the flat indices of the weight rows
    that remain after removing them (for `prune_linear_layer`)."""
    heads = set(heads) - already_pruned
    keep = torch.ones(n_heads, head_size)
    for head in heads:
        # a head's position among the heads that are still there
        head -= sum(1 for h in already_pruned if h < head)
        keep[head] = 0
    index = torch.arange(keep.numel())[keep.view(-1).eq(1)].long()
    return heads, index


def extended_attention_mask(self, attention_mask: torch.Tensor, input_shape=None, dtype=None) -> torch.Tensor:
    """A (batch, seq) or (batch, seq, seq) 0/1 mask -> an additive bias broadcastable over heads."""
    dtype = dtype or self.dtype
    if attention_mask.dim() == 3:
        mask = attention_mask[:, None, :, :]
    elif attention_mask.dim() == 2:
        mask = attention_mask[:, None, None, :]
    else:
        raise ValueError(f"attention_mask must have 2 or 3 dimensions, got shape {tuple(attention_mask.shape)}")
    mask = mask.to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


def head_mask(self, mask, num_hidden_layers: int):
    """None -> one None per layer; a (heads,) or (layers, heads) 0/1 mask -> (layers, 1, heads, 1, 1)."""
    if mask is None:
        return [None] * num_hidden_layers
    if mask.dim() == 1:
        mask = mask[None, None, :, None, None].expand(num_hidden_layers, -1, -1, -1, -1)
    elif mask.dim() == 2:
        mask = mask[:, None, :, None, None]
    return mask.to(self.dtype)


def _add_missing_names() -> None:
    import transformers.pytorch_utils as pytorch_utils

    if not hasattr(pytorch_utils, "find_pruneable_heads_and_indices"):
        pytorch_utils.find_pruneable_heads_and_indices = find_pruneable_heads_and_indices
    name = "transformers.models.bert.tokenization_bert_fast"
    try:
        __import__(name)
    except ModuleNotFoundError:
        from transformers.models.bert import tokenization_bert

        alias = types.ModuleType(name, "alias made by llmblend.metrics.bleurt_compat (transformers 5)")
        alias.BertTokenizerFast = tokenization_bert.BertTokenizerFast
        sys.modules[name] = alias


def import_bleurt():
    """(BleurtForSequenceClassification, BleurtTokenizer) of the port, usable with this transformers."""
    _add_missing_names()
    from bleurt_pytorch import BleurtForSequenceClassification, BleurtTokenizer
    from bleurt_pytorch.bleurt.modeling_bleurt import BleurtPreTrainedModel

    if not hasattr(BleurtPreTrainedModel, "get_extended_attention_mask"):
        BleurtPreTrainedModel.get_extended_attention_mask = extended_attention_mask
    if not hasattr(BleurtPreTrainedModel, "get_head_mask"):
        BleurtPreTrainedModel.get_head_mask = head_mask
    return BleurtForSequenceClassification, BleurtTokenizer
