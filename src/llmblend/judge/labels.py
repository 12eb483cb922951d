"""The pairwise label vocabulary (MixInstruct's four labels plus three failure labels).

A label is always relative to the order shown to the judge: in `cmp_results["x,y"]`, "A" is x and
"B" is y. Failure labels (`error`, `unparsable`, `inconsistent`) are their own values and never
count as ties: GPT-Rank and the "beats or ties" helpers skip them.
"""

from __future__ import annotations

import re

A_BETTER, B_BETTER, SAME_GOOD, SAME_BAD = "A is better", "B is better", "Same good", "Same bad"
LABELS = (A_BETTER, B_BETTER, SAME_GOOD, SAME_BAD)
ERROR, UNPARSABLE, INCONSISTENT = "error", "unparsable", "inconsistent"
FAILED = (ERROR, UNPARSABLE, INCONSISTENT)
ALL_LABELS = LABELS + FAILED


def flip(label: str) -> str:
    """The same judgment seen with A and B swapped."""
    return {A_BETTER: B_BETTER, B_BETTER: A_BETTER}.get(label, label)


def pair_key(a: str, b: str) -> str:
    return f"{a},{b}"


def split_key(key: str, models=None) -> tuple[str, str]:
    """"x,y" -> (x, y). With `models`, a name that itself holds a comma is matched exactly."""
    if models is not None:
        for m in models:
            if key.startswith(m + ",") and key[len(m) + 1:] in models:
                return m, key[len(m) + 1:]
    a, sep, b = key.partition(",")
    if not sep:
        raise ValueError(f"not a pair key: {key!r}")
    return a, b


def label_for(cmp_results: dict, x: str, y: str) -> str | None:
    """The label of x vs y read with x as "A", whichever order the judge saw; None when absent."""
    if pair_key(x, y) in cmp_results:
        return cmp_results[pair_key(x, y)]
    if pair_key(y, x) in cmp_results:
        return flip(cmp_results[pair_key(y, x)])
    return None


_PHRASES = {A_BETTER: r"\ba\s+is\s+better\b", B_BETTER: r"\bb\s+is\s+better\b",
            SAME_GOOD: r"\bsame\s+good\b", SAME_BAD: r"\bsame\s+bad\b"}
_DIGIT = re.compile(r"^\s*(?:\(|option\s*|choice\s*)?([1-4])(?:\s*[.):]|\s*$|\s+(?=[A-Za-z]))", re.I)


def parse_reply(text: str | None) -> str:
    """Map a judge's reply to one of the four labels, or `unparsable`.

    Accepted: the label phrase ("A is better", any case, extra words around it allowed), or the
    option number 1-4 at the start ("2", "2.", "(3)", "Option 4"). A reply naming two different
    labels, or none (a refusal, an essay), is `unparsable`: guessing would invent a judgment.
    """
    if not text or not text.strip():
        return UNPARSABLE
    low = text.strip().lower()
    found = {lab for lab, pat in _PHRASES.items() if re.search(pat, low)}
    m = _DIGIT.match(low)
    if m:
        found.add(LABELS[int(m.group(1)) - 1])
    return found.pop() if len(found) == 1 else UNPARSABLE
