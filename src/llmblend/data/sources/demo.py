"""The project's own offline instruction set (see llmblend.data.demo)."""

from llmblend.data.demo import generate_demo


def load(spec: dict, ctx: dict):
    for i, rec in enumerate(generate_demo(spec["n_items"], ctx["seed"], spec.get("weights"))):
        yield rec, f"demo generator item {i}"
