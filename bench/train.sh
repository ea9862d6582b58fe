#!/usr/bin/env bash
# Training benchmark: mle train (native and burn engines) vs the hand-written limit (bench/limit)
# and Keras 3 on JAX (see bench/train.py). Not part of the test suite: it takes a few minutes.
# Usage: bench/train.sh [--runs N] [--epochs N] [--batches 32,1024] [--wide-epochs N]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cmp -s bench/requirements.txt bench/.venv/.requirements 2>/dev/null; then
  rm -rf bench/.venv
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
  cp bench/requirements.txt bench/.venv/.requirements
fi
cargo build --release -p mle-cli -p mle-bench-limit
bench/.venv/bin/python bench/train.py "$@"
