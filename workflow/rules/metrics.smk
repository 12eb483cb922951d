# Metrics: every candidate scored against the record's reference (llmblend.metrics.stage).
# score_candidates (one job per split and shard) -> gather_scores (per split) -> summarize_scores;
# score_fused scores the fuser's answers with the same function (the evaluation stage reads it).

from llmblend.workflow.snake import job_resources, job_threads

MCFG = config.get("metrics")

if MCFG:
    SCORE_SPLITS = MCFG["splits"]
    SCORE_SHARDS = list(range(MCFG["shards"]))
    # enabled model-based metric -> a `models` name or a spec
    _METRIC_MODELS = {m: MCFG[m]["model"] for m in ("bartscore", "clm_logprob", "bleurt", "bertscore")
                      if MCFG[m]["enabled"]}
    _METRIC_MODEL_NAMES = sorted({ref for ref in _METRIC_MODELS.values() if ref in MODELS})
    METRIC_MODEL_INPUTS = [p for ref in _METRIC_MODEL_NAMES for p in model_input(ref)]
    METRIC_MODEL_ARGS = " ".join(f"--model {q(f'{m}={model_arg(ref) if ref in MODELS else ref}')}"
                                 for m, ref in _METRIC_MODELS.items())
    METRIC_CFG = ["metrics"] + [f"models.{ref}" for ref in _METRIC_MODEL_NAMES]

    rule score_candidates:
        input:
            candidates=f"{DATA}/candidates/{{split}}.jsonl",
            models=METRIC_MODEL_INPUTS,
        output:
            scored=f"{DATA}/scored/shards/{{split}}/shard-{{shard}}.jsonl",
            report=f"{DATA}/scored/shards/{{split}}/shard-{{shard}}.report.json",
        wildcard_constraints:
            split="|".join(SCORE_SPLITS),
            shard=r"\d+",
        params:
            **rule_config(config_slice(config, *METRIC_CFG)),
            models=METRIC_MODEL_ARGS,
            n_shards=len(SCORE_SHARDS),
        log:
            f"{LOGS}/score_candidates/{{split}}/shard-{{shard}}.log",
        benchmark:
            f"{BENCH}/score_candidates/{{split}}/shard-{{shard}}.tsv"
        threads: job_threads(config, "score_candidates")
        resources:
            **job_resources(config, "score_candidates"),
        conda:
            ENV
        shell:
            "llmblend score-candidates {params.cfgargs} --in {input.candidates} --out {output.scored}"
            " --report {output.report} --shard {wildcards.shard} --n-shards {params.n_shards}"
            " {params.models} --threads {threads} --log {log}"

    rule gather_scores:
        input:
            shards=expand(f"{DATA}/scored/shards/{{{{split}}}}/shard-{{shard}}.jsonl", shard=SCORE_SHARDS),
            reports=expand(f"{DATA}/scored/shards/{{{{split}}}}/shard-{{shard}}.report.json", shard=SCORE_SHARDS),
        output:
            scored=f"{DATA}/scored/{{split}}.jsonl",
            report=f"{DATA}/scored/{{split}}.report.json",
        wildcard_constraints:
            split="|".join(SCORE_SPLITS),
        params:
            **rule_config(config_slice(config, "metrics")),
        log:
            f"{LOGS}/gather_scores/{{split}}.log",
        conda:
            ENV
        shell:
            "llmblend gather-scores {params.cfgargs} --shards {input.shards} --reports {input.reports}"
            " --out {output.scored} --report {output.report} --log {log}"

    rule summarize_scores:
        input:
            scored=expand(f"{DATA}/scored/{{split}}.jsonl", split=SCORE_SPLITS),
            reports=expand(f"{DATA}/scored/{{split}}.report.json", split=SCORE_SPLITS),
        output:
            metrics=f"{RESULTS}/metrics/candidate_scores.json",
            table=f"{RESULTS}/tables/candidate_scores.csv",
            report=f"{RESULTS}/reports/score_candidates.json",
        params:
            **rule_config(config_slice(config, "metrics")),
            # from the job's input (storage copies on Kubernetes), in the order of SCORE_SPLITS
            scored=lambda wc, input: " ".join(q(f"{s}={p}") for s, p in zip(SCORE_SPLITS, input.scored)),
            reports=lambda wc, input: " ".join(q(f"{s}={p}") for s, p in zip(SCORE_SPLITS, input.reports)),
        log:
            f"{LOGS}/summarize_scores.log",
        conda:
            ENV
        shell:
            "llmblend summarize-scores {params.cfgargs} --scored {params.scored} --reports {params.reports}"
            " --metrics-json {output.metrics} --table {output.table} --report {output.report} --log {log}"

    # one job per blended answer kind (fused, verified, aggregated: llmblend.fuser.kinds)
    rule score_fused:
        input:
            fused=f"{RESULTS}/fuser/test_{{kind}}.jsonl",
            models=METRIC_MODEL_INPUTS,
        output:
            scored=f"{RESULTS}/fuser/test_{{kind}}_scored.jsonl",
            report=f"{RESULTS}/fuser/test_{{kind}}_scored.report.json",
        wildcard_constraints:
            kind=BLEND_KIND_NAMES,
        params:
            **rule_config(config_slice(config, *METRIC_CFG)),
            models=METRIC_MODEL_ARGS,
        log:
            f"{LOGS}/score_fused/{{kind}}.log",
        benchmark:
            f"{BENCH}/score_fused/{{kind}}.tsv"
        threads: job_threads(config, "score_candidates")
        priority: lambda wc: 0 if wc.kind == "aggregated" else ON_CHAIN
        resources:
            **job_resources(config, "score_candidates"),
        conda:
            ENV
        shell:
            "llmblend score-candidates {params.cfgargs} --in {input.fused} --out {output.scored}"
            " --report {output.report} {params.models} --threads {threads} --log {log}"

    TARGETS += rules.summarize_scores.output
