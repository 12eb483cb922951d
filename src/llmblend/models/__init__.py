"""Model specs, resolution to local directories, and loading (see resolve.py)."""

import inspect


def takes_logits_to_keep(model) -> bool:
    """Whether a causal LM's forward can compute logits for its last positions only (`logits_to_keep`):
    the metrics' scorers and the fuser's training cut the vocabulary projection with it."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters
