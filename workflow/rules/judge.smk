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
    # what labelling candidate pairs reads: the blended answers' own settings (judge.fused_backend,
    # judge.fused_openai) rerun judge_fused only, never the candidates' labels and the rankers trained on them
    _JUDGE_PAIRS_CFG = ["seed", "mirror", "data.sources"] + [
        f"judge.{k}" for k in ("backend", "pairs", "both_orders", "retry_errors", "max_usd", "openai")]
    # the jobs' runtime and memory come from the labels the cost plan counts (resources.stages.judge)
    from llmblend.workflow.snake import job_resources, job_threads

    rule judge_pairs:
        input:
            candidates=f"{DATA}/candidates/{{split}}.jsonl",
        output:
            labels=f"{DATA}/judge/{{split}}.jsonl",
            metrics=f"{RESULTS}/metrics/judge_{{split}}.json",
        wildcard_constraints:
            split="train|val|test",
        params:
            **rule_config(config_slice(config, *_JUDGE_PAIRS_CFG)),
            persist=lambda wc: f"{STATE}/judge/cache/{wc.split}.sqlite",
        log:
            f"{LOGS}/judge_pairs/{{split}}.log",
        benchmark:
            f"{BENCH}/judge_pairs/{{split}}.tsv"
        threads: job_threads(config, "judge")
        resources:
            **job_resources(config, "judge"),
        conda:
            ENV
        shell:
            "llmblend judge-pairs {params.cfgargs} --split {wildcards.split} --candidates {input.candidates}"
            " --out {output.labels} --metrics {output.metrics} --cache {params.persist} --log {log}"

    # one job per blended answer kind (fused, verified, aggregated: llmblend.fuser.kinds); they share one
    # label cache, so a pair of texts two kinds have in common is paid once
    rule judge_fused:
        input:
            fused=f"{RESULTS}/fuser/test_{{kind}}.jsonl",
            candidates=f"{DATA}/candidates/test.jsonl",
        output:
            labels=f"{DATA}/judge/{{kind}}_test.jsonl",
            metrics=f"{RESULTS}/metrics/judge_{{kind}}_test.json",
        wildcard_constraints:
            kind=BLEND_KIND_NAMES,
        params:
            **rule_config(config_slice(config, *_JUDGE_CFG)),
            # one cache per kind: DVC refuses two stages with the same output, and a rerun of one kind
            # still makes no call for the pairs it judged before
            persist=f"{STATE}/judge/cache/{{kind}}_test.sqlite",
        log:
            f"{LOGS}/judge_fused/{{kind}}.log",
        benchmark:
            f"{BENCH}/judge_fused/{{kind}}.tsv"
        threads: job_threads(config, "judge")
        resources:
            **job_resources(config, "judge", target="fused"),
        conda:
            ENV
        shell:
            "llmblend judge-fused {params.cfgargs} --fused {input.fused} --candidates {input.candidates}"
            " --out {output.labels} --metrics {output.metrics} --cache {params.persist} --log {log}"

    TARGETS += expand(f"{DATA}/judge/{{split}}.jsonl", split=JUDGE_SPLITS)
