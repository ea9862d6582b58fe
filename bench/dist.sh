#!/usr/bin/env bash
# Distributed-training benchmark (see bench/dist.py); takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p mle-cli -p mle-bench-dist
python3 bench/dist.py "$@"
