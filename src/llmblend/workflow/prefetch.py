"""`llmblend prefetch-models`: every Hugging Face model a profile names, downloaded once into the
Hugging Face cache (HF_HOME) from a machine that reaches the hub, for cluster nodes that do not
(the kubernetes profile runs its pods with HF_HOME=<shared_dir>/hf and HF_HUB_OFFLINE=1, and a model
missing there fails at once: llmblend.models.resolve).
"""

from __future__ import annotations

import re

from llmblend.errors import LLMBlendError

# hf:<org>/<name>[@<revision>], alone or inside a longer spec (tokenizer:hf:..., bartscore=hf:...)
_HF = re.compile(r"(?<![\w-])hf:([\w.-]+(?:/[\w.-]+)?)(?:@([\w./-]+))?")


def hf_models(cfg) -> list[tuple[str, str | None]]:
    """(repo, revision) of every `hf:` spec among the config's values, sorted, each once."""
    found = set()

    def walk(node):
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            found.update((m.group(1), m.group(2)) for m in _HF.finditer(node))

    walk({k: v for k, v in cfg.items() if not k.startswith("_")})
    return sorted(found, key=lambda rv: (rv[0], rv[1] or ""))


def prefetch(cfg, list_only: bool = False) -> list[str]:
    """Download each model (or, with list_only, only name it); returns one line per model."""
    from llmblend.models.resolve import offline

    models = hf_models(cfg)
    if list_only:
        return [f"{repo}@{rev}" if rev else repo for repo, rev in models]
    if offline():
        raise LLMBlendError("HF_HUB_OFFLINE is set: prefetch-models downloads from the hub; run it where the hub "
                            "is reachable, with HF_HUB_OFFLINE=0 and HF_HOME set to the cache the jobs read")
    from huggingface_hub import snapshot_download

    lines = []
    for repo, rev in models:
        try:
            path = snapshot_download(repo, revision=rev)
        except Exception as e:  # the hub's errors are many; each says what failed
            raise LLMBlendError(f"model {repo}{'@' + rev if rev else ''} could not be downloaded "
                                f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
        lines.append(f"{repo}{'@' + rev if rev else ''}: {path}")
    return lines
