"""What a generation backend is: the interface `generate_shard` (and the aggregator) call.

The backends (hf, ctranslate2, openai, import) subclass this Protocol, so they inherit its default
methods, a class that lacks `batches` or `run_batch` cannot be built, and a type checker holds them
to its signatures; a test's stand-in does the same.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Collection, Iterable
from typing import Protocol

Answer = tuple[str, dict]  # (record id, candidate)


class GenerationBackend(Protocol):
    # True: run_batch takes `on_result=` and hands over each answer as it arrives (an API backend, so
    # a kill loses no paid answer); False: the caller logs the batch run_batch returns
    streams: bool = False

    @abstractmethod
    def batches(self, records: list[dict]) -> Iterable[list]:
        """The records in batches, each as run_batch takes it."""
        ...

    def shard_batches(self, records: list[dict], done: Collection[str]) -> Iterable[list]:
        """The batches of a shard whose ids in `done` are finished. The default batches what is
        left; ctranslate2 fixes its batches by the whole shard (its sampling is per batch)."""
        return self.batches([r for r in records if r["id"] not in done])

    @abstractmethod
    def run_batch(self, batch: list) -> list[Answer]:
        """The batch's answers. A backend that `streams` also takes `on_result=`, a callable it hands
        each answer as it arrives (in the caller's thread). A failure that finished part of the batch
        raises an LLMBlendError whose `done` holds those answers."""
        ...

    def report(self, records: list[dict]) -> dict:
        """Added to the shard report (the import join, the openai accounting); default: nothing."""
        return {}


def decoding_of(gen: dict) -> dict:
    """A generator's decoding settings, the schema's defaults (generate.schema.yaml) filled in where the
    profile leaves a key out: every backend, the cost plan and the aggregator read them here."""
    from llmblend.config import schema_defaults

    return {**schema_defaults("generate.generators.items.decoding"),
            **{k: v for k, v in (gen.get("decoding") or {}).items() if v is not None}}
