# Data: raw instruction sources -> MixInstruct-style train/val/test splits (llmblend.data.prepare).


rule prepare_data:
    output:
        train=f"{DATA}/splits/train.jsonl",
        val=f"{DATA}/splits/val.jsonl",
        test=f"{DATA}/splits/test.jsonl",
        manifest=f"{DATA}/splits/manifest.json",
    params:
        cfg=config_slice(config, "seed", "mirror", "data"),
    log:
        f"{LOGS}/prepare_data.log",
    shell:
        "llmblend prepare-data {CONFIG_ARGS} --out-dir {DATA}/splits --log {log}"


TARGETS += rules.prepare_data.output
