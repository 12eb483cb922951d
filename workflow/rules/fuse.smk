# GenFuser (llmblend.fuser, docs/fuser.md): build_fuser_data (top K of train/val by fuser.ranker)
# -> train_fuser (best by val loss) -> fuse_candidates (test) -> results/<run>/fuser/test_fused.jsonl,
# which score_fused (metrics) and judge_fused (judge) read like any candidate file.
# Beside it, the other blended answers (llmblend.fuser.kinds), read the same way: verify_fused (fuser.verify:
# the PairRanker keeps the fused answer or its top-1) -> test_verified.jsonl, and aggregate_candidates
# (fuser.aggregator: a chat model synthesises the top K, no training) -> test_aggregated.jsonl.

FCFG = config.get("fuser")

if FCFG:
    from llmblend.fuser import snake as _fs
    from llmblend.workflow.snake import job_resources, job_threads

    _FUSER_MODEL = FCFG["model"]
    FUSER_MODEL_INPUT = model_input(_FUSER_MODEL) if _FUSER_MODEL in MODELS else []
    FUSER_MODEL_ARG = q(model_arg(_FUSER_MODEL) if _FUSER_MODEL in MODELS else _FUSER_MODEL)
    FUSER_CFG = _fs.genfuser_keys(config)
    FUSE_CFG = _fs.fuse_keys(config)
    BLEND_KINDS = _fs.blend_kinds(config)

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
                **rule_config(config_slice(config, *FUSER_CFG)),
                model=FUSER_MODEL_ARG,
                splits=lambda wc, input: _fs.data_args(config, input),
                out_dir=lambda wc, output: os.path.dirname(output.train),
            log:
                f"{LOGS}/build_fuser_data.log",
            benchmark:
                f"{BENCH}/build_fuser_data.tsv"
            threads: job_threads(config, "build_fuser_data")
            priority: ON_CHAIN
            resources:
                **job_resources(config, "build_fuser_data"),
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
                **rule_config(config_slice(config, *FUSER_CFG)),
                model=FUSER_MODEL_ARG,
            log:
                f"{LOGS}/train_fuser.log",
            benchmark:
                f"{BENCH}/train_fuser.tsv"
            threads: job_threads(config, "train_fuser")
            priority: ON_CHAIN
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
            **rule_config(config_slice(config, *FUSE_CFG)),
            rankings=lambda wc, input: f"--rankings {q(input.rankings)}" if "rankings" in input.keys() else "",
            fuser=lambda wc, input: q(_PRETRAINED or input.fuser),
        log:
            f"{LOGS}/fuse_candidates.log",
        benchmark:
            f"{BENCH}/fuse_candidates.tsv"
        threads: job_threads(config, "fuse_candidates")
        priority: ON_CHAIN
        resources:
            **job_resources(config, "fuse_candidates"),
        conda:
            ENV
        shell:
            "llmblend fuse-candidates {params.cfgargs} --fuser {params.fuser} --split {input.split} {params.rankings}"
            " --out {output.fused} --report {output.report} --threads {threads} --log {log}"

    if "verified" in BLEND_KINDS:

        rule verify_fused:
            input:
                # scored, so that the kept answer carries its text's scores (score_fused keeps them);
                # their reports, read beside them, say whether every score was computed in this run
                fused=f"{RESULTS}/fuser/test_fused_scored.jsonl",
                fused_report=f"{RESULTS}/fuser/test_fused_scored.report.json",
                split=f"{DATA}/scored/test.jsonl",
                split_report=f"{DATA}/scored/test.report.json",
                ranker=f"{DATA}/rankers/pairranker/model",
            output:
                verified=f"{RESULTS}/fuser/test_verified.jsonl",
                report=f"{RESULTS}/fuser/test_verified.report.json",
            params:
                **rule_config(config_slice(config, "seed", "ranker.infer")),
            log:
                f"{LOGS}/verify_fused.log",
            benchmark:
                f"{BENCH}/verify_fused.tsv"
            threads: job_threads(config, "rank_candidates")
            priority: ON_CHAIN
            resources:
                **job_resources(config, "rank_candidates", target="verify"),
            conda:
                ENV
            shell:
                "llmblend verify-fused {params.cfgargs} --fused {input.fused} --split {input.split}"
                " --ranker {input.ranker} --out {output.verified} --report {output.report} --threads {threads}"
                " --log {log}"

    if "aggregated" in BLEND_KINDS:

        rule aggregate_candidates:
            input:
                unpack(lambda wc: _fs.split_inputs(config, DATA, "test")),
                model=_fs.aggregator_model(config, DATA),
            output:
                aggregated=f"{RESULTS}/fuser/test_aggregated.jsonl",
                report=f"{RESULTS}/fuser/test_aggregated.report.json",
            params:
                **rule_config(config_slice(config, *_fs.aggregator_keys(config))),
                rankings=lambda wc, input: _fs.rankings_arg(input),
                model=_fs.aggregator_model_arg(config, DATA),
                # the answer cache is not an output: Snakemake deletes outputs before a rerun, and no
                # answer may be paid twice (as the judge's label cache)
                cache=f"{STATE}/fuser/aggregator_cache.sqlite",
            log:
                f"{LOGS}/aggregate_candidates.log",
            benchmark:
                f"{BENCH}/aggregate_candidates.tsv"
            # a generator answers: it asks for the generators' cores
            threads: job_threads(config, "generate_candidates")
            resources:
                **job_resources(config, "fuse_candidates"),
            conda:
                ENV
            shell:
                "llmblend aggregate-candidates {params.cfgargs} --split {input.split} {params.rankings}"
                " {params.model} --out {output.aggregated} --report {output.report} --cache {params.cache}"
                " --threads {threads} --log {log}"

    TARGETS += [f"{RESULTS}/fuser/test_{k}.jsonl" for k in BLEND_KINDS]
    TARGETS += [] if _PRETRAINED else [f"{RESULTS}/plots/train_fuser.csv"]
