# Data: raw instruction sources -> MixInstruct-style train/val/test splits (llmblend.data.prepare).


rule prepare_data:
    output:
        train=f"{DATA}/splits/train.jsonl",
        val=f"{DATA}/splits/val.jsonl",
        test=f"{DATA}/splits/test.jsonl",
        manifest=f"{DATA}/splits/manifest.json",
    params:
        **rule_config(config_slice(config, "seed", "mirror", "data")),
        out_dir=lambda wc, output: os.path.dirname(output.manifest),
    log:
        f"{LOGS}/prepare_data.log",
    conda:
        ENV
    shell:
        "llmblend prepare-data {params.cfgargs} --out-dir {params.out_dir} --log {log}"


TARGETS += rules.prepare_data.output
