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


class Filters:
    """Deduplication and length bounds; every drop is counted by reason."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.dropped: Counter = Counter()
        self._seen: set = set()
        self._length = _length_fn(spec.get("length_unit", "words"))

    def keep(self, rec: dict) -> bool:
        s = self.spec
        if s.get("dedupe", True):
            key = content_key(rec)
            if key in self._seen:
                self.dropped["duplicate_content"] += 1
                return False
            self._seen.add(key)
        plen = self._length((rec["instruction"] + "\n" + rec["input"]).strip())
        olen = self._length(rec["output"])
        for name, value, lo, hi in (("prompt", plen, s.get("min_prompt_len"), s.get("max_prompt_len")),
                                    ("output", olen, s.get("min_output_len"), s.get("max_output_len"))):
            if lo is not None and value < lo:
                self.dropped[f"{name}_too_short"] += 1
                return False
            if hi is not None and value > hi:
                self.dropped[f"{name}_too_long"] += 1
                return False
        return True


def _length_fn(unit: str):
    if unit == "words":
        return lambda text: len(text.split())
    if unit == "chars":
        return len
    if unit.startswith("tokenizer:"):
        from llmblend.models.resolve import load_tokenizer

        tok = load_tokenizer(unit.split(":", 1)[1])
        return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])
    raise ValueError(f"unknown length unit {unit!r}")
