"""Convert a safetensors model directory once into a CTranslate2 model directory (rule convert_ct2_model).

The `ctranslate2` generation backend runs this directory. Quantization is chosen at conversion
(`int8`, `int8_float32`, `float32`) and is part of the output path, so two settings never share a
directory. The HF tokenizer and generation config are saved beside the CTranslate2 weights, with
`llmblend_ct2.json` (source spec, quantization, context length, end-of-sequence ids), so the
directory is all the backend needs.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from llmblend.errors import ConfigError
from llmblend.io import write_json
from llmblend.models.resolve import ModelError, resolve

log = logging.getLogger("llmblend.models")

QUANTIZATIONS = ("int8", "int8_float32", "float32")
DEFAULT_QUANTIZATION = "int8"
META = "llmblend_ct2.json"


def ct2_quantization(gen: dict) -> str:
    return gen.get("ct2", {}).get("quantization", DEFAULT_QUANTIZATION)


def ct2_dir(data_dir: str, model: str, quantization: str) -> str:
    """Where rule convert_ct2_model writes a model's CTranslate2 directory."""
    return f"{data_dir}/models_ct2/{quantization}/{model}"


def ct2_models(config: dict) -> list[tuple[str, str]]:
    """(model, quantization) pairs that some ctranslate2 generator runs: one conversion each (the LLM
    aggregator's generator, fuser.aggregator.generator, counts too)."""
    gens = list((config.get("generate") or {}).get("generators", []))
    gens += [a["generator"] for a in [(config.get("fuser") or {}).get("aggregator")] if a]
    return sorted({(g["model"], ct2_quantization(g)) for g in gens if g["backend"] == "ctranslate2"})


def convert_ct2(spec: str, out_dir, quantization: str = DEFAULT_QUANTIZATION) -> Path:
    import ctranslate2
    from ctranslate2.converters import TransformersConverter
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"ctranslate2 quantization {quantization!r}: use one of {', '.join(QUANTIZATIONS)}")
    src = resolve(spec)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    hf_cfg = AutoConfig.from_pretrained(src)
    log.info("converting %s (%s) to CTranslate2 %s", src, type(hf_cfg).__name__, quantization)
    try:
        TransformersConverter(str(src)).convert(str(tmp), quantization=quantization, force=True)
    except ValueError as e:  # an architecture CTranslate2 cannot run
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"model {spec!r} cannot be converted to CTranslate2: {str(e).splitlines()[0][:300]}") from None
    # CTranslate2 writes its own config.json; the HF tokenizer must not look for a model config
    tok = AutoTokenizer.from_pretrained(src)
    tok.save_pretrained(tmp)
    eos = []
    try:
        gcfg = GenerationConfig.from_pretrained(src)
        gcfg.save_pretrained(tmp)
        eos = gcfg.eos_token_id
    except OSError:
        pass  # no generation_config.json: the tokenizer's EOS is the end token
    eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
    text_cfg = hf_cfg.get_text_config() if hasattr(hf_cfg, "get_text_config") else hf_cfg
    write_json(tmp / META, {
        "spec": spec, "quantization": quantization, "architecture": type(hf_cfg).__name__,
        "max_position_embeddings": getattr(text_cfg, "max_position_embeddings", None) or 2048,
        "eos_token_ids": sorted(set(eos)), "ctranslate2": ctranslate2.__version__})
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    log.info("wrote %s", out_dir)
    return out_dir


def read_meta(model_dir) -> dict:
    path = Path(model_dir) / META
    if not path.is_file():
        raise ModelError(f"{model_dir} is not a CTranslate2 directory made by `llmblend convert-ct2` (no {META})")
    return json.loads(path.read_text(encoding="utf-8"))
