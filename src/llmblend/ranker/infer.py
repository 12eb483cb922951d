"""Inference: PairRanker comparison matrices (both orders in one batched pass), the aggregations
MaxLogits / MaxWins / bubble, and the single-candidate and dual-encoder scorers.

Speed comes from tokenising every source and candidate once, building all ordered pairs of all
examples, sorting them by length and running them in batches under a padded-token budget (dynamic
padding), so short pairs never pay for long ones and both orders share batches.

`autocast="bfloat16"` runs the forward passes under torch.autocast (matrix products in bf16, the
rest in fp32): faster where the CPU has bf16 instructions (AVX512_BF16, AMX) or on a GPU, at the
price of logits that move by ~1e-2 (docs/ranker.md has the measured agreement). None = fp32;
"auto" = bf16 where the device has it natively (llmblend.models.precision).
"""

from __future__ import annotations

import numpy as np
import torch

# the matrix-only helpers live in a numpy-only module (the evaluate stage reads them without torch)
from llmblend.ranker.aggregate import (MATRIX_DTYPE, max_logits, max_wins, ranks_from_scores,  # noqa: F401
                                       read_matrices, write_matrices)
from llmblend.models import precision
from llmblend.ranker.model import PairEncoder, collate, token_batches
from llmblend.runlog import progress


AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16}


def _run_batches(seqs, positions, model_fn, pad_id, max_tokens, max_batch, device, desc, unit, autocast=None):
    """Run model_fn over all sequences in length-bucketed batches; returns a list of per-item outputs."""
    autocast = precision.resolve(autocast, "ranker.infer.autocast")
    if autocast is not None and autocast not in AUTOCAST_DTYPES:
        raise ValueError(f"autocast={autocast!r}: expected None or one of {sorted(AUTOCAST_DTYPES)}")
    out: list = [None] * len(seqs)
    batches = token_batches([len(s) for s in seqs], max_tokens, max_batch)
    bar = progress(total=len(seqs), desc=desc, unit=unit, disable=len(seqs) == 0)
    amp = torch.autocast(torch.device(device).type, dtype=AUTOCAST_DTYPES.get(autocast), enabled=autocast is not None)
    with torch.inference_mode(), amp:
        for b in batches:
            ids, mask, pos = collate([seqs[i] for i in b], [positions[i] for i in b] if positions else None,
                                     pad_id, device)
            res = model_fn(ids, mask, pos)
            for k, i in enumerate(b):
                out[i] = res[k]
            bar.update(len(b))
    bar.close()
    return out


def _encode_examples(enc: PairEncoder, sources, candidates, share=2):
    srcs = [enc.source(s) for s in sources]
    cands = [enc.candidates(c, len(src), share) for src, c in zip(srcs, candidates)]
    return srcs, cands


def pair_logits(model, tokenizer, sources, candidates, pairs, max_tokens=16384, max_batch=64, device="cpu",
                desc="compare", autocast=None):
    """Logits of the requested ordered pairs: pairs[e] = [(i, j), ...] for example e.
    Returns one list of logits per example (logit > 0: candidate i beats j). Two pairs of one example
    with the same two texts in the same order are one forward pass (generators repeat answers)."""
    model.eval()
    enc = PairEncoder(tokenizer, model.config)
    srcs, cands = _encode_examples(enc, sources, candidates)
    seqs, poss, where = [], [], []  # where: (example, pair k, index of its sequence in seqs)
    for e, plist in enumerate(pairs):
        seen: dict[tuple[str, str], int] = {}
        for k, (i, j) in enumerate(plist):
            texts = (candidates[e][i], candidates[e][j])
            if texts not in seen:
                seen[texts] = len(seqs)
                s, p = enc.pair(srcs[e], cands[e][i], cands[e][j])
                seqs.append(s)
                poss.append(p)
            where.append((e, k, seen[texts]))

    def fn(ids, mask, pos):
        s1, s2 = model(ids, mask, pos)
        return (s1 - s2).float().cpu().numpy()

    flat = _run_batches(seqs, poss, fn, tokenizer.pad_token_id, max_tokens, max_batch, device, desc, "pair",
                        autocast)
    out = [[0.0] * len(p) for p in pairs]
    for e, k, n in where:
        out[e][k] = float(flat[n])
    return out


def full_matrices(model, tokenizer, sources, candidates, **kw) -> list[np.ndarray]:
    """M[i, j] = logit(candidate i first, candidate j second) for all i != j; N(N-1) forward passes."""
    pairs = [[(i, j) for i in range(len(c)) for j in range(len(c)) if i != j] for c in candidates]
    logits = pair_logits(model, tokenizer, sources, candidates, pairs, **kw)
    mats = []
    for c, plist, vals in zip(candidates, pairs, logits):
        m = np.zeros((len(c), len(c)), dtype=np.float64)
        for (i, j), v in zip(plist, vals):
            m[i, j] = v
        mats.append(m)
    return mats


def bubble(model, tokenizer, sources, candidates, seed: int, both_orders=True, **kw):
    """One bubble pass per example over a seeded random permutation (the reference's `_bubble_predict`):
    each adjacent comparison runs in both orders (logits summed) and the winner moves right, so the last
    position holds the pick. Returns (scores by final position, forward passes per example).
    The comparisons of a pass depend on earlier ones, so the pass runs step by step, batched across
    examples."""
    def logits(active, pairs, desc):
        return pair_logits(model, tokenizer, [sources[e] for e in active], [candidates[e] for e in active],
                           pairs, desc=desc, **kw)
    return bubble_pass([len(c) for c in candidates], seed, logits, both_orders)


def bubble_on_matrices(matrices, seed: int, both_orders=True):
    """`bubble` played on each example's full comparison matrix (M[i, j] = logit(i first, j second)):
    the same seeded permutations and comparisons, each logit read from M instead of run."""
    def logits(active, pairs, desc):
        return [[float(matrices[e][i, j]) for i, j in plist] for e, plist in zip(active, pairs)]
    return bubble_pass([len(m) for m in matrices], seed, logits, both_orders)


def bubble_pass(sizes, seed: int, logits, both_orders=True):
    """The bubble pass over examples of `sizes` candidates; `logits(active, pairs, desc)` gives the
    logits of the ordered pairs of the examples `active`, one list per example."""
    rng = np.random.default_rng(seed)
    perms = [list(rng.permutation(n)) for n in sizes]
    n_forward = [0] * len(sizes)
    steps = max(sizes, default=1) - 1
    for step in range(steps):
        active = [e for e, n in enumerate(sizes) if step < n - 1]
        pairs = []
        for e in active:
            a, b = perms[e][step], perms[e][step + 1]
            pairs.append([(a, b), (b, a)] if both_orders else [(a, b)])
        for e, vals in zip(active, logits(active, pairs, f"bubble step {step + 1}/{steps}")):
            margin = vals[0] - vals[1] if both_orders else vals[0]
            n_forward[e] += len(vals)
            if margin > 0:  # the left one wins and moves on to the right
                perms[e][step], perms[e][step + 1] = perms[e][step + 1], perms[e][step]
    scores = []
    for e, n in enumerate(sizes):
        s = [0.0] * n
        for pos, cand in enumerate(perms[e]):
            s[cand] = float(pos)
        scores.append(s)
    return scores, n_forward


def single_scores(model, tokenizer, sources, candidates, max_tokens=16384, max_batch=64, device="cpu",
                  autocast=None):
    """SummaReranker: one forward per candidate."""
    model.eval()
    enc = PairEncoder(tokenizer, model.config)
    srcs, cands = _encode_examples(enc, sources, candidates, share=1)
    seqs, poss, where = [], [], []
    for e in range(len(sources)):
        for i, c in enumerate(cands[e]):
            s, p = enc.single(srcs[e], c)
            seqs.append(s)
            poss.append(p)
            where.append((e, i))
    flat = _run_batches(seqs, poss, lambda ids, mask, pos: model(ids, mask, pos).float().cpu().numpy(),
                        tokenizer.pad_token_id, max_tokens, max_batch, device, "score", "cand", autocast)
    out = [[0.0] * len(c) for c in candidates]
    for (e, i), v in zip(where, flat):
        out[e][i] = float(v)
    return out


def dual_scores(model, tokenizer, sources, candidates, max_tokens=16384, max_batch=64, device="cpu",
                autocast=None):
    """SimCLS: cosine of separately encoded source and candidate; N + 1 encoder passes per example."""
    from llmblend.ranker.model import SimCLS

    model.eval()
    enc = PairEncoder(tokenizer, model.config)
    src_ids = [enc.tok(enc._clean(s), truncation=True, max_length=model.config.source_max_len)["input_ids"]
               for s in sources]
    cand_ids = [enc.tok([enc._clean(t) for t in c], truncation=True,
                        max_length=model.config.candidate_max_len)["input_ids"] for c in candidates]
    seqs = src_ids + [c for cs in cand_ids for c in cs]
    vecs = _run_batches(seqs, None, lambda ids, mask, pos: model(ids, mask).float().cpu(),
                        tokenizer.pad_token_id, max_tokens, max_batch, device, "encode", "text", autocast)
    out, k = [], len(sources)
    for e, cs in enumerate(cand_ids):
        src = vecs[e].unsqueeze(0)
        cv = torch.stack(vecs[k: k + len(cs)])
        k += len(cs)
        out.append([float(x) for x in SimCLS.similarity(src, cv)])
    return out
