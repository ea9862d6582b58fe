#!/usr/bin/env bash
# Tuner benchmark: mle's BO (sequential and batch), mle's random search, Optuna TPE and OSS
# Vizier's default GP bandit on BBOB (24 functions x dims 2, 4, 8) plus four classic problems.
# See bench/tune.py and BENCHMARKS.md. Usage:
#   bench/tune.sh [--rerun-vizier] [tune.py options, e.g. --seeds 20 --only mle]
# Vizier costs minutes per study on 2 cores, so its results (bench/results/tune-vizier.jsonl) are
# kept and re-used; --rerun-vizier deletes and recomputes them (about 1.5-2 h on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
rerun_vizier=0
args=()
for a in "$@"; do
  if [ "$a" = --rerun-vizier ]; then rerun_vizier=1; else args+=("$a"); fi
done
pip_quiet=(--quiet --disable-pip-version-check)
if ! bench/.venv/bin/python -c "import optuna, cocoex, matplotlib" 2>/dev/null; then
  [ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
  bench/.venv/bin/pip install "${pip_quiet[@]}" optuna==5.0.0 coco-experiment==2.8.2 matplotlib==3.11.2 numpy==2.4.6
fi
cargo build --release -p mle-bench-tune
if [ "$rerun_vizier" = 1 ] || [ ! -s bench/results/tune-vizier.jsonl ]; then
  if ! bench/.venv-vizier/bin/python -c "import vizier, cocoex" 2>/dev/null; then
    # ../shared/notes/vizier.md: the pinned equinox of google-vizier 0.1.24 breaks on current jax
    python3 -m venv bench/.venv-vizier
    bench/.venv-vizier/bin/pip install "${pip_quiet[@]}" "google-vizier[jax]==0.1.24" coco-experiment==2.8.2
    bench/.venv-vizier/bin/pip install "${pip_quiet[@]}" -U equinox
  fi
  rm -f bench/results/tune-vizier.jsonl
  mkdir -p bench/results
  bench/.venv-vizier/bin/python -W ignore bench/tune/py/vizier_runner.py bench/results/tune-vizier.jsonl 3 50
fi
bench/.venv/bin/python bench/tune.py "${args[@]}"
