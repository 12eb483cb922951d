#!/usr/bin/env bash
# Run by Snakemake once, inside the conda environment it has just made from llmblend.yaml
# (--software-deployment-method conda), in the working directory: setup.sh installs what the env file
# cannot say (the packages it installs with --no-deps) and llmblend itself, into this environment.
set -euo pipefail
VENV=none PYTHON=python ./setup.sh
