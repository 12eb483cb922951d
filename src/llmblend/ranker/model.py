"""The trained rankers: PairRanker (cross-encoder over a pair), SummaReranker (cross-encoder over one
candidate) and SimCLS (dual encoder), all on one encoder backbone, plus their tokenisation.

PairRanker input, as in the reference collator (each segment tokenised on its own, so it keeps its
own [CLS] ... [SEP]; padding only at the end):

    [CLS] <|source|> x [SEP] [CLS] <|candidate1|> y_i [SEP] [CLS] <|candidate2|> y_j [SEP]

score_k = MLP([h_<|source|>; h_<|candidatek|>]) with one MLP shared by both candidates, and the
pair's logit = score_1 - score_2 (> 0: candidate 1 is better).

A saved ranker is a directory: config.json (`ranker_type`, the backbone's config, lengths, token
ids), model.safetensors and the tokenizer; `load_ranker(dir)` rebuilds it in one call.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

SOURCE, CAND1, CAND2, CAND = "<|source|>", "<|candidate1|>", "<|candidate2|>", "<|candidate|>"
RANKER_TYPES = ("pairranker", "summareranker", "simcls")
# ranker.length_sharing and ranker.source_join (schemas/ranker.schema.yaml, docs/paper-mapping.md)
LENGTH_SHARING = ("per_example", "none")
SOURCE_JOINS = ("newline", "concat")
# ranker.pooling: what the PairRanker's head reads for the source and each candidate
POOLINGS = ("token", "mean")
# the settings a ranker is saved with beyond the paper's (RankerConfig's fields) and their values
SAVED_SETTINGS = {"length_sharing": LENGTH_SHARING, "source_join": SOURCE_JOINS, "pooling": POOLINGS}
# BERT-like backbones carry a pooler the rankers never use; leaving it out keeps unused weights out of
# the gradient (unused parameters break multi-GPU DDP)
POOLER_TYPES = {"bert", "roberta", "xlm-roberta"}


@dataclass
class RankerConfig:
    ranker_type: str = "pairranker"
    backbone: dict = field(default_factory=dict)  # the backbone's HF config (to_dict())
    backbone_spec: str = ""  # where the pretrained backbone came from (provenance only)
    source_max_len: int = 128
    candidate_max_len: int = 128
    dropout: float = 0.05
    loss: str = "instructgpt"
    token_ids: dict = field(default_factory=dict)  # source/cand1/cand2/cand -> id, filled by add_special_tokens
    # how the ranker was trained to read its inputs; a config.json without them predates the settings,
    # whose values then were these
    length_sharing: str = "per_example"
    source_join: str = "newline"
    pooling: str = "token"

    def __post_init__(self):
        for name, values in SAVED_SETTINGS.items():
            if getattr(self, name) not in values:
                raise ValueError(f"field {name!r} is {getattr(self, name)!r}, expected one of {values}")

    def to_json(self) -> dict:
        """The saved form: the input settings only where they differ from the values a config.json
        without them stands for, so a ranker trained with those keeps the very file it had."""
        cfg = asdict(self)
        for f in SAVED_SETTINGS:
            if cfg[f] == RankerConfig.__dataclass_fields__[f].default:
                del cfg[f]
        return cfg


def add_special_tokens(tokenizer) -> dict:
    """Add the four prefix tokens (the reference adds them as plain added tokens) and return their ids."""
    tokenizer.add_tokens([SOURCE, CAND1, CAND2, CAND])
    return {name: tokenizer.convert_tokens_to_ids(tok)
            for name, tok in (("source", SOURCE), ("cand1", CAND1), ("cand2", CAND2), ("cand", CAND))}


def make_head(hidden: int, dropout: float, n_in: int = 2) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(n_in * hidden, hidden), nn.Tanh(), nn.Dropout(dropout),
                         nn.Linear(hidden, 1))


class Ranker(nn.Module):
    """Common part: a backbone encoder, a config, save/load."""

    def __init__(self, config: RankerConfig, backbone: nn.Module | None = None):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        self.config = config
        if backbone is None:
            bcfg = dict(config.backbone)
            kw = {"add_pooling_layer": False} if bcfg.get("model_type") in POOLER_TYPES else {}
            backbone = AutoModel.from_config(AutoConfig.for_model(**bcfg), **kw)
        self.backbone = backbone
        self.hidden = self.backbone.config.hidden_size

    def encode(self, input_ids, attention_mask):
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def save_pretrained(self, out_dir, tokenizer=None) -> None:
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        cfg = self.config.to_json()
        (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(out)


class PairRanker(Ranker):
    def __init__(self, config, backbone=None):
        super().__init__(config, backbone)
        self.head = make_head(self.hidden, config.dropout)

    def forward(self, input_ids, attention_mask, positions):
        """positions: [B, 3] token positions of <|source|>, <|candidate1|>, <|candidate2|>.
        Returns (score_1, score_2), each [B]. The head reads the three prefix tokens' states (pooling
        `token`, the paper's) or the mean state of each part's tokens (`mean`)."""
        h = self.encode(input_ids, attention_mask)
        if self.config.pooling == "mean":
            h_src, h1, h2 = span_means(h, attention_mask, positions)
        else:
            rows = torch.arange(h.shape[0], device=h.device)
            h_src, h1, h2 = (h[rows, positions[:, k]] for k in range(3))
        s1 = self.head(torch.cat([h_src, h1], dim=-1)).squeeze(-1)
        s2 = self.head(torch.cat([h_src, h2], dim=-1)).squeeze(-1)
        return s1, s2


def span_means(h, attention_mask, positions):
    """The mean hidden state of each of the parts (source, candidate 1, candidate 2) of pair inputs.
    A part starts as many tokens before its prefix token as the source's prefix token sits after the
    sequence's start (0 or 1: the tokenizer's [CLS]) and ends where the next part starts; the last
    part ends at the attention mask's end, so padding is never averaged in."""
    offset = positions[:, :1]
    starts = positions - offset  # [B, 3]
    ends = torch.cat([starts[:, 1:], attention_mask.sum(dim=1, keepdim=True)], dim=1)
    idx = torch.arange(h.shape[1], device=h.device)[None, None, :]  # [1, 1, T]
    parts = ((idx >= starts[:, :, None]) & (idx < ends[:, :, None])).to(h.dtype)  # [B, 3, T]
    sums = torch.bmm(parts, h)  # [B, 3, H]
    means = sums / parts.sum(dim=2, keepdim=True).clamp(min=1)
    return means[:, 0], means[:, 1], means[:, 2]


class SummaReranker(Ranker):
    """One candidate at a time: [CLS] <|source|> x [SEP] [CLS] <|candidate|> y [SEP] -> a score."""

    def __init__(self, config, backbone=None):
        super().__init__(config, backbone)
        self.head = make_head(self.hidden, config.dropout)

    def forward(self, input_ids, attention_mask, positions):
        h = self.encode(input_ids, attention_mask)
        rows = torch.arange(h.shape[0], device=h.device)
        return self.head(torch.cat([h[rows, positions[:, 0]], h[rows, positions[:, 1]]], dim=-1)).squeeze(-1)


class SimCLS(Ranker):
    """Dual encoder: cosine between the [CLS] states of the source and of the candidate, encoded apart."""

    def forward(self, input_ids, attention_mask, positions=None):
        return self.encode(input_ids, attention_mask)[:, 0]

    @staticmethod
    def similarity(src_vec, cand_vec):
        return F.cosine_similarity(src_vec, cand_vec, dim=-1)


CLASSES = {"pairranker": PairRanker, "summareranker": SummaReranker, "simcls": SimCLS}


# the attention-weights dropout of the encoder families a ranker trains on, by config attribute
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")


def attention_dropout_key(config: dict) -> str | None:
    """The key of a backbone config (config.json's fields) that holds its attention dropout."""
    return next((k for k in ATTENTION_DROPOUT_KEYS if k in config), None)


def build_ranker(ranker_type: str, backbone_dir, backbone_spec: str, attention_dropout: float | None = None,
                 **cfg_kw):
    """A new ranker on a pretrained backbone, with the prefix tokens added to its tokenizer.
    attention_dropout: replaces the backbone config's dropout on attention weights (None: keep it)."""
    from transformers import AutoModel, AutoTokenizer

    from llmblend.errors import ConfigError

    if ranker_type not in CLASSES:
        raise ValueError(f"unknown ranker type {ranker_type!r} (one of {', '.join(RANKER_TYPES)})")
    tokenizer = AutoTokenizer.from_pretrained(backbone_dir)
    ids = add_special_tokens(tokenizer)
    raw = json.loads((Path(backbone_dir) / "config.json").read_text(encoding="utf-8"))
    kw = {"add_pooling_layer": False} if raw.get("model_type") in POOLER_TYPES else {}
    if attention_dropout is not None:
        key = attention_dropout_key(raw)
        if key is None:
            raise ConfigError(f"config key 'ranker.train.attention_dropout': the backbone in {backbone_dir} "
                              f"(model_type {raw.get('model_type')!r}) has none of {', '.join(ATTENTION_DROPOUT_KEYS)}")
        kw[key] = float(attention_dropout)
    backbone = AutoModel.from_pretrained(backbone_dir, **kw)
    backbone.resize_token_embeddings(len(tokenizer))
    config = RankerConfig(ranker_type=ranker_type, backbone=backbone.config.to_dict(), backbone_spec=backbone_spec,
                          token_ids=ids, **cfg_kw)
    return CLASSES[ranker_type](config, backbone), tokenizer


def load_ranker(path):
    """Reload a saved ranker (any type) and its tokenizer from a directory: one call."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from llmblend.errors import LLMBlendError

    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise LLMBlendError(f"{path}: not a saved ranker (no config.json)")
    raw = json.loads(cfg_file.read_text(encoding="utf-8"))
    if raw.get("ranker_type") not in CLASSES:
        raise LLMBlendError(f"{cfg_file}: field 'ranker_type' is {raw.get('ranker_type')!r}, "
                            f"expected one of {', '.join(RANKER_TYPES)}")
    try:
        config = RankerConfig(**raw)
    except (TypeError, ValueError) as e:
        raise LLMBlendError(f"{cfg_file}: {e}") from None
    model = CLASSES[config.ranker_type](config)
    state = load_file(str(path / "model.safetensors"))
    model.load_state_dict(state, strict=True)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer


# ---------------------------------------------------------------- tokenisation


def source_text(rec: dict, join: str = "newline") -> str:
    """The text the ranker sees as the source (ranker.source_join): newline, the instruction, then
    the input on its own line; concat, instruction + input with nothing between (the reference's)."""
    instr, inp = rec.get("instruction", "") or "", rec.get("input", "") or ""
    if join == "concat":
        return instr + inp
    if join != "newline":
        raise ValueError(f"source_join {join!r}: one of {SOURCE_JOINS}")
    return f"{instr}\n{inp}" if instr and inp else instr or inp


class PairEncoder:
    """Tokenises sources and candidates once and assembles model inputs from the cached ids.

    Lengths (ranker.length_sharing): the source (with its [CLS]/[SEP]) is cut to source_max_len and
    each candidate (with its own) to candidate_max_len; with `per_example` a candidate also gets half
    the budget its source leaves unused. The reference shares that budget per batch (since 2023-10-31);
    here it is per example, so a ranking never depends on the batch it lands in. `none` is the
    paper-era flat cut (4594f09), which the released pair-ranker was trained with.
    """

    def __init__(self, tokenizer, config: RankerConfig):
        self.tok = tokenizer
        self.cfg = config
        self.ids = config.token_ids
        self.sep = tokenizer.sep_token or tokenizer.eos_token

    def _clean(self, text: str) -> str:
        # a literal separator inside a text would fake a segment boundary
        return text.replace(self.sep, " ") if self.sep else text

    def source(self, text: str, prefix: str = SOURCE) -> list[int]:
        return self.tok(prefix + self._clean(text), truncation=True, max_length=self.cfg.source_max_len)["input_ids"]

    def candidates(self, texts: list[str], src_len: int, share: int = 2) -> list[list[int]]:
        budget = self.cfg.candidate_max_len
        if self.cfg.length_sharing == "per_example":
            budget += max(self.cfg.source_max_len - src_len, 0) // share
        return self.tok([CAND + self._clean(t) for t in texts], truncation=True, max_length=budget)["input_ids"]

    def pair(self, src: list[int], c1: list[int], c2: list[int]) -> tuple[list[int], tuple[int, int, int]]:
        """Concatenate with the generic candidate prefix swapped for candidate1 / candidate2."""
        c1 = [self.ids["cand1"] if t == self.ids["cand"] else t for t in c1]
        c2 = [self.ids["cand2"] if t == self.ids["cand"] else t for t in c2]
        return src + c1 + c2, (_pos(src, self.ids["source"]), len(src) + _pos(c1, self.ids["cand1"]),
                               len(src) + len(c1) + _pos(c2, self.ids["cand2"]))

    def single(self, src: list[int], c: list[int]) -> tuple[list[int], tuple[int, int]]:
        return src + c, (_pos(src, self.ids["source"]), len(src) + _pos(c, self.ids["cand"]))


def _pos(ids: list[int], token: int) -> int:
    return ids.index(token)


def collate(seqs: list[list[int]], positions: list[tuple], pad_id: int, device=None):
    """Right-pad a batch to its own longest sequence (dynamic padding)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for k, s in enumerate(seqs):
        ids[k, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[k, : len(s)] = 1
    pos = torch.tensor(positions, dtype=torch.long) if positions and positions[0] is not None else None
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
        pos = pos.to(device) if pos is not None else None
    return ids, mask, pos


def token_batches(lengths: list[int], max_tokens: int, max_batch: int) -> list[list[int]]:
    """Group indices of similar length (sorted, longest first) into batches under a padded-token budget."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches, cur, cur_max = [], [], 0
    for i in order:
        new_max = max(cur_max, lengths[i])
        if cur and (new_max * (len(cur) + 1) > max_tokens or len(cur) >= max_batch):
            batches.append(cur)
            cur, new_max = [], lengths[i]
        cur.append(i)
        cur_max = new_max
    if cur:
        batches.append(cur)
    return batches
