"""Rankers that are not trained here: Random, Longest, causal-LM scoring (MLM-Scoring's stand-in) and oracles.

MLM-Scoring (the paper's unsupervised baseline) is the pseudo-log-likelihood of the candidate under
a masked LM. The only encoder shipped offline (all-MiniLM-L6-v2) has no MLM head, so the default
profile uses `clm_scoring` instead: the mean token log-probability of the candidate given the
instruction under a causal LM (SmolLM2-135M-Instruct), named for what it is. Like MLM-Scoring it
sees no reference and no labels.
"""

from __future__ import annotations

import numpy as np

from llmblend.runlog import progress


def random_scores(examples, seed: int):
    rng = np.random.default_rng(seed)
    return [rng.permutation(len(ex.texts)).astype(float).tolist() for ex in examples]


def word_count(text) -> int:
    """Length in words: whitespace split; an empty or missing text has 0 words."""
    return len(text.split()) if isinstance(text, str) else 0


def longest_scores(examples):
    """The "pick the longest answer" baseline: each candidate's score is its length in words, so the
    longest is the pick (GPT-4 judges favour long answers; a ranker that only learned length shows here)."""
    return [[float(word_count(t)) for t in ex.texts] for ex in examples]


def clm_scores(model_dir, examples, max_len: int = 256, batch_size: int = 8, device="cpu", autocast=None):
    """Mean log-probability of each candidate's tokens given `source + "\\n\\n"` (one forward per candidate).
    `autocast` (ranker.infer.autocast, as the PairRanker's passes): the forward under torch.autocast in that
    type; the log-softmax stays in float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmblend.metrics.scorers import causal_logits_from
    from llmblend.models import precision
    from llmblend.ranker.infer import AUTOCAST_DTYPES

    autocast = precision.resolve(autocast, "ranker.infer.autocast")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    items, copies = [], []  # an answer given twice to one prompt is scored once: copies[k] = (e, i, first i)
    for e, ex in enumerate(examples):
        prompt = tok(ex.source + "\n\n", add_special_tokens=False)["input_ids"][-max_len:]
        first_of: dict[str, int] = {}
        for i, text in enumerate(ex.texts):
            if text in first_of:
                copies.append((e, i, first_of[text]))
                continue
            first_of[text] = i
            cand = tok(text, add_special_tokens=False)["input_ids"][:max_len]
            items.append((e, i, prompt, cand))
    out = [[0.0] * len(ex.texts) for ex in examples]
    order = sorted(range(len(items)), key=lambda k: -(len(items[k][2]) + len(items[k][3])))
    bar = progress(total=len(items), desc="clm scoring", unit="cand")
    amp = torch.autocast(torch.device(device).type, dtype=AUTOCAST_DTYPES.get(autocast), enabled=autocast is not None)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = [items[k] for k in order[start: start + batch_size]]
            width = max(len(p) + len(c) for _, _, p, c in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            tgt = torch.zeros_like(ids, dtype=torch.bool)
            for r, (_, _, p, c) in enumerate(chunk):
                seq = p + c
                ids[r, : len(seq)] = torch.tensor(seq)
                mask[r, : len(seq)] = 1
                tgt[r, len(p): len(seq)] = True
            # token t is predicted at position t-1: logits from the chunk's shortest prompt's end on
            first = max(min(len(p) for _, _, p, _ in chunk) - 1, 0)
            with amp:
                logits = causal_logits_from(model, ids.to(device), mask.to(device), first)
            logp = torch.log_softmax(logits.float(), dim=-1)
            tok_lp = logp[:, :-1].gather(-1, ids[:, first + 1:].to(device).unsqueeze(-1)).squeeze(-1).cpu()
            is_tgt = tgt[:, first + 1:]
            for r, (e, i, _, c) in enumerate(chunk):
                n = int(is_tgt[r].sum())
                # an empty candidate has no tokens to score: it ranks last
                out[e][i] = float(tok_lp[r][is_tgt[r]].sum() / n) if n else -1e9
            bar.update(len(chunk))
    bar.close()
    for e, i, first in copies:
        out[e][i] = out[e][first]
    return out
