#!/usr/bin/env bash
# The native CPU engine against burn's CUDA backend, on a machine with an NVIDIA GPU: the abalone
# net and bench/wide.yaml (two 1024-wide layers) at batch 32, 1024 and 8192, training examples/s
# of each (`mle train --device cuda` vs the default CPU engine), and their numerics checked
# against each other: the test RMSE after one epoch from the same seed within 1e-4 (relative).
# Builds mle with `--features cuda` into target/cuda: that build downloads an LLVM bundle from
# tracel's server (burn's CUDA backend needs it), so the machine needs internet access.
#   ./bench/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "bench/gpu.sh needs an NVIDIA GPU and its driver (nvidia-smi lists none here): nothing measured." >&2
  exit 2
fi
nvidia-smi -L
CARGO_TARGET_DIR=target/cuda cargo build --release -q -p mle-cli --features cuda
mle=$PWD/target/cuda/release/mle
d=examples/abalone/data
train() { # model batch epochs device → "examples/s rmse"
  local out
  out=$("$mle" train --model "$1" --train-files $d/abalone_train.csv --eval-files $d/abalone_test.csv \
    --num-epochs "$3" --train-batch-size "$2" --eval-batch-size 850 --eval-every-steps 100000000 \
    --no-progress --device "$4")
  echo "$(grep -oE '\([0-9]+ examples/s\)' <<<"$out" | tr -dc 0-9) $(tail -1 <<<"$out" | grep -oE '[0-9.]+$')"
}
fail=0
echo "| model | batch | cpu native examples/s | cuda examples/s | cuda / cpu | rmse after 1 epoch cpu / cuda |"
echo "|---|---:|---:|---:|---:|---|"
for model in examples/abalone/model.yaml bench/wide.yaml; do
  for batch in 32 1024 8192; do
    case $model in *wide*) epochs=2 ;; *) epochs=20 ;; esac
    read -r cpu_ex _ <<<"$(train $model $batch $epochs cpu)"
    read -r gpu_ex _ <<<"$(train $model $batch $epochs cuda)"
    read -r _ cpu_rmse <<<"$(train $model $batch 1 cpu)"
    read -r _ gpu_rmse <<<"$(train $model $batch 1 cuda)"
    ok=$(python3 -c "print('ok' if abs($cpu_rmse - $gpu_rmse) <= 1e-4 * abs($cpu_rmse) else 'DIFFERENT')")
    [ "$ok" = ok ] || fail=1
    ratio=$(python3 -c "print(f'{$gpu_ex / $cpu_ex:.2f}')")
    echo "| $(basename "$model") | $batch | $cpu_ex | $gpu_ex | ${ratio}× | $cpu_rmse / $gpu_rmse $ok |"
  done
done
exit $fail
