"""Machine-checkable rubrics for the demo instruction set.

A rubric is a list of checks, each a small JSON object such as {"check": "contains", "value": "Paris"}.
`evaluate_rubric(text, rubric)` says which checks an answer passes; the offline `rubric` judge
compares two answers by how many checks each passes. Checks are deliberately literal (no model in
the loop), so the demo profile's "ground truth" is exact and reproducible.
"""

from __future__ import annotations

import re

_NUM = re.compile(r"-?\d+(?:[.,]\d+)?")
_WORD = re.compile(r"\S+")


def normalize(text: str) -> str:
    """Whitespace collapsed, outer quotes and spaces removed."""
    t = " ".join(text.split())
    return t.strip().strip('"\'“”').strip()


def _items(text: str) -> list[str]:
    # a list answer may use commas, newlines, bullets or numbering
    parts = re.split(r"[,\n;]|\band\b", text)
    out = []
    for p in parts:
        p = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", p).strip().strip(".").strip()
        if p:
            out.append(p)
    return out


def _numbers(text: str) -> list[float]:
    return [float(n.replace(",", "")) for n in _NUM.findall(text)]


def run_check(text: str, check: dict) -> bool:
    kind, value = check["check"], check.get("value")
    if kind == "contains":
        return re.search(r"(?<!\w)" + re.escape(str(value).lower()) + r"(?!\w)", text.lower()) is not None
    if kind == "not_contains":
        return str(value).lower() not in text.lower()
    if kind == "number":
        return any(abs(n - float(value)) < 1e-9 for n in _numbers(text))
    if kind == "max_words":
        return 0 < len(_WORD.findall(text)) <= int(value)
    if kind == "min_words":
        return len(_WORD.findall(text)) >= int(value)
    if kind == "item_count":
        return len(_items(text)) == int(value)
    if kind == "items_from":
        allowed = {v.lower() for v in value}
        items = _items(text)
        return bool(items) and all(i.lower() in allowed for i in items)
    if kind == "equals":
        return normalize(text).rstrip(".") == normalize(str(value)).rstrip(".")
    if kind == "all_caps":
        letters = [c for c in text if c.isalpha()]
        return bool(letters) and all(c.isupper() for c in letters)
    if kind == "all_lower":
        letters = [c for c in text if c.isalpha()]
        return bool(letters) and all(c.islower() for c in letters)
    raise ValueError(f"unknown rubric check {kind!r}")


CHECKS = {"contains", "not_contains", "number", "max_words", "min_words", "item_count", "items_from",
          "equals", "all_caps", "all_lower"}


def evaluate_rubric(text: str, rubric: list[dict]) -> list[bool]:
    return [run_check(text or "", c) for c in rubric]


def rubric_score(text: str, rubric: list[dict]) -> float:
    """Share of checks passed, in [0, 1]."""
    res = evaluate_rubric(text, rubric)
    return sum(res) / len(res) if res else 0.0
