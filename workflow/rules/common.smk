# Shared helpers for every rule file: validated config, the run's roots, the config-file arguments
# that every command line carries, and the per-rule declaration of the config keys it reads.

from llmblend.config import validate as _validate_config
import os
import sys
from functools import partial

from llmblend.workflow.snake import config_args, config_slice, gguf_models
from llmblend.workflow.snake import model_arg as _model_arg
from llmblend.workflow.snake import model_input as _model_input

_validate_config(config)

envvars:
    "PATH",


# rules call the `llmblend` console script: make the one installed beside this Python findable even
# when the virtual environment is not activated (e.g. `.venv/bin/snakemake`)
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])

RUN = config["run"]
DATA = f"data/{RUN}"
RESULTS = f"results/{RUN}"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
# the config files Snakemake was given, in order, passed on to every command (the CLI re-reads them)
CONFIG_ARGS = config_args(workflow)

# the environment every rule runs in (pins of requirements.lock)
ENV = "../envs/llmblend.yaml"
# final targets, extended by each rule file; `rule all` asks for them
TARGETS = []

# models by name (see the `models` config section and workflow/rules/models.smk):
#   model_input(name) -> the rule input (the converted directory of a GGUF model, else nothing)
#   model_arg(name)   -> the command-line spec (dir:<converted dir>, or the configured spec)
MODELS = config.get("models", {})
GGUF_MODELS = gguf_models(config)
model_input = partial(_model_input, config, DATA)
model_arg = partial(_model_arg, config, DATA)
