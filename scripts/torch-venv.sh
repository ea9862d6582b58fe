#!/usr/bin/env bash
# Makes target/torch-venv, a Python with torch from PyPI (its wheel pulls ~3 GB of CUDA
# libraries), for the opt-in real torch.distributed test:
#   ./scripts/torch-venv.sh && MLE_TEST_TORCH=1 MLE_TEST_TORCH_PYTHON=$PWD/target/torch-venv/bin/python \
#     cargo test --release -p mle-cli --test frameworks torch
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/torch-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check torch==2.15.0
fi
"$venv/bin/python" -c 'import torch; print("torch", torch.__version__, "in", "'"$venv"'")'
