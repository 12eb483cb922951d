# The software of every cluster job: the pins of requirements.lock, installed by setup.sh, and the
# llmblend package (docs/scale-out.md). One file, two variants:
#   docker build --build-arg VARIANT=gpu -t ghcr.io/llmblend/llmblend:0.1.0-gpu .   # the profiles' image
#   docker build --build-arg VARIANT=cpu -t ghcr.io/llmblend/llmblend:0.1.0-cpu .   # CPU-only nodes, ~3 GB smaller
# The tag is <llmblend version>-<variant>: workflow/profiles/kubernetes (container-image) and the
# `container:` of workflow/rules/common.smk name the gpu one (llmblend.workflow.snake.IMAGE).
# The base image is pinned to a full version tag; pin it by digest too (python:3.11.13-slim-bookworm@sha256:...)
# where the registry's digest can be checked.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
FROM ${PYTHON_IMAGE}

# gpu: torch of requirements.lock from PyPI, whose Linux wheel is the CUDA build (its CUDA libraries
# come as nvidia-* wheels; the node's driver is mounted by the NVIDIA container runtime, or
# `apptainer --nv`). cpu: the same torch version from PyTorch's CPU-only index, installed first so
# that the lock's torch==<version> is already satisfied.
ARG VARIANT=gpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

LABEL org.opencontainers.image.title="llmblend" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.source="https://github.com/llmblend/llmblend"

ENV VENV=/opt/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/llmblend
# what setup.sh installs from, and nothing else (.dockerignore keeps data/, results/, .venv/ out)
COPY requirements.lock setup.sh pyproject.toml README.md ./
COPY src ./src

RUN case "$VARIANT" in \
      gpu) ;; \
      cpu) /usr/local/bin/python3 -m venv "$VENV" \
           && "$VENV/bin/pip" install --index-url "$TORCH_CPU_INDEX" "$(grep '^torch==' requirements.lock)" ;; \
      *) echo "VARIANT must be gpu or cpu, not '$VARIANT'" >&2; exit 1 ;; \
    esac \
 && PYTHON=/usr/local/bin/python3 ./setup.sh \
 && python -c 'import os, torch; v, c = os.environ["VARIANT"], torch.version.cuda; \
assert (c is not None) == (v == "gpu"), f"VARIANT={v} but torch {torch.__version__} has CUDA {c}"; \
print(f"llmblend image: torch {torch.__version__}, CUDA {c}")'
# ^ an image whose torch is not the variant asked for is refused: a GPU job on a CPU torch would run
#   the ranker on the CPU without a word

# Every Kubernetes pod first runs `pip install --target .snakemake/pip-deployments <storage plugins>`
# (the kubernetes executor plugin deploys them itself, unpinned): serve that install from wheels in the
# image at the lock's versions, so that pods need no package index and get no other version.
RUN pip download --dest /opt/llmblend/wheels --constraint requirements.lock snakemake-storage-plugin-fs
ENV PIP_CONSTRAINT=/opt/llmblend/requirements.lock \
    PIP_FIND_LINKS=/opt/llmblend/wheels \
    PIP_NO_INDEX=1

# Kubernetes pods run in /workdir (the executor plugin's working directory); Snakemake deploys the
# workflow sources there and reads every input and output through the shared volume.
WORKDIR /workdir
CMD ["llmblend", "--help"]
