#!/usr/bin/env bash
# Installs everything into ./.venv (idempotent). Used by the README's commands,
# by CI (.ci/run) and by the Dockerfile, so all three install the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# ALGOPERF_JAX_EXTRA=cuda12 (the GPU Docker image) adds jax[cuda12]: the same jax
# version with NVIDIA's CUDA/cuDNN wheels. Unset (CI, laptops): CPU-only jax.
JAX_EXTRA=${ALGOPERF_JAX_EXTRA:-}

# Real Fashion-MNIST from Debian (offline). Skipped where apt is unavailable or
# we are not root; the fashion_mnist workload then says how to get the files.
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[install] apt-get install dataset-fashion-mnist"
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null \
      || echo "[install] warning: dataset-fashion-mnist not installed"
  else
    echo "[install] warning: not root or no apt-get; install dataset-fashion-mnist yourself"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "[install] creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp_id=$(cat pyproject.toml scripts/install.sh | sha1sum | cut -c1-12)
[ -z "$JAX_EXTRA" ] || stamp_id="$stamp_id-jax-$JAX_EXTRA"
stamp=.venv/.installed-$stamp_id
if [ ! -e "$stamp" ]; then
  echo "[install] pip install -e .[dev,tf] (first time: a minute or two)"
  # pip's output goes to a log (it is long); shown only when the install fails.
  log=.venv/install.log
  if ! .venv/bin/python -m pip install -e ".[dev,tf]" >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "[install] pip install failed; full log: $log" >&2
    exit 1
  fi
  if [ -n "$JAX_EXTRA" ]; then
    jax_version=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("jax"))')
    echo "[install] pip install jax[$JAX_EXTRA]==$jax_version"
    if ! .venv/bin/python -m pip install "jax[$JAX_EXTRA]==$jax_version" >>"$log" 2>&1; then
      tail -n 40 "$log"
      echo "[install] pip install jax[$JAX_EXTRA] failed; full log: $log" >&2
      exit 1
    fi
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi
echo "[install] ready: $(.venv/bin/python -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__)')"
