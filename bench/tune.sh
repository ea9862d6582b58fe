#!/usr/bin/env bash
# Tuner benchmark (see bench/tune.py). Usage: bench/tune.sh [SEEDS]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! bench/.venv/bin/python -c "import optuna" 2>/dev/null; then
  [ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet --disable-pip-version-check optuna==5.0.0
fi
cargo build --release -p mle-bench-tune
bench/.venv/bin/python bench/tune.py "$@"
