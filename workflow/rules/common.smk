# Shared helpers for every rule file: validated config, the run's roots, the config-file arguments
# that every command line carries, and the per-rule declaration of the config keys it reads.

import os
import sys
from functools import partial

from llmblend.workflow.snake import config_args, config_slice, declare, gguf_models, missing_api_keys, q
from llmblend.workflow.snake import validate_workflow_config
from llmblend.workflow.snake import IMAGE, input_args, prepare_environment, state_dir
from llmblend.workflow.snake import model_arg as _model_arg
from llmblend.workflow.snake import model_input as _model_input

validate_workflow_config(config, workflow)
# keys live in the environment only: say at plan time (snakemake -n too) which one is missing
for _line in missing_api_keys(config):
    print(f"WARNING: {_line}", file=sys.stderr)

# `llmblend` of this Python first on PATH (local and SLURM jobs inherit it; never passed to Kubernetes
# pods: it would replace the image's); with `shared_dir` (the kubernetes profile) the HF cache on the
# shared volume, offline. Remote jobs get those and the API keys the profile needs (pods: as a Secret).
workflow.register_envvars(*prepare_environment(config))

# every rule runs in the pinned image with --software-deployment-method apptainer (the slurm profile);
# Kubernetes pods run in it already (container-image of workflow/profiles/kubernetes)
container: f"docker://{IMAGE}"

RUN = config["run"]
DATA = f"data/{RUN}"
RESULTS = f"results/{RUN}"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
# state that outlives reruns and is no rule output (the judge's label caches): DATA, or under shared_dir
STATE = state_dir(config, DATA)
# the config files Snakemake was given, in order, passed on to every command (the CLI re-reads them)
CONFIG_ARGS = config_args(workflow)
# a rule's config params from the slice of the config it reads: `cfg` (reruns, DVC params) and `cfgargs`
# (the config files and --keys: the command may read those keys only). params: **rule_config(config_slice(...))
rule_config = partial(declare, CONFIG_ARGS)
# Scheduling: when several jobs are ready, the jobs of the run's longest chain start first (the
# PairRanker's training, its train/val rankings, the fuser's data, training and fusion, the fused
# answers' scoring and verification). Without it Snakemake fills a freed core with any ready job: in a
# demo run on 2 cores the PairRanker's training started 78 s after its inputs (with it: at once). A
# priority holds no core free, so a 2-thread job (the fuser's) still waits for both (docs/results.md, "demo").
ON_CHAIN = 1

# the environment every rule runs in (pins of requirements.lock)
ENV = "../envs/llmblend.yaml"
# final targets, extended by each rule file; `rule all` asks for them
TARGETS = []
# the blended answer kinds (llmblend.fuser.kinds): the wildcard of score_fused and judge_fused
from llmblend.fuser.kinds import KINDS as _BLEND_KINDS

BLEND_KIND_NAMES = "|".join(_BLEND_KINDS)

# models by name (see the `models` config section and workflow/rules/models.smk):
#   model_input(name) -> the rule input (the converted directory of a GGUF model, else nothing)
#   model_arg(name)   -> the command-line spec (dir:<converted dir>, or the configured spec)
MODELS = config.get("models", {})
GGUF_MODELS = gguf_models(config)
model_input = partial(_model_input, config, DATA)
model_arg = partial(_model_arg, config, DATA)
