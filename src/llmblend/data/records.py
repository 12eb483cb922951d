"""The record format shared by every stage (the MixInstruct record) and the generic filters.

A split record: {id, instruction, input, output, source, candidates: [], [rubric]}.
`output` is the reference answer. Later stages add `candidates[*].scores` and `cmp_results`.
"""

from __future__ import annotations

from collections import Counter

from llmblend.errors import InputError

REQUIRED = ("id", "instruction", "input", "output")


def check_record(rec: dict, where: str) -> dict:
    """Validate one source record; return it in the common layout (unknown keys dropped)."""
    for field in REQUIRED:
        if field not in rec or rec[field] is None:
            raise InputError(where, None, field, "missing")
        if not isinstance(rec[field], str):
            raise InputError(where, None, field, f"expected a string, got {type(rec[field]).__name__}")
    if not rec["id"].strip():
        raise InputError(where, None, "id", "empty")
    if not (rec["instruction"].strip() or rec["input"].strip()):
        raise InputError(where, None, "instruction", "empty (and so is input): there is nothing to answer")
    if not rec["output"].strip():
        raise InputError(where, None, "output", "empty reference answer")
    out = {"id": rec["id"], "instruction": rec["instruction"], "input": rec["input"], "output": rec["output"],
           "source": rec.get("source", "unknown"), "candidates": []}
    if "rubric" in rec:
        out["rubric"] = rec["rubric"]
    return out


def content_key(rec: dict) -> tuple[str, str]:
    return (" ".join(rec["instruction"].split()), " ".join(rec["input"].split()))


# data.compat value that follows get_mixinstruct.py (4594f09) instead of the project's rules
REFERENCE = "reference-4594f09"


class Filters:
    """Deduplication and length bounds; every drop is counted by reason.

    compat REFERENCE (get_mixinstruct.py): no dedupe here (the reference's key includes the unique id:
    only records repeated whole go, which the data stage drops where it checks ids), lengths counted
    with the tokenizer's special tokens on instruction + input with no separator, the output bound
    checked before the prompt's (so the drop counts read as the reference's log)."""

    def __init__(self, spec: dict, compat: str = "project"):
        self.spec = spec
        self.reference = compat == REFERENCE
        self.dropped: Counter = Counter()
        self._seen: set = set()
        self._length = _length_fn(spec.get("length_unit", "words"), special_tokens=self.reference)

    def keep(self, rec: dict) -> bool:
        s = self.spec
        if s.get("dedupe", True) and not self.reference:
            key = content_key(rec)
            if key in self._seen:
                self.dropped["duplicate_content"] += 1
                return False
            self._seen.add(key)
        if self.reference:
            prompt = rec["instruction"] + rec["input"]
        else:
            prompt = (rec["instruction"] + "\n" + rec["input"]).strip()
        bounds = [("prompt", self._length(prompt), s.get("min_prompt_len"), s.get("max_prompt_len")),
                  ("output", self._length(rec["output"]), s.get("min_output_len"), s.get("max_output_len"))]
        for name, value, lo, hi in (bounds[::-1] if self.reference else bounds):
            if lo is not None and value < lo:
                self.dropped[f"{name}_too_short"] += 1
                return False
            if hi is not None and value > hi:
                self.dropped[f"{name}_too_long"] += 1
                return False
        return True


def _length_fn(unit: str, special_tokens: bool = False):
    if unit == "words":
        return lambda text: len(text.split())
    if unit == "chars":
        return len
    if unit.startswith("tokenizer:"):
        from llmblend.models.resolve import load_tokenizer

        tok = load_tokenizer(unit.split(":", 1)[1])
        return lambda text: len(tok(text, add_special_tokens=special_tokens)["input_ids"])
    raise ValueError(f"unknown length unit {unit!r}")
