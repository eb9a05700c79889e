# syntax=docker/dockerfile:1
# The reproducible environment. It installs with scripts/install.sh, the script
# CI runs (.ci/run -> scripts/test.sh -> scripts/install.sh), so every install
# step of this image runs in CI too; scripts/check_dockerfile.py (also in CI)
# checks the rest of this file.
#
#   GPU:  docker build -t algoperf .
#   CPU:  docker build -t algoperf:cpu --build-arg BASE=python:3.11-slim-bookworm \
#           --build-arg JAX_EXTRA= .
#
#   docker run --rm algoperf reproduce v0.5
#   docker run --rm --gpus all -v "$PWD/data:/data" -v "$PWD/experiments:/experiments" \
#     algoperf run --workload fashion_mnist --data_dir /data/fashion-mnist

# jax[cuda12] brings CUDA and cuDNN as pip wheels matched to jax, so the GPU
# image needs only the driver hooks of NVIDIA's smallest (base) image.
ARG BASE=nvidia/cuda:12.6.3-base-ubuntu24.04
FROM ${BASE}

# cuda12: install jax[cuda12] (scripts/install.sh's ALGOPERF_JAX_EXTRA); empty: CPU-only jax.
ARG JAX_EXTRA=cuda12

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

# Python >= 3.11 with venv: Ubuntu 24.04 (the CUDA image) has 3.12 but not venv
# installed; the python:3.11 images have both.
RUN if ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi

WORKDIR /opt/algoperf
COPY . /opt/algoperf
RUN ALGOPERF_JAX_EXTRA="${JAX_EXTRA}" bash scripts/install.sh \
    && rm -rf /var/lib/apt/lists/*

ENV PATH=/opt/algoperf/.venv/bin:$PATH
# Datasets (--data_dir /data/...) and logs live outside the image.
VOLUME ["/data", "/experiments"]
# From /, relative paths land in the volumes: `algoperf run` writes to
# ./experiments by default, which is /experiments.
WORKDIR /
ENTRYPOINT ["/opt/algoperf/.venv/bin/algoperf"]
CMD ["--help"]
