# Evaluate: the paper's Table 2, Table 3, Figure 1, the GPT-Rank distribution, the correlation heatmap
# and the aggregation trade-off from the artifacts (llmblend.analysis.evaluate), then report.html
# (llmblend.analysis.report). Outputs are marked with report(...) so `snakemake --report` shows them.
# The LLM-Blender row needs the fuser's scored answers and their judge labels: it is there when the
# profile has a `fuser` section, a judge and metrics (score_fused, judge_fused). The best-of-N schedule
# curve (plots/select_curve.csv, figures/select_curve.*) is there when `pairranker` is a ranker method:
# it replays the schedules on rank_test_full's comparison matrices, at no model cost.

ECFG = config.get("evaluate")

if ECFG is not None and config.get("ranker") and config.get("judge") and config.get("metrics"):
    EVAL_METHODS = config["ranker"]["methods"]
    EVAL_FUSED = bool(config.get("fuser"))
    _EVAL_FIGURES = ["figure1", "gpt_rank_distribution", "correlation_heatmap", "tradeoff"]
    _EVAL_PLOTS = ["first_place", "gpt_rank_distribution", "tradeoff"]

    # the rule's inputs; the LLM-Blender row's two files only when the profile fuses
    EVAL_INPUTS = {
        "scored": f"{DATA}/scored/test.jsonl",
        "judge": f"{DATA}/judge/test.jsonl",
        "metrics_report": f"{RESULTS}/metrics/candidate_scores.json",
        "rankings": [f"{DATA}/rankings/{m}/test.jsonl" for m in EVAL_METHODS],
    }
    EVAL_ARGS = [f"--ranking {m}={p}" for m, p in zip(EVAL_METHODS, EVAL_INPUTS["rankings"])]
    if EVAL_FUSED:
        EVAL_INPUTS["fused"] = f"{RESULTS}/fuser/test_fused_scored.jsonl"
        EVAL_INPUTS["fused_judge"] = f"{DATA}/judge/fused_test.jsonl"
        EVAL_ARGS += [f"--fused {EVAL_INPUTS['fused']}", f"--fused-judge {EVAL_INPUTS['fused_judge']}"]
    # the best-of-N schedule curve: the schedules replayed on the full matrices that rule rank_test_full
    # keeps (no model call); only when full MaxLogits is one of the methods
    if "pairranker" in EVAL_METHODS:
        EVAL_INPUTS["matrices"] = f"{DATA}/rankings/pairranker/test.matrices.npz"
        EVAL_ARGS += [f"--matrices {EVAL_INPUTS['matrices']}"]
        _EVAL_FIGURES.append("select_curve")
        _EVAL_PLOTS.append("select_curve")
    # minutes: the bootstrap dominates, about 1 s per MB of inputs per 1000 resamples on one core
    EVAL_RESAMPLES = ECFG.get("bootstrap", {}).get("samples", 1000)

    rule evaluate:
        input:
            **EVAL_INPUTS,
        output:
            table2=report(f"{RESULTS}/tables/table2.csv", caption="../report/table2.rst", category="Tables"),
            table2_md=f"{RESULTS}/tables/table2.md",
            table2_tex=f"{RESULTS}/tables/table2.tex",
            table2_readings=report(f"{RESULTS}/tables/table2_readings.csv", caption="../report/table2.rst",
                                   category="Tables", labels={"table": "Table 2, other readings"}),
            table2_vs_paper=f"{RESULTS}/tables/table2_vs_paper.md",
            table3=report(f"{RESULTS}/tables/table3.csv", caption="../report/table3.rst", category="Tables"),
            table3_md=f"{RESULTS}/tables/table3.md",
            table3_tex=f"{RESULTS}/tables/table3.tex",
            table3_readings=report(f"{RESULTS}/tables/table3_readings.csv", caption="../report/table3.rst",
                                   category="Tables", labels={"table": "Table 3, other readings"}),
            table3_vs_paper=f"{RESULTS}/tables/table3_vs_paper.md",
            summary=f"{RESULTS}/tables/summary.json",
            headline=report(f"{RESULTS}/metrics/headline.json", caption="../report/headline.rst",
                            category="Metrics"),
            figures_png=[report(f"{RESULTS}/figures/{f}.png", caption=f"../report/{f}.rst", category="Figures")
                         for f in _EVAL_FIGURES],
            figures_svg=[f"{RESULTS}/figures/{f}.svg" for f in _EVAL_FIGURES],
            plots=[f"{RESULTS}/plots/{p}.csv" for p in _EVAL_PLOTS],
        params:
            cfg=config_slice(config, "seed", "evaluate", "ranker.methods"),
            cfgargs=CONFIG_ARGS,
            args=" ".join(EVAL_ARGS),
            results=lambda wc, output: os.path.dirname(os.path.dirname(output.headline)),
        log:
            f"{LOGS}/evaluate.log",
        benchmark:
            f"{BENCH}/evaluate.tsv"
        threads: 1
        resources:
            mem_mb=lambda wc, input: 1000 + int(input.size_mb * 10),
            runtime=lambda wc, input, attempt: attempt * (5 + int(input.size_mb * EVAL_RESAMPLES / 30000)),
        conda:
            ENV
        shell:
            "llmblend evaluate {params.cfgargs} --scored {input.scored} --judge {input.judge}"
            " --metrics-report {input.metrics_report} {params.args} --out-dir {params.results} --log {log}"

    rule build_report:
        input:
            rules.evaluate.output,
            captions=local("workflow/report"),  # a source folder: never in remote storage (kubernetes profile)
        output:
            report(f"{RESULTS}/report.html", caption="../report/report_html.rst", category="Report"),
        params:
            cfg=config_slice(config, "run"),
            cfgargs=CONFIG_ARGS,
            results=lambda wc, output: os.path.dirname(output[0]),
        log:
            f"{LOGS}/build_report.log",
        resources:
            mem_mb=500,
            runtime=5,
        conda:
            ENV
        shell:
            "llmblend report {params.cfgargs} --results {params.results} --captions {input.captions}"
            " --out {output} --log {log}"

    TARGETS += [f"{RESULTS}/report.html"] + rules.evaluate.output
