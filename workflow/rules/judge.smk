# Judge: pairwise labels (cmp_results) of each judged split, for GPT-Rank (llmblend.judge.run).
# judge_pairs labels the candidates of each split in judge.splits; judge_fused labels the fused
# answer of each test example against every candidate (the evaluation stage asks for its output).
# The label cache (SQLite, data/<run>/judge/cache/) is not a rule output on purpose: Snakemake
# deletes a job's outputs before rerunning it, and the cache must outlive reruns so that no label
# is paid twice. The Batch API path runs by hand: `llmblend judge-batch prepare|submit|poll|ingest`.

JCFG = config.get("judge")

if JCFG:
    JUDGE_SPLITS = JCFG["splits"]
    _JUDGE_CFG = ["seed", "mirror", "data.sources", "judge"]
    _JUDGE_OPENAI = "openai" in (JCFG["backend"], JCFG.get("fused_backend"))

    # minutes: replay and rubric take seconds; an LLM judge about 1 s per pair at 4 in flight
    _JUDGE_RUNTIME_PER_MB = 2000 if _JUDGE_OPENAI else 0

    rule judge_pairs:
        input:
            candidates=f"{DATA}/candidates/{{split}}.jsonl",
        output:
            labels=f"{DATA}/judge/{{split}}.jsonl",
            metrics=f"{RESULTS}/metrics/judge_{{split}}.json",
        wildcard_constraints:
            split="train|val|test",
        params:
            cfg=config_slice(config, *_JUDGE_CFG),
            cfgargs=CONFIG_ARGS,
            persist=lambda wc: f"{DATA}/judge/cache/{wc.split}.sqlite",
        log:
            f"{LOGS}/judge_pairs/{{split}}.log",
        benchmark:
            f"{BENCH}/judge_pairs/{{split}}.tsv"
        threads: 1
        resources:
            mem_mb=lambda wc, input: 500 + int(input.size_mb * 20),
            runtime=lambda wc, input, attempt: attempt * (5 + int(input.size_mb * _JUDGE_RUNTIME_PER_MB)),
        conda:
            ENV
        shell:
            "llmblend judge-pairs {params.cfgargs} --split {wildcards.split} --candidates {input.candidates}"
            " --out {output.labels} --metrics {output.metrics} --cache {params.persist} --log {log}"

    rule judge_fused:
        input:
            fused=f"{RESULTS}/fuser/test_fused.jsonl",
            candidates=f"{DATA}/candidates/test.jsonl",
        output:
            labels=f"{DATA}/judge/fused_test.jsonl",
            metrics=f"{RESULTS}/metrics/judge_fused_test.json",
        params:
            cfg=config_slice(config, *_JUDGE_CFG),
            cfgargs=CONFIG_ARGS,
            persist=f"{DATA}/judge/cache/fused_test.sqlite",
        log:
            f"{LOGS}/judge_fused.log",
        benchmark:
            f"{BENCH}/judge_fused.tsv"
        threads: 1
        resources:
            mem_mb=lambda wc, input: 500 + int(input.size_mb * 20),
            runtime=lambda wc, input, attempt: attempt * (5 + int(input.size_mb * _JUDGE_RUNTIME_PER_MB)),
        conda:
            ENV
        shell:
            "llmblend judge-fused {params.cfgargs} --fused {input.fused} --candidates {input.candidates}"
            " --out {output.labels} --metrics {output.metrics} --cache {params.persist} --log {log}"

    TARGETS += expand(f"{DATA}/judge/{{split}}.jsonl", split=JUDGE_SPLITS)
