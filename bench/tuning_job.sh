#!/usr/bin/env bash
# A tuning job end to end on the server: 20 trials of the abalone net (learning rate tuned on a
# log scale, 2 trials at a time, 200 epochs at batch 32 each), once with the native engine and
# once with `--engine burn`, alternating, from submit to SUCCEEDED. Prints each wall time and
# the ratio.
#   ./bench/tuning_job.sh [ROUNDS]     (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
cargo build --release -q -p mle-cli
mle=$PWD/target/release/mle
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
# As root a server runs jobs as nobody; this benchmark's files are root's own.
run_as=(); [ "$(id -u)" = 0 ] && run_as=(--run-as root)
"$mle" server --listen 127.0.0.1:0 --data-dir "$work/data" --slots 2 "${run_as[@]}" > "$work/server.out" 2>/dev/null &
server=$!
for _ in $(seq 200); do grep -q http "$work/server.out" 2>/dev/null && break; sleep 0.05; done
url=$(grep -o 'http://[0-9.:]*' "$work/server.out" | head -1)
token=$(cat "$work/data/token")
api() { curl -s -f -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
ex=$PWD/examples/abalone
job() { # id engine
  cat <<JSON
{"jobId": "$1", "trainingInput": {"masterConfig": {"containerCommand": ["mle", "train"]},
  "jobDir": "$work/$1",
  "args": ["--model", "$ex/model.yaml", "--train-files", "$ex/data/abalone_train.csv",
           "--eval-files", "$ex/data/abalone_test.csv", "--num-epochs", "200",
           "--train-batch-size", "32", "--eval-every-steps", "100000000", "--no-progress",
           "--engine", "$2"],
  "hyperparameters": {"goal": "MINIMIZE", "hyperparameterMetricTag": "rmse", "maxTrials": 20,
    "maxParallelTrials": 2, "algorithm": "RANDOM_SEARCH",
    "params": [{"parameterName": "learning-rate", "type": "DOUBLE", "minValue": 0.0001,
                "maxValue": 0.01, "scaleType": "UNIT_LOG_SCALE"}]}}}
JSON
}
run() { # id engine → seconds
  local t0 t1
  t0=$(date +%s.%N)
  api -X POST "$url/v1/projects/bench/jobs" -d "$(job "$1" "$2")" >/dev/null
  while :; do
    state=$(api "$url/v1/projects/bench/jobs/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
    case $state in SUCCEEDED) break ;; FAILED|CANCELLED) echo "job $1 $state: $(api "$url/v1/projects/bench/jobs/$1" | head -c 1500)" >&2; exit 1 ;; esac
    sleep 0.1
  done
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}
declare -a native burn
for r in $(seq "$rounds"); do
  native+=("$(run "native_$r" native)")
  burn+=("$(run "burn_$r" burn)")
  echo "round $r: native ${native[-1]} s, burn ${burn[-1]} s"
done
python3 - "${native[*]}" "${burn[*]}" <<'PY'
import statistics, sys
n = statistics.median(map(float, sys.argv[1].split()))
b = statistics.median(map(float, sys.argv[2].split()))
print(f"| engine | 20 trials, submit → SUCCEEDED (median s) |\n|---|---:|\n| native | {n:.2f} |\n| burn | {b:.2f} |")
print(f"native is {b / n:.2f}× faster end to end")
PY
