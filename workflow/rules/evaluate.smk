# Evaluate: the paper's Table 2, Table 3, Figure 1, the GPT-Rank distribution, the correlation heatmap
# and the aggregation trade-off from the artifacts (llmblend.analysis.evaluate), then report.html
# (llmblend.analysis.report). Outputs are marked with report(...) so `snakemake --report` shows them.
# The LLM-Blender rows need each blended answer kind's scored answers and judge labels (score_fused,
# judge_fused): the GenFuser's when the profile has a `fuser` section, the verified and aggregated
# ones with fuser.verify and fuser.aggregator. The best-of-N schedule
# curve (plots/select_curve.csv, figures/select_curve.*) is there when `pairranker` is a ranker method:
# it replays the schedules on rank_test_full's comparison matrices, at no model cost.

ECFG = config.get("evaluate")

if ECFG is not None and config.get("ranker") and config.get("judge") and config.get("metrics"):
    from llmblend.fuser.kinds import enabled_kinds as _blend_kinds

    EVAL_METHODS = config["ranker"]["methods"]
    EVAL_KINDS = _blend_kinds(config)  # fused, verified, aggregated (llmblend.fuser.kinds)
    _EVAL_FIGURES = ["figure1", "gpt_rank_distribution", "correlation_heatmap", "tradeoff"]
    _EVAL_PLOTS = ["first_place", "gpt_rank_distribution", "tradeoff"]

    # the rule's inputs; the LLM-Blender row's two files only when the profile fuses
    EVAL_INPUTS = {
        "scored": f"{DATA}/scored/test.jsonl",
        "judge": f"{DATA}/judge/test.jsonl",
        "metrics_report": f"{RESULTS}/metrics/candidate_scores.json",
        "rankings": [f"{DATA}/rankings/{m}/test.jsonl" for m in EVAL_METHODS],
    }
    # one Table 2 row per blended answer kind: its scored answers and its judge labels
    for _kind in EVAL_KINDS:
        EVAL_INPUTS[_kind] = f"{RESULTS}/fuser/test_{_kind}_scored.jsonl"
        EVAL_INPUTS[f"{_kind}_judge"] = f"{DATA}/judge/{_kind}_test.jsonl"
    # the best-of-N schedule curve: the schedules replayed on the full matrices that rule rank_test_full
    # keeps (no model call); only when full MaxLogits is one of the methods
    if "pairranker" in EVAL_METHODS:
        EVAL_INPUTS["matrices"] = f"{DATA}/rankings/pairranker/test.matrices.npz"
        _EVAL_FIGURES.append("select_curve")
        _EVAL_PLOTS.append("select_curve")
    # runtime and memory: the bootstrap dominates; sized from the plan (resources.stages.evaluate)
    from llmblend.workflow.snake import job_resources, job_threads

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
            pair_order=report(f"{RESULTS}/tables/pair_order.csv", caption="../report/pair_order.rst", category="Tables"),
            pair_order_md=f"{RESULTS}/tables/pair_order.md",
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
            **rule_config(config_slice(config, "seed", "evaluate", "ranker.methods")),
            # from the job's input (storage copies on Kubernetes), not the plain paths of EVAL_INPUTS
            args=lambda wc, input: " ".join([
                input_args("--ranking", EVAL_METHODS, input.rankings),
                *(f"{input_args('--fused', [k], [input[k]])} {input_args('--fused-judge', [k], [input[f'{k}_judge']])}"
                  for k in EVAL_KINDS),
                *([f"--matrices {q(input.matrices)}"] if "matrices" in EVAL_INPUTS else [])]),
            results=lambda wc, output: os.path.dirname(os.path.dirname(output.headline)),
        log:
            f"{LOGS}/evaluate.log",
        benchmark:
            f"{BENCH}/evaluate.tsv"
        threads: job_threads(config, "evaluate")
        resources:
            **job_resources(config, "evaluate"),
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
            # the report shows the whole configuration: every key of it
            **rule_config(config_slice(config, *[k for k in config if not k.startswith("_")])),
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
