# Generation: every generator answers every record of every split (llmblend.generate).
# generate_candidates (one job per generator, split and shard; resumable) -> gather_candidates
# -> data/<run>/candidates/<split>.jsonl (+ manifest.json, + join_report.json for imports).

GCFG = config.get("generate")

if GCFG:
    import re as _re

    from llmblend.generate import rules as _gr
    from llmblend.workflow.snake import job_resources, job_threads

    GENERATORS = {g["name"]: g for g in GCFG["generators"]}
    GEN_SPLITS = GCFG["splits"]
    GEN_SHARDS = list(range(GCFG["shards"]))

    rule generate_candidates:
        input:
            split=f"{DATA}/splits/{{split}}.jsonl",
            model=lambda wc: _gr.gen_model(config, DATA, wc),
        output:
            shard=f"{DATA}/generate/{{generator}}/{{split}}/shard-{{shard}}.jsonl",
            report=f"{DATA}/generate/{{generator}}/{{split}}/shard-{{shard}}.report.json",
        wildcard_constraints:
            generator="|".join(_re.escape(n) for n in GENERATORS),
            split="train|val|test",
            shard=r"\d+",
        params:
            **rule_config(lambda wc: _gr.gen_cfg(config, wc)),
            model=lambda wc: _gr.gen_model_arg(config, DATA, wc),
        log:
            f"{LOGS}/generate_candidates/{{generator}}/{{split}}/shard-{{shard}}.log",
        benchmark:
            f"{BENCH}/generate_candidates/{{generator}}/{{split}}/shard-{{shard}}.tsv"
        threads: job_threads(config, "generate_candidates")
        resources:
            **job_resources(config, "generate_candidates"),
        conda:
            ENV
        shell:
            "llmblend generate-candidates {params.cfgargs} --generator {wildcards.generator}"
            " --split-file {input.split} --shard {wildcards.shard} --out {output.shard} {params.model}"
            " --threads {threads} --log {log}"

    _IMPORTS = [n for n, g in GENERATORS.items() if g["backend"] == "import"]

    rule gather_candidates:
        input:
            splits=expand(f"{DATA}/splits/{{split}}.jsonl", split=GEN_SPLITS),
            shards=expand(f"{DATA}/generate/{{generator}}/{{split}}/shard-{{shard}}.jsonl",
                          generator=list(GENERATORS), split=GEN_SPLITS, shard=GEN_SHARDS),
            reports=expand(f"{DATA}/generate/{{generator}}/{{split}}/shard-{{shard}}.report.json",
                           generator=list(GENERATORS), split=GEN_SPLITS, shard=GEN_SHARDS),
        output:
            candidates=expand(f"{DATA}/candidates/{{split}}.jsonl", split=GEN_SPLITS),
            manifest=f"{DATA}/candidates/manifest.json",
            join_report=[f"{DATA}/candidates/join_report.json"] if _IMPORTS else [],
        params:
            **rule_config(config_slice(config, "generate")),
            splits_dir=lambda wc, input: os.path.dirname(input.splits[0]),
            gen_dir=lambda wc, input: os.path.dirname(os.path.dirname(os.path.dirname(input.shards[0]))),
            out_dir=lambda wc, output: os.path.dirname(output.manifest),
        log:
            f"{LOGS}/gather_candidates.log",
        conda:
            ENV
        shell:
            "llmblend gather-candidates {params.cfgargs} --splits-dir {params.splits_dir} --gen-dir {params.gen_dir}"
            " --out-dir {params.out_dir} --log {log}"

    TARGETS += rules.gather_candidates.output
