# Models: GGUF files that packages ship are converted once into safetensors directories
# (llmblend.models.convert); other specs (dir:, package: folders, hf:) are used as they are.

if GGUF_MODELS:

    rule convert_model:
        output:
            directory(f"{DATA}/models/{{model}}"),
        wildcard_constraints:
            model="|".join(GGUF_MODELS),
        params:
            **rule_config(lambda wc: config_slice(config, f"models.{wc.model}")),
            spec=lambda wc: q(MODELS[wc.model]["spec"]),
        log:
            f"{LOGS}/convert_model/{{model}}.log",
        benchmark:
            f"{BENCH}/convert_model/{{model}}.tsv"
        conda:
            ENV
        resources:
            mem_mb=4000,
        shell:
            "llmblend convert-model {params.cfgargs} --spec {params.spec} --out {output} --log {log}"

# CTranslate2 directories for generators with `backend: ctranslate2` (llmblend.models.ct2_convert):
# one conversion per (model, quantization), from the converted or configured safetensors directory.
from llmblend.models.ct2_convert import ct2_models as _ct2_models

CT2_MODELS = _ct2_models(config)

if CT2_MODELS:

    rule convert_ct2_model:
        input:
            model=lambda wc: model_input(wc.model),
        output:
            directory(f"{DATA}/models_ct2/{{quant}}/{{model}}"),
        wildcard_constraints:
            model="|".join(sorted({m for m, _ in CT2_MODELS})),
            quant="|".join(sorted({q for _, q in CT2_MODELS})),
        params:
            **rule_config(lambda wc: config_slice(config, f"models.{wc.model}")),
            model=lambda wc: q(model_arg(wc.model)),
        log:
            f"{LOGS}/convert_ct2_model/{{quant}}/{{model}}.log",
        benchmark:
            f"{BENCH}/convert_ct2_model/{{quant}}/{{model}}.tsv"
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=4000,
        shell:
            "llmblend convert-ct2 {params.cfgargs} --model {params.model} --quantization {wildcards.quant}"
            " --out {output} --log {log}"
