# GenFuser (llmblend.fuser, docs/fuser.md): build_fuser_data (top K of train/val by fuser.ranker)
# -> train_fuser (best by val loss) -> fuse_candidates (test) -> results/<run>/fuser/test_fused.jsonl,
# which score_fused (metrics) and judge_fused (judge) read like any candidate file.

FCFG = config.get("fuser")

if FCFG:
    from llmblend.fuser.data import parse_ranker as _parse_fuser_ranker
    from llmblend.workflow.snake import job_resources, job_threads

    _FUSER_RANK_KIND, _FUSER_RANKER = _parse_fuser_ranker(FCFG["ranker"])
    _FUSER_MODEL = FCFG["model"]
    FUSER_MODEL_INPUT = model_input(_FUSER_MODEL) if _FUSER_MODEL in MODELS else []
    FUSER_MODEL_ARG = model_arg(_FUSER_MODEL) if _FUSER_MODEL in MODELS else _FUSER_MODEL
    FUSER_CFG = ["seed", "fuser"] + ([f"models.{_FUSER_MODEL}"] if _FUSER_MODEL in MODELS else [])

    def _mb(path):
        return os.path.getsize(path) / 1e6 if os.path.exists(path) else 0.0

    def _fuser_split(split):
        # a ranker's rankings go with the candidates; the oracle reads the metric from the scored file
        if _FUSER_RANK_KIND == "oracle":
            return {"split": f"{DATA}/scored/{split}.jsonl"}
        return {"split": f"{DATA}/candidates/{split}.jsonl",
                "rankings": f"{DATA}/rankings/{_FUSER_RANKER}/{split}.jsonl"}

    def _fuser_data_inputs(wildcards):
        files = {f"{k}_{s}": v for s in ("train", "val") for k, v in _fuser_split(s).items()}
        return {**files, "model": FUSER_MODEL_INPUT}

    def _fuser_data_args(wildcards, input):
        args = [f"--split {s}={input[f'split_{s}']}" for s in ("train", "val")]
        if _FUSER_RANK_KIND != "oracle":
            args += [f"--rankings {s}={input[f'rankings_{s}']}" for s in ("train", "val")]
        return " ".join(args)

    rule build_fuser_data:
        input:
            unpack(_fuser_data_inputs),
        output:
            train=f"{DATA}/fuser/train.jsonl",
            val=f"{DATA}/fuser/val.jsonl",
            report=f"{DATA}/fuser/build_report.json",
        params:
            cfg=config_slice(config, *FUSER_CFG),
            cfgargs=CONFIG_ARGS,
            model=FUSER_MODEL_ARG,
            splits=_fuser_data_args,
        log:
            f"{LOGS}/build_fuser_data.log",
        benchmark:
            f"{BENCH}/build_fuser_data.tsv"
        threads: 1
        resources:
            mem_mb=lambda wc, input: 1000 + int(_mb(input.split_train) * 20),
            runtime=lambda wc, input, attempt: attempt * (2 + int(_mb(input.split_train))),
        conda:
            ENV
        shell:
            "llmblend build-fuser-data {params.cfgargs} --model {params.model} {params.splits}"
            " --out-dir {DATA}/fuser --report {output.report} --log {log}"

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
            launcher=FCFG["train"].get("launcher", "llmblend"),
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
            "{params.launcher} train-fuser {params.cfgargs} --model {params.model} --train {input.train}"
            " --val {input.val} --out {output.model} --plot {output.plot} --threads {threads} --log {log}"

    def _fuser_test_inputs(wildcards):
        return {**_fuser_split("test"), "fuser": f"{DATA}/fuser/model"}

    rule fuse_candidates:
        input:
            unpack(_fuser_test_inputs),
        output:
            fused=f"{RESULTS}/fuser/test_fused.jsonl",
            report=f"{RESULTS}/fuser/test_fused.report.json",
        params:
            cfg=config_slice(config, *FUSER_CFG),
            cfgargs=CONFIG_ARGS,
            rankings=lambda wc, input: f"--rankings {input.rankings}" if "rankings" in input.keys() else "",
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
            "llmblend fuse-candidates {params.cfgargs} --fuser {input.fuser} --split {input.split} {params.rankings}"
            " --out {output.fused} --report {output.report} --threads {threads} --log {log}"

    TARGETS += [f"{RESULTS}/fuser/test_fused.jsonl", f"{RESULTS}/plots/train_fuser.csv"]
