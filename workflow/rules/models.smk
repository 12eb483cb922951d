# Models: GGUF files that packages ship are converted once into safetensors directories
# (llmblend.models.convert); other specs (dir:, package: folders, hf:) are used as they are.

if GGUF_MODELS:

    rule convert_model:
        output:
            directory(f"{DATA}/models/{{model}}"),
        wildcard_constraints:
            model="|".join(GGUF_MODELS),
        params:
            cfg=lambda wc: config_slice(config, f"models.{wc.model}"),
            spec=lambda wc: MODELS[wc.model]["spec"],
            cfgargs=CONFIG_ARGS,
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
