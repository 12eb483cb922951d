# Rankers: train PairRanker and the trained baselines, then rank (llmblend.ranker.stage).
# [import_ranker_pool -> judge_ranker_pool: the training pool of ranker.train_generators, if set]
# -> train_ranker (one job per trained ranker) -> rank_with_pairranker (train/val: the fuser's data)
# -> rank_test_full (MaxLogits + MaxWins from one comparison matrix, which it keeps:
# data/<run>/rankings/pairranker/test.matrices.npz) -> rank_candidates (the other methods on test;
# bubble and the best-of-N schedules played on those matrices, their passes being its entries).
# Rankings: data/<run>/rankings/<method>/<split>.jsonl.

RCFG = config.get("ranker")

if RCFG:
    from llmblend.ranker.rules import train_inputs as _train_inputs
    from llmblend.ranker.rules import method_args as _method_args
    from llmblend.ranker.rules import method_inputs as _method_inputs
    from llmblend.ranker.rules import import_keys, infer_keys, method_keys, train_keys
    from llmblend.ranker.methods import method_kind as _method_kind, trained_rankers as _trained_rankers
    from llmblend.workflow.snake import job_resources, job_threads, model_keys, split_records

    RANK_METHODS = RCFG["methods"]
    FULL_METHODS = [m for m in RANK_METHODS if _method_kind(m) == "pair_full"]
    # rank_test_full keeps the test matrices; bubble and the select schedules are played on them
    TEST_MATRICES = f"{DATA}/rankings/pairranker/test.matrices.npz" if FULL_METHODS else None
    OTHER_METHODS = [m for m in RANK_METHODS if _method_kind(m) != "pair_full"]
    PRETRAINED_RANKER = RCFG.get("pretrained")
    TRAINED_RANKERS = _trained_rankers(RCFG)
    RANK_SPLITS = [s for s in RCFG["rank_splits"] if s != "test"]
    JUDGE_SIGNAL = RCFG["signal"]["type"] == "judge"

    # a name in `models` (rule input + command-line spec), or a spec used as it is
    BACKBONE_INPUT = model_input(RCFG["backbone"]) if RCFG["backbone"] in MODELS else []
    BACKBONE_ARG = model_arg(RCFG["backbone"]) if RCFG["backbone"] in MODELS else RCFG["backbone"]
    # the models a ranking method reads besides a trained ranker (methods.METHODS `reads`): the causal
    # LM of clm_scoring, the sentence encoder of consensus
    _READ_MODELS = {"clm": RCFG["clm_scorer"], "encoder": (RCFG.get("consensus") or {}).get("encoder")}
    READ_INPUTS = {r: model_input(m) if m in MODELS else [] for r, m in _READ_MODELS.items()}
    READ_ARGS = {r: model_arg(m) if m in MODELS else m for r, m in _READ_MODELS.items()}
    # the config keys of each rule (llmblend.ranker.rules): a setting reruns only the stages that read it
    BACKBONE_KEYS = model_keys(config, RCFG["backbone"])
    READ_KEYS = {r: model_keys(config, m) for r, m in _READ_MODELS.items() if m}

    if RCFG.get("train_generators"):

        rule import_ranker_pool:
            input:
                split=f"{DATA}/splits/{{split}}.jsonl",
            output:
                records=f"{DATA}/ranker_pool/{{split}}.jsonl",
                report=f"{DATA}/ranker_pool/{{split}}.report.json",
            wildcard_constraints:
                split="train|val",
            params:
                **rule_config(config_slice(config, "mirror", "data.sources", "ranker.train_generators")),
            log:
                f"{LOGS}/import_ranker_pool/{{split}}.log",
            conda:
                ENV
            shell:
                "llmblend import-ranker-pool {params.cfgargs} --split {wildcards.split} --split-file {input.split}"
                " --out {output.records} --report {output.report} --log {log}"

        # the same judge as the profile's candidates (rule judge_pairs), on the pool's answers
        rule judge_ranker_pool:
            input:
                candidates=f"{DATA}/ranker_pool/{{split}}.jsonl",
            output:
                labels=f"{DATA}/ranker_pool/judge/{{split}}.jsonl",
                metrics=f"{RESULTS}/metrics/judge_ranker_pool_{{split}}.json",
            wildcard_constraints:
                split="train|val",
            params:
                **rule_config(config_slice(config, *_JUDGE_PAIRS_CFG)),
                persist=lambda wc: f"{STATE}/ranker_pool/judge/cache/{wc.split}.sqlite",
            log:
                f"{LOGS}/judge_ranker_pool/{{split}}.log",
            benchmark:
                f"{BENCH}/judge_ranker_pool/{{split}}.tsv"
            threads: job_threads(config, "judge")
            resources:
                **job_resources(config, "judge", target="pool"),
            conda:
                ENV
            shell:
                "llmblend judge-pairs {params.cfgargs} --split {wildcards.split} --candidates {input.candidates}"
                " --out {output.labels} --metrics {output.metrics} --cache {params.persist} --log {log}"

    rule train_ranker:
        input:
            unpack(lambda wc: _train_inputs(config, DATA)),
            backbone=BACKBONE_INPUT,
        output:
            model=directory(f"{DATA}/rankers/{{ranker}}/model"),
            curve=f"{RESULTS}/plots/ranker/{{ranker}}.csv",
            report=f"{RESULTS}/reports/train_ranker/{{ranker}}.json",
        wildcard_constraints:
            ranker="|".join(TRAINED_RANKERS),
        params:
            **rule_config(lambda wc: config_slice(config, *train_keys(wc.ranker, BACKBONE_KEYS))),
            backbone=q(BACKBONE_ARG),
            judge=lambda wc, input: (f"--train-judge {q(input.train_judge)} --val-judge {q(input.val_judge)}"
                                     if JUDGE_SIGNAL else ""),
        log:
            f"{LOGS}/train_ranker/{{ranker}}.log",
        benchmark:
            f"{BENCH}/train_ranker/{{ranker}}.tsv"
        threads: job_threads(config, "train_ranker")
        priority: lambda wc: ON_CHAIN if wc.ranker == "pairranker" else 0
        resources:
            **job_resources(config, "train_ranker"),
        conda:
            ENV
        shell:
            "llmblend train-ranker {params.cfgargs} --type {wildcards.ranker} --train {input.train}"
            " --val {input.val} {params.judge} --backbone {params.backbone} --out {output.model}"
            " --curve {output.curve} --report {output.report} --threads {threads} --log {log}"

    if PRETRAINED_RANKER:

        rule import_ranker:
            input:
                backbone=BACKBONE_INPUT,
            output:
                model=directory(f"{DATA}/rankers/pairranker/model"),
            params:
                **rule_config(config_slice(config, *import_keys(BACKBONE_KEYS))),
                checkpoint=q(PRETRAINED_RANKER),
                backbone=q(BACKBONE_ARG),
            log:
                f"{LOGS}/import_ranker.log",
            conda:
                ENV
            shell:
                "llmblend import-ranker {params.cfgargs} --checkpoint {params.checkpoint}"
                " --backbone {params.backbone} --out {output.model} --log {log}"

    rule rank_with_pairranker:
        input:
            scored=lambda wc: split_records(config, DATA, wc.split),
            model=f"{DATA}/rankers/pairranker/model",
        output:
            ranks=f"{DATA}/rankings/pairranker/{{split}}.jsonl",
            report=f"{DATA}/rankings/pairranker/{{split}}.report.json",
        wildcard_constraints:
            split="|".join(RANK_SPLITS) or "train|val",
        params:
            **rule_config(config_slice(config, *infer_keys())),
            out_dir=lambda wc, output: os.path.dirname(os.path.dirname(output.ranks)),
        log:
            f"{LOGS}/rank_with_pairranker/{{split}}.log",
        benchmark:
            f"{BENCH}/rank_with_pairranker/{{split}}.tsv"
        threads: job_threads(config, "rank_candidates")
        priority: ON_CHAIN
        resources:
            **job_resources(config, "rank_candidates"),
        conda:
            ENV
        shell:
            "llmblend rank-candidates {params.cfgargs} --methods pairranker --input {input.scored}"
            " --split {wildcards.split} --out-dir {params.out_dir} --model pairranker={input.model}"
            " --threads {threads} --log {log}"

    if FULL_METHODS:

        rule rank_test_full:
            input:
                scored=f"{DATA}/scored/test.jsonl",
                model=f"{DATA}/rankers/pairranker/model",
            output:
                ranks=[f"{DATA}/rankings/{m}/test.jsonl" for m in FULL_METHODS],
                reports=[f"{DATA}/rankings/{m}/test.report.json" for m in FULL_METHODS],
                # the matrices themselves: the evaluate stage replays the best-of-N schedules on them
                matrices=TEST_MATRICES,
            params:
                **rule_config(config_slice(config, *infer_keys())),
                methods=q(",".join(FULL_METHODS)),
                out_dir=lambda wc, output: os.path.dirname(os.path.dirname(output.ranks[0])),
            log:
                f"{LOGS}/rank_test_full.log",
            benchmark:
                f"{BENCH}/rank_test_full.tsv"
            threads: job_threads(config, "rank_candidates")
            resources:
                **job_resources(config, "rank_candidates", methods=FULL_METHODS),
            conda:
                ENV
            shell:
                "llmblend rank-candidates {params.cfgargs} --methods {params.methods} --input {input.scored}"
                " --split test --out-dir {params.out_dir} --model pairranker={input.model}"
                " --matrices {output.matrices} --threads {threads} --log {log}"

    if OTHER_METHODS:

        rule rank_candidates:
            input:
                unpack(lambda wc: _method_inputs(wc.method, DATA, READ_INPUTS, TEST_MATRICES)),
                scored=f"{DATA}/scored/test.jsonl",
            output:
                ranks=f"{DATA}/rankings/{{method}}/test.jsonl",
                report=f"{DATA}/rankings/{{method}}/test.report.json",
            wildcard_constraints:
                method="|".join(OTHER_METHODS),
            params:
                **rule_config(lambda wc: config_slice(config, *method_keys(wc.method, READ_KEYS))),
                args=lambda wc, input: _method_args(wc.method, input, READ_ARGS),
                out_dir=lambda wc, output: os.path.dirname(os.path.dirname(output.ranks)),
            log:
                f"{LOGS}/rank_candidates/{{method}}.log",
            benchmark:
                f"{BENCH}/rank_candidates/{{method}}.tsv"
            threads: job_threads(config, "rank_candidates")
            resources:
                **job_resources(config, "rank_candidates"),
            conda:
                ENV
            shell:
                "llmblend rank-candidates {params.cfgargs} --methods {wildcards.method} --input {input.scored}"
                " --split test --out-dir {params.out_dir} {params.args} --threads {threads} --log {log}"

    rule rank_by_judge:
        input:
            records=lambda wc: split_records(config, DATA, wc.split),
            judge=f"{DATA}/judge/{{split}}.jsonl",
        output:
            ranks=f"{DATA}/rankings/oracle-gpt_rank/{{split}}.jsonl",
            report=f"{DATA}/rankings/oracle-gpt_rank/{{split}}.report.json",
        wildcard_constraints:
            split="train|val",
        params:
            **rule_config(config_slice(config, *method_keys("oracle-gpt_rank", READ_KEYS))),
            out_dir=lambda wc, output: os.path.dirname(os.path.dirname(output.ranks)),
        log:
            f"{LOGS}/rank_by_judge/{{split}}.log",
        threads: job_threads(config, "judge")
        conda:
            ENV
        shell:
            "llmblend rank-candidates {params.cfgargs} --methods oracle-gpt_rank --input {input.records}"
            " --split {wildcards.split} --out-dir {params.out_dir} --judge {input.judge} --threads {threads}"
            " --log {log}"

    TARGETS += [f"{DATA}/rankings/{m}/test.jsonl" for m in RANK_METHODS]
    TARGETS += [f"{DATA}/rankings/pairranker/{s}.jsonl" for s in RANK_SPLITS]
    TARGETS += [f"{RESULTS}/plots/ranker/{r}.csv" for r in TRAINED_RANKERS]
