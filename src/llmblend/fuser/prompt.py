"""What the fuser reads: the top-K candidates of a ranking, cut to a token budget, in one prompt.

Two layouts, one per model family:
- seq2seq (the paper's GenFuserDataset layout, for a T5-style tokenizer):
  "Instruction: {i}</s>Input: {x}</s>Candidate 0: <extra_id_0>:{c0}</s>...Summarize candidates into a
  better one for the given instruction:"
- causal_lm: the same parts on separate lines, sent as the user turn of the model's chat template;
  the reference answer is the assistant turn (the loss covers only that turn).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

SEQ2SEQ_TAIL = "Summarize candidates into a better one for the given instruction:"
CAUSAL_TAIL = "Fuse the candidates into one answer to the instruction that is better than each of them. Reply with the answer only."
ELLIPSIS = "..."


@dataclass(frozen=True)
class PromptSpec:
    """How a fuser formats its input; saved beside the weights so that inference formats alike."""

    family: str  # "seq2seq" | "causal_lm"
    top_k: int = 3
    candidate_max_tokens: int = 128  # per candidate; longer ones are cut and end in "..."
    instruction_max_tokens: int = 256  # for the instruction and for the input, each
    max_target_tokens: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


def top_k_indices(ranks: list, k: int) -> list[int]:
    """Candidate indices of the k best ranks (1 = best); ties keep the candidates' order."""
    order = sorted(range(len(ranks)), key=lambda i: (ranks[i], i))
    return order[:k]


def ranks_from_scores(scores: list[float]) -> list[int]:
    """Ranks (1 = best) from scores where higher is better; ties share the better rank."""
    return [1 + sum(1 for t in scores if t > s) for s in scores]


def clip_tokens(text: str, tokenizer, budget: int) -> tuple[str, int, bool]:
    """`text` cut to `budget` tokens of `tokenizer` ("..." marks a cut); returns (text, n_tokens, cut)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= budget:
        return text, len(ids), False
    return tokenizer.decode(ids[:budget], skip_special_tokens=True).rstrip() + ELLIPSIS, len(ids), True


def format_prompt(spec: PromptSpec, instruction: str, input_text: str, candidates: list[str], tokenizer) -> tuple[str, dict]:
    """The fuser's source text for one example and what the budget did to it.

    `candidates` are the texts already in rank order (best first), at most `spec.top_k` of them.
    """
    instruction, _, cut_i = clip_tokens(instruction, tokenizer, spec.instruction_max_tokens)
    input_text, _, cut_x = clip_tokens(input_text or "", tokenizer, spec.instruction_max_tokens)
    clipped, n_tokens, cut = [], [], []
    for c in candidates:
        text, n, was_cut = clip_tokens(c, tokenizer, spec.candidate_max_tokens)
        clipped.append(text)
        n_tokens.append(n)
        cut.append(was_cut)
    if spec.family == "seq2seq":
        eos = tokenizer.eos_token or "</s>"
        parts = [f"Instruction: {instruction}", f"Input: {input_text}"]
        parts += [f"Candidate {i}: <extra_id_{i}>:{c}" for i, c in enumerate(clipped)]
        text = eos.join(parts) + eos + SEQ2SEQ_TAIL
    else:
        lines = [f"Instruction: {instruction}"]
        if input_text:
            lines.append(f"Input: {input_text}")
        lines += [f"Candidate {i + 1}: {c}" for i, c in enumerate(clipped)]
        lines.append(CAUSAL_TAIL)
        text = "\n".join(lines)
    info = {"candidate_tokens": n_tokens, "candidate_cut": cut, "instruction_cut": cut_i or cut_x}
    return text, info


def chat_prompt(tokenizer, prompt: str) -> str:
    """A causal fuser's prompt as the user turn of the chat template, ready for the answer."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return prompt + "\nAnswer: "  # a model without a chat template: a plain completion cue
