# Metrics: every candidate scored against the record's reference (llmblend.metrics.stage).
# score_candidates (one job per split and shard) -> gather_scores (per split) -> summarize_scores;
# score_fused scores the fuser's answers with the same function (the evaluation stage reads it).

import math

MCFG = config.get("metrics")

if MCFG:
    SCORE_SPLITS = ["train", "val", "test"]
    SCORE_SHARDS = list(range(MCFG["shards"]))
    # enabled model-based metric -> a `models` name or a spec
    _METRIC_MODELS = {m: MCFG[m]["model"] for m in ("bartscore", "clm_logprob", "bleurt", "bertscore")
                      if MCFG[m]["enabled"]}
    _METRIC_MODEL_NAMES = sorted({ref for ref in _METRIC_MODELS.values() if ref in MODELS})
    METRIC_MODEL_INPUTS = [p for ref in _METRIC_MODEL_NAMES for p in model_input(ref)]
    METRIC_MODEL_ARGS = " ".join(f"--model {m}={model_arg(ref) if ref in MODELS else ref}"
                                 for m, ref in _METRIC_MODELS.items())
    METRIC_CFG = ["metrics"] + [f"models.{ref}" for ref in _METRIC_MODEL_NAMES]

    # one job's threads, memory, GPU and runtime: from resources.stages.score_candidates (the cost
    # model, docs/scale-out.md) when the profile has one, else from the metrics section
    _SCORE_RES = ((config.get("resources") or {}).get("stages") or {}).get("score_candidates")
    SCORE_THREADS = _SCORE_RES["threads"] if _SCORE_RES else MCFG["threads"]
    SCORE_MEM_MB = _SCORE_RES["mem_mb"] if _SCORE_RES else MCFG.get("mem_mb", 3000)
    SCORE_GPU = (_SCORE_RES["gpus"] if _SCORE_RES else 0) or int(MCFG["device"].startswith("cuda"))

    def _score_runtime(wildcards, input, attempt):
        # minutes: start-up plus the candidates of this job (counted from the input's size) at the
        # measured rate (benchmarks/bench_metrics.py on 2 CPU cores, or the cost model's per_s)
        res = config.get("resources") or {}
        per_s = _SCORE_RES["per_s"] if _SCORE_RES else 15.0
        overhead = _SCORE_RES.get("overhead_min", 5) if _SCORE_RES else 2
        bytes_per_cand = (res.get("disk") or {}).get("bytes_per_candidate", 600)
        n_cands = input.size_mb * 1e6 / bytes_per_cand / (len(SCORE_SHARDS) if "split" in wildcards.keys() else 1)
        return attempt * math.ceil((overhead + n_cands / per_s / 60) * res.get("runtime_margin", 1.5))

    rule score_candidates:
        input:
            candidates=f"{DATA}/candidates/{{split}}.jsonl",
            models=METRIC_MODEL_INPUTS,
        output:
            scored=f"{DATA}/scored/shards/{{split}}/shard-{{shard}}.jsonl",
            report=f"{DATA}/scored/shards/{{split}}/shard-{{shard}}.report.json",
        wildcard_constraints:
            split="train|val|test",
            shard=r"\d+",
        params:
            cfg=config_slice(config, *METRIC_CFG),
            cfgargs=CONFIG_ARGS,
            models=METRIC_MODEL_ARGS,
            n_shards=len(SCORE_SHARDS),
        log:
            f"{LOGS}/score_candidates/{{split}}/shard-{{shard}}.log",
        benchmark:
            f"{BENCH}/score_candidates/{{split}}/shard-{{shard}}.tsv"
        threads: SCORE_THREADS
        resources:
            mem_mb=lambda wildcards, attempt: SCORE_MEM_MB * attempt,
            runtime=_score_runtime,
            gpu=SCORE_GPU,
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
            split="train|val|test",
        params:
            cfgargs=CONFIG_ARGS,
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
            cfg=config_slice(config, "metrics"),
            cfgargs=CONFIG_ARGS,
            scored=" ".join(f"{s}={DATA}/scored/{s}.jsonl" for s in SCORE_SPLITS),
            reports=" ".join(f"{s}={DATA}/scored/{s}.report.json" for s in SCORE_SPLITS),
        log:
            f"{LOGS}/summarize_scores.log",
        conda:
            ENV
        shell:
            "llmblend summarize-scores {params.cfgargs} --scored {params.scored} --reports {params.reports}"
            " --metrics-json {output.metrics} --table {output.table} --report {output.report} --log {log}"

    rule score_fused:
        input:
            fused=f"{RESULTS}/fuser/test_fused.jsonl",
            models=METRIC_MODEL_INPUTS,
        output:
            scored=f"{RESULTS}/fuser/test_fused_scored.jsonl",
            report=f"{RESULTS}/fuser/test_fused_scored.report.json",
        params:
            cfg=config_slice(config, *METRIC_CFG),
            cfgargs=CONFIG_ARGS,
            models=METRIC_MODEL_ARGS,
        log:
            f"{LOGS}/score_fused.log",
        benchmark:
            f"{BENCH}/score_fused.tsv"
        threads: SCORE_THREADS
        resources:
            mem_mb=lambda wildcards, attempt: SCORE_MEM_MB * attempt,
            runtime=_score_runtime,
            gpu=SCORE_GPU,
        conda:
            ENV
        shell:
            "llmblend score-candidates {params.cfgargs} --in {input.fused} --out {output.scored}"
            " --report {output.report} {params.models} --threads {threads} --log {log}"

    TARGETS += rules.summarize_scores.output
