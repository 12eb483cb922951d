"""Convert a GGUF model once into a plain safetensors directory (fp32), so later loads are fast.

transformers dequantises a GGUF file on load (25-70 s for the packaged models on 2 cores) and
cannot save a model loaded that way; so load once, copy the weights into a fresh model built
from the same config, and save that. Reloading the result takes well under a second.
"""

from __future__ import annotations

import logging
import os
import shutil
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from llmblend.io import write_json
from llmblend.models.resolve import ModelError, package_path, parse

log = logging.getLogger("llmblend.models")


def gguf_file(spec: str) -> Path:
    scheme, rest = parse(spec)
    if scheme == "gguf":
        p = Path(rest)
    elif scheme == "package":
        p = package_path(rest)
    else:
        raise ModelError(f"model spec {spec!r} is not a GGUF file")
    if p.suffix != ".gguf" or not p.is_file():
        raise ModelError(f"model spec {spec!r}: {p} is not a .gguf file")
    return p


@contextmanager
def one_gguf_parse():
    """transformers reads a GGUF file's header three times on the way to a model (tokenizer, config,
    weights), each with a new `gguf.GGUFReader` that parses every metadata field in Python: for
    Gemma-3's 262,144-token vocabulary that is ~13 s a read on one core (68.0 s -> 41.9 s for the
    conversion, AVX2). The readers only read, so inside this block they are one reader per file, and
    that reader parses the file from memory rather than through `np.memmap`, whose Python-level slicing
    costs ~1 us per value (12.7 -> 8.7 s for that read, and transformers' walk over the vocabulary
    twice as fast; the file is read whole: 0.3 GB for Gemma-3)."""
    import gguf
    import gguf.gguf_reader as reader_module

    real, readers = gguf.GGUFReader, {}

    class NumpyReadingWhole(types.ModuleType):  # numpy, except that memmap reads the whole file
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def memmap(path, mode="r"):
            return np.fromfile(path, dtype=np.uint8)

    def shared_reader(path, mode="r"):
        key = (os.path.realpath(path), mode)
        if key not in readers:
            reader_module.np = NumpyReadingWhole("numpy")
            try:
                readers[key] = real(path, mode)
            finally:
                reader_module.np = np
        return readers[key]

    gguf.GGUFReader = shared_reader
    try:
        yield
    finally:
        gguf.GGUFReader = real


def convert_gguf(spec: str, out_dir) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.initialization import no_init_weights

    src = gguf_file(spec)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("loading %s (dequantising GGUF; this takes a while once)", src)
    with one_gguf_parse():
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    with no_init_weights():  # every weight is loaded next: a random init would cost 5 s for Gemma-3
        fresh = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    fresh.tie_weights()  # what the skipped init does: one embedding matrix saved, not two
    fresh.load_state_dict(model.state_dict())
    fresh.generation_config = model.generation_config
    fresh.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    write_json(tmp / "llmblend_source.json", {"spec": spec, "gguf": src.name})
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    log.info("wrote %s", out_dir)
    return out_dir
