#!/usr/bin/env bash
# Reading a large CSV from an S3 server during training vs the same file on local disk:
# `mle train` of the abalone model on a ~1 GB CSV (the training file repeated), one step, so
# that the run is the read and the parse. Prints wall time, throughput and peak RSS of each,
# and the ratio. The S3 server is moto (from target/test-venv, made by ./scripts/test.sh).
#   ./bench/storage.sh [MB]     (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-1024}
venv=target/test-venv
[ -x "$venv/bin/moto_server" ] || { echo "needs $venv with moto (run ./scripts/test.sh once)"; exit 1; }
cargo build --release -q -p mle-cli
mle=$PWD/target/release/mle
work=$(mktemp -d)
trap 'kill $moto 2>/dev/null || true; rm -rf "$work"' EXIT
src=examples/abalone/data/abalone_train.csv
# abalone_train.csv has no header: repeat it whole until the size is reached.
: > "$work/big.csv"
while [ "$(stat -c %s "$work/big.csv")" -lt $((mb * 1024 * 1024)) ]; do
  for _ in $(seq 64); do cat "$src"; done >> "$work/big.csv"
done
bytes=$(stat -c %s "$work/big.csv")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port" && break; sleep 0.1; done
curl -s -f -X PUT "http://127.0.0.1:$port/bench" >/dev/null
curl -s -f -H 'Content-Type: application/octet-stream' -T "$work/big.csv" \
  "http://127.0.0.1:$port/bench/big.csv" >/dev/null
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench \
  AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
run() { # $1 = train files; prints "seconds peak_kb"
  /usr/bin/time -f '%e %M' -o "$work/time" "$mle" train --model examples/abalone/model.yaml \
    --train-files "$1" --eval-files examples/abalone/data/abalone_test.csv \
    --train-steps 1 --train-batch-size 32 --no-progress >/dev/null 2>&1
  cat "$work/time"
}
read -r lt lm < <(run "$work/big.csv")
read -r st sm < <(run "s3://bench/big.csv")
python3 - "$bytes" "$lt" "$lm" "$st" "$sm" <<'PY'
import sys
b, lt, lm, st, sm = int(sys.argv[1]), *map(float, sys.argv[2:])
mb = b / 2**20
print(f"CSV of {mb:.0f} MiB, mle train (1 step: the read and parse), this machine:")
print(f"{'source':<14}{'wall s':>8}{'MiB/s':>8}{'peak RSS MiB':>14}")
print(f"{'local disk':<14}{lt:>8.2f}{mb/lt:>8.1f}{lm/1024:>14.0f}")
print(f"{'s3 (moto)':<14}{st:>8.2f}{mb/st:>8.1f}{sm/1024:>14.0f}")
print(f"s3 / local: time {st/lt:.2f}x, peak memory {sm/lm:.2f}x")
PY
