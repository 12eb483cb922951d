# Shared helpers for every rule file: validated config, the run's roots, the config-file arguments
# that every command line carries, and the per-rule declaration of the config keys it reads.

from llmblend.config import validate as _validate_config
from llmblend.workflow.snake import config_args, config_slice

_validate_config(config)

RUN = config["run"]
DATA = f"data/{RUN}"
RESULTS = f"results/{RUN}"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
# the config files Snakemake was given, in order, passed on to every command (the CLI re-reads them)
CONFIG_ARGS = config_args(workflow)

# final targets, extended by each rule file; `rule all` asks for them
TARGETS = []


def all_targets(wildcards):
    return TARGETS
