"""Prompts: how one split record becomes the text a generator sees.

- `chat`: the model's own chat template (tokenizer.apply_chat_template), one user turn, plus an
  optional system turn; the paper gives every LLM its own template the same way.
- `template`: a format string with `{prompt}` (for models whose tokenizer has no chat template,
  e.g. the Alpaca "### Instruction:/### Response:" layout of the paper's 2023 models).
- `fewshot`: for base models (Gemma-3-270M): a few fixed worked examples, then the question;
  generation stops at the next example header (stop strings).
- `raw`: the user text alone (the paper feeds Flan-T5 the raw prompt).

The user text is `instruction + "\\n" + input` when both exist (as in the reference code).
"""

from __future__ import annotations

# Fixed, hand-written shots. They are deliberately not drawn from any split (no leakage) and
# cover the answer shapes the demo asks for: a number, a short fact, a list, a rewrite.
FEWSHOT_EXAMPLES = [
    ("Mia has 4 boxes with 5 pens in each box. How many pens does she have?", "Mia has 4 * 5 = 20 pens."),
    ("What is the largest ocean on Earth?", "The largest ocean on Earth is the Pacific Ocean."),
    ("List 3 musical instruments, separated by commas.", "piano, violin, drum"),
    ("Rewrite the following sentence in the past tense.\nThe cat sleeps on the sofa.", "The cat slept on the sofa."),
]
FEWSHOT_HEADER = "Below are instructions, each followed by a short, correct response.\n\n"
FEWSHOT_STOP = ["\nInstruction:", "\n\n"]


def user_text(rec: dict) -> str:
    instruction, inp = rec.get("instruction", ""), rec.get("input", "")
    if instruction and inp:
        return instruction + "\n" + inp
    return instruction or inp


def fewshot_prompt(text: str) -> str:
    shots = "".join(f"Instruction: {q}\nResponse: {a}\n\n" for q, a in FEWSHOT_EXAMPLES)
    return f"{FEWSHOT_HEADER}{shots}Instruction: {text}\nResponse:"


def render(style: str, text: str, tokenizer=None, system: str | None = None, template: str | None = None) -> str:
    """The prompt string for one user text (the tokenizer is needed for `chat` only)."""
    if style == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            from llmblend.errors import ConfigError

            raise ConfigError("prompt: chat needs a tokenizer with a chat template; "
                              "use prompt: fewshot or template for a base model")
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if style == "fewshot":
        return fewshot_prompt(text)
    if style == "template":
        return template.replace("{prompt}", text)
    if style == "raw":
        return text
    raise ValueError(f"unknown prompt style {style!r}")


def default_stops(style: str) -> list[str]:
    return list(FEWSHOT_STOP) if style == "fewshot" else []


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Cut `text` at the first stop string; return (text, whether a stop string was found)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    if cut >= 0:
        return text[:cut], True
    return text, False
