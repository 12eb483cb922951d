"""Input, argument and config-key functions for workflow/rules/generate.smk (kept out of the rule
file: Snakemake's linter wants rule files free of function definitions)."""

from __future__ import annotations

from llmblend.models.ct2_convert import ct2_dir, ct2_quantization
from llmblend.workflow.cost import LOCAL_BACKENDS
from llmblend.workflow.snake import config_slice, model_arg, model_input, q


def generators(config: dict) -> dict:
    return {g["name"]: g for g in config["generate"]["generators"]}


def gen_model(config: dict, data: str, wc) -> list[str]:
    return model_files(config, data, generators(config)[wc.generator])


def gen_model_arg(config: dict, data: str, wc) -> str:
    return model_option(config, data, generators(config)[wc.generator])


def model_files(config: dict, data: str, g: dict) -> list[str]:
    """The rule input of a generator's model (also the LLM aggregator's, fuser.aggregator.generator)."""
    if g["backend"] == "ctranslate2":
        return [ct2_dir(data, g["model"], ct2_quantization(g))]
    return model_input(config, data, g["model"]) if g["backend"] == "hf" else []


def model_option(config: dict, data: str, g: dict) -> str:
    """The `--model` option of a generator's command line ("" for openai and import)."""
    if g["backend"] == "ctranslate2":
        return f"--model {q('dir:' + str(ct2_dir(data, g['model'], ct2_quantization(g))))}"
    return f"--model {q(model_arg(config, data, g['model']))}" if g["backend"] == "hf" else ""


def gen_cfg(config: dict, wc) -> dict:
    g = generators(config)[wc.generator]
    keys = ["seed", "generate.shards"]
    keys += [f"models.{g['model']}"] if g["backend"] in LOCAL_BACKENDS else []
    keys += ["mirror", "data.sources"] if g["backend"] == "import" else []
    # Snakemake compares this generator's settings only (a change reruns its jobs alone); DVC
    # sees the key generate.generators (it cannot address one list item)
    return {**config_slice(config, *keys), "generate.generators": g}
