"""The key of a killed training's resume state (the ranker's and the fuser's, one definition).

A training saves checkpoints beside its output; a rerun resumes from them only when they were made
from the same things: the config keys its rule declares (`params: cfg=config_slice(...)`, the slice
that makes Snakemake rerun it) and its inputs (file hashes, the base model's folder). Nothing else of
the config enters: adding a ranking method, or how often it saves, keeps the key.
"""

from __future__ import annotations

import hashlib
import json


def checkpoint_key(config_slice: dict, **inputs) -> str:
    """sha256 of the declared config slice and the inputs, as canonical JSON (sorted keys)."""
    text = json.dumps({"config": config_slice, "inputs": inputs}, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
