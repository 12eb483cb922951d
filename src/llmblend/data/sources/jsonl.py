"""A local JSONL file of MixInstruct-style records (id, instruction, input, output)."""

from llmblend.io import iter_jsonl

FIELDS = {"id": str, "instruction": str, "input": str, "output": str}


def load(spec: dict, ctx: dict):
    name = spec.get("name", "jsonl")
    for lineno, rec in iter_jsonl(spec["path"], FIELDS):
        rec.setdefault("source", name)
        yield rec, f"{spec['path']}:{lineno}"
