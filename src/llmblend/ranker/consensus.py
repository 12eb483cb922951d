"""Consensus (MBR) ranking and the score sum of two rankings.

`consensus_scores`: minimum-Bayes-risk selection over a prompt's own answers, with the cosine
similarity of sentence embeddings as the utility: each answer scores its mean similarity to the
other answers, so the pick is the answer the others agree with most (Suzgun et al. 2022, "Follow
the wisdom of the crowd"; Jain et al. 2023, self-consistency for open-ended generation). It reads
no label and trains nothing, so it carries over to LLMs no ranker saw.

`combined_scores`: a weighted sum of several methods' scores, each z-scored within its prompt, so
that no method's scale (MaxLogits sums logits over N-1 opponents, cosine similarities lie in [-1, 1])
decides the weights.
"""

from __future__ import annotations

import numpy as np

from llmblend.errors import LLMBlendError


def consensus_scores(encoder_dir, candidates: list[list[str]], max_len: int = 256, batch_size: int = 32,
                     device: str = "cpu"):
    """Each candidate's mean cosine similarity to the other candidates of its example (`candidates`:
    one list of texts per example; the first `max_len` tokens of each, embedded by the sentence encoder
    in `encoder_dir`: its own pooling, or mean pooling for a plain encoder). A lone candidate scores 0."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(encoder_dir), device=device)
    model.max_seq_length = max_len
    texts = [t if isinstance(t, str) else "" for cands in candidates for t in cands]
    emb = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                       show_progress_bar=True)
    return mean_similarity(emb, [len(cands) for cands in candidates])


def mean_similarity(emb, sizes: list[int]) -> list[list[float]]:
    """Each row's mean cosine similarity to the other rows of its example (`emb`: unit-norm embeddings of
    every candidate, the examples one after the other, `sizes[e]` rows for example e)."""
    out, start = [], 0
    for n in sizes:
        e = np.asarray(emb[start: start + n], dtype=np.float64)
        start += n
        sim = e @ e.T
        out.append(((sim.sum(1) - np.diag(sim)) / (n - 1)).tolist() if n > 1 else [0.0] * n)
    return out


def zscore(scores) -> np.ndarray:
    """Scores of one example centred and scaled to unit standard deviation (all equal: all 0)."""
    s = np.asarray(scores, dtype=np.float64)
    sd = s.std()
    return (s - s.mean()) / sd if sd > 0 else np.zeros_like(s)


def combined_scores(parts: list[list[list[float]]], weights: list[float]) -> list[list[float]]:
    """Per example, sum of weight x z-scored scores over the parts (each a list of per-example scores,
    the examples in the same order and with the same number of candidates)."""
    out = []
    for e, per_part in enumerate(zip(*parts)):
        sizes = {len(s) for s in per_part}
        if len(sizes) != 1:
            raise LLMBlendError(f"example {e}: the combined rankings score different numbers of candidates {sorted(sizes)}")
        out.append(sum(w * zscore(s) for w, s in zip(weights, per_part)).tolist())
    return out


def read_part(path, examples) -> tuple[list[list[float]], list[int]]:
    """The scores and forward passes of one method's rankings file, in the order of `examples`: every
    example needs its record, with one score per candidate (else InputError naming file, line, field)."""
    from llmblend.errors import InputError
    from llmblend.io import iter_jsonl

    by_id: dict[str, tuple[int, dict]] = {}
    for line, rec in iter_jsonl(path, {"id": str, "scores": list, "n_forward": int}):
        if rec["id"] in by_id:
            raise InputError(path, line, "id", f"{rec['id']!r} repeats line {by_id[rec['id']][0]}")
        by_id[rec["id"]] = (line, rec)
    scores, passes = [], []
    for ex in examples:
        if ex.id not in by_id:
            raise InputError(path, problem=f"no ranking of example {ex.id!r}")
        line, rec = by_id[ex.id]
        if len(rec["scores"]) != len(ex.texts):
            raise InputError(path, line, "scores", f"{len(rec['scores'])} scores for the {len(ex.texts)} "
                                                   f"candidates of example {ex.id!r}")
        scores.append([float(s) for s in rec["scores"]])
        passes.append(rec["n_forward"])
    return scores, passes
