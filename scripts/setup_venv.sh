#!/usr/bin/env bash
# Create the project venv. On a machine without an NVIDIA GPU the CPU build of torch is
# installed first: any unpinned `torch` requirement would otherwise pull a multi-GB CUDA build.
set -euo pipefail
PY=${PY:-python3.11}
VENV=${VENV:-.venv}
TORCH_VERSION=2.13.0

"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  "$VENV/bin/pip" install -q "torch==$TORCH_VERSION"
else
  # A CPU wheel in pip's local find-links (machines of this project carry one) comes first;
  # elsewhere PyTorch's CPU index serves the `+cpu` build.
  wheels=$(mktemp -d)
  if "$VENV/bin/pip" download -q --no-index --no-deps -d "$wheels" "torch==$TORCH_VERSION" 2>/dev/null; then
    "$VENV/bin/pip" install -q "$wheels"/torch-*.whl
  else
    "$VENV/bin/pip" install -q "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu \
      --extra-index-url https://pypi.org/simple
  fi
  rm -rf "$wheels"
fi
"$VENV/bin/pip" install -q -e ".[dev]"
# RecBole ships the MovieLens-100k ratings the watch-time card reads; only its data is used, and
# its own pins (ray<=2.6.3, colorlog==4.7.2) would fight ours, hence --no-deps.
"$VENV/bin/pip" install -q --no-deps recbole==1.2.1
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
