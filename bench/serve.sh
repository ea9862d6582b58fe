#!/usr/bin/env bash
# Online prediction benchmark (see bench/serve.py). Usage: bench/serve.sh [SECONDS_PER_RUN] [CONNECTIONS]
# Builds with the `dist` profile (thin LTO; about 10 minutes from scratch on 2 cores);
# PROFILE=release reuses the test build instead.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! bench/.venv/bin/python -c "import fastapi, uvicorn, onnxruntime" 2>/dev/null; then
  [ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet --disable-pip-version-check \
    fastapi "uvicorn[standard]" onnxruntime==1.31.1 numpy
fi
PROFILE=${PROFILE:-dist}
export PROFILE
cargo build --profile "$PROFILE" -p mle-cli -p mle-bench-serve
python3 bench/serve.py "$@"
