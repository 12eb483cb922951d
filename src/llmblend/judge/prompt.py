"""The project's judge prompt (versioned: a change to the text must bump PROMPT_VERSION, which is
part of every cache key and recorded with every label)."""

from __future__ import annotations

PROMPT_VERSION = "pairwise-v1"

SYSTEM = "You are a careful, impartial judge of answers to instructions."

TEMPLATE = """Compare two candidate answers to the instruction below. The reference answer shows what a good answer contains.

Instruction:
{instruction}

Input:
{input}

Reference answer:
{reference}

Candidate A:
{a}

Candidate B:
{b}

Which candidate answers the instruction better? Reply with exactly one of these options and nothing else:
1. A is better
2. B is better
3. Same good (both answer the instruction well)
4. Same bad (both fail to answer the instruction)
Your choice:"""


# Without a reference answer: for judging an answer against the reference itself (AlpacaEval's setting,
# where GPT-4 compared each model with text-davinci-003 and saw no third answer)
NO_REFERENCE_VERSION = "pairwise-noref-v1"
NO_REFERENCE_TEMPLATE = TEMPLATE.replace(" The reference answer shows what a good answer contains.", "").replace(
    "Reference answer:\n{reference}\n\n", "")


def build_messages(example: dict, text_a: str, text_b: str, with_reference: bool = True) -> list[dict]:
    template = TEMPLATE if with_reference else NO_REFERENCE_TEMPLATE
    user = template.format(instruction=example.get("instruction", ""), input=example.get("input", "") or "(none)",
                           reference=example.get("output", ""), a=text_a, b=text_b)
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
