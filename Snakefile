# LLM-Blender, reproduced: the one DAG. Rules only wire files to `llmblend <stage>` command lines;
# every stage's code is in src/llmblend/<stage>/ (rule name -> CLI subcommand -> module, see docs/).
#   snakemake --cores 2                                  # the default (demo) profile, offline
#   snakemake --cores 2 --configfile config/ci.yaml      # another profile, under data/ci/, results/ci/
# dvc.yaml is generated from this file: `llmblend export-dvc` (never edit it by hand).

configfile: "params.yaml"


include: "workflow/rules/common.smk"


rule all:
    input:
        lambda wc: TARGETS,
    default_target: True


include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/judge.smk"
include: "workflow/rules/rank.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/fuse.smk"
