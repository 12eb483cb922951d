# GenFuser (llmblend.fuser, docs/fuser.md): build_fuser_data (top K of train/val by fuser.ranker)
# -> train_fuser (best by val loss) -> fuse_candidates (test) -> results/<run>/fuser/test_fused.jsonl,
# which score_fused (metrics) and judge_fused (judge) read like any candidate file.

FCFG = config.get("fuser")

if FCFG:
    from llmblend.fuser import snake as _fs
    from llmblend.workflow.snake import job_resources, job_threads

    _FUSER_MODEL = FCFG["model"]
    FUSER_MODEL_INPUT = model_input(_FUSER_MODEL) if _FUSER_MODEL in MODELS else []
    FUSER_MODEL_ARG = model_arg(_FUSER_MODEL) if _FUSER_MODEL in MODELS else _FUSER_MODEL
    FUSER_CFG = ["seed", "fuser"] + ([f"models.{_FUSER_MODEL}"] if _FUSER_MODEL in MODELS else [])

    # fuser.pretrained (e.g. the released hf:llm-blender/gen_fuser_3b) replaces building data and training
    _PRETRAINED = FCFG.get("pretrained")

    if not _PRETRAINED:

        rule build_fuser_data:
            input:
                unpack(lambda wc: _fs.data_inputs(config, DATA, FUSER_MODEL_INPUT)),
            output:
                train=f"{DATA}/fuser/train.jsonl",
                val=f"{DATA}/fuser/val.jsonl",
                report=f"{DATA}/fuser/build_report.json",
            params:
                cfg=config_slice(config, *FUSER_CFG),
                cfgargs=CONFIG_ARGS,
                model=FUSER_MODEL_ARG,
                splits=lambda wc, input: _fs.data_args(config, input),
                out_dir=lambda wc, output: os.path.dirname(output.train),
            log:
                f"{LOGS}/build_fuser_data.log",
            benchmark:
                f"{BENCH}/build_fuser_data.tsv"
            threads: 1
            resources:
                mem_mb=lambda wc, input: 1000 + int(_fs.mb(input.split_train) * 20),
                runtime=lambda wc, input, attempt: attempt * (2 + int(_fs.mb(input.split_train))),
            conda:
                ENV
            shell:
                "llmblend build-fuser-data {params.cfgargs} --model {params.model} {params.splits}"
                " --out-dir {params.out_dir} --report {output.report} --log {log}"

        rule train_fuser:
            input:
                train=f"{DATA}/fuser/train.jsonl",
                val=f"{DATA}/fuser/val.jsonl",
                model=FUSER_MODEL_INPUT,
            output:
                model=directory(f"{DATA}/fuser/model"),
                plot=f"{RESULTS}/plots/train_fuser.csv",
            params:
                cfg=config_slice(config, *FUSER_CFG),
                cfgargs=CONFIG_ARGS,
                model=FUSER_MODEL_ARG,
            log:
                f"{LOGS}/train_fuser.log",
            benchmark:
                f"{BENCH}/train_fuser.tsv"
            threads: job_threads(config, "train_fuser")
            resources:
                **job_resources(config, "train_fuser"),
            conda:
                ENV
            shell:
                "llmblend train-fuser {params.cfgargs} --model {params.model} --train {input.train}"
                " --val {input.val} --out {output.model} --plot {output.plot} --threads {threads} --log {log}"

    rule fuse_candidates:
        input:
            unpack(
                lambda wc: {
                    **_fs.split_inputs(config, DATA, "test"),
                    **({} if _PRETRAINED else {"fuser": f"{DATA}/fuser/model"}),
                }
            ),
        output:
            fused=f"{RESULTS}/fuser/test_fused.jsonl",
            report=f"{RESULTS}/fuser/test_fused.report.json",
        params:
            cfg=config_slice(config, *FUSER_CFG),
            cfgargs=CONFIG_ARGS,
            rankings=lambda wc, input: f"--rankings {input.rankings}" if "rankings" in input.keys() else "",
            fuser=lambda wc, input: _PRETRAINED or input.fuser,
        log:
            f"{LOGS}/fuse_candidates.log",
        benchmark:
            f"{BENCH}/fuse_candidates.tsv"
        threads: job_threads(config, "fuse_candidates")
        resources:
            **job_resources(config, "fuse_candidates"),
        conda:
            ENV
        shell:
            "llmblend fuse-candidates {params.cfgargs} --fuser {params.fuser} --split {input.split} {params.rankings}"
            " --out {output.fused} --report {output.report} --threads {threads} --log {log}"

    TARGETS += [f"{RESULTS}/fuser/test_fused.jsonl"] + ([] if _PRETRAINED else [f"{RESULTS}/plots/train_fuser.csv"])
