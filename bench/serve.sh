#!/usr/bin/env bash
# Online prediction benchmark (see bench/serve.py). Usage: bench/serve.sh [SECONDS_PER_RUN] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! bench/.venv/bin/python -c "import fastapi, uvicorn, onnxruntime" 2>/dev/null; then
  [ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet --disable-pip-version-check \
    fastapi "uvicorn[standard]" onnxruntime==1.31.1 numpy
fi
cargo build --release -p mle-cli -p mle-bench-serve
python3 bench/serve.py "$@"
