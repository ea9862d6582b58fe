#!/usr/bin/env bash
# The console under load, in the real browser: with 10,000 jobs in the store, how long the
# jobs page takes to show its first page (navigation start → 20 rows drawn), next to the limit
# of the same browser loading a bare route (`/healthz`) and of the raw API call the page makes;
# and a job whose event file holds a 100,000-step curve: the metrics call and the page drawing
# it (downsampled on the server). Median of N runs each, alternating. Needs Debian's chromium,
# tests/console/node_modules (npm ci) and target/test-venv (tensorboard, for writing the curve).
#   ./bench/console.sh [RUNS]     (default 15)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-15}
[ -x /usr/bin/chromium ] || { echo "needs Debian's chromium (apt-get install chromium)"; exit 1; }
[ -d tests/console/node_modules/playwright-core ] || (cd tests/console && npm ci --no-audit --no-fund)
venv=target/test-venv
[ -x "$venv/bin/python" ] || { echo "needs $venv (run ./scripts/test.sh once)"; exit 1; }
cargo build --release -q -p mle-cli
mle=$PWD/target/release/mle
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
start() {
  "$mle" server --listen 127.0.0.1:0 --data-dir "$work/data" --slots 2 > "$work/server.out" 2>/dev/null &
  server=$!
  for _ in $(seq 200); do grep -q http "$work/server.out" 2>/dev/null && break; sleep 0.05; done
  url=$(grep -o 'http://[0-9.:]*' "$work/server.out" | head -1)
}
start
token=$(cat "$work/data/token")
api() { curl -s -f -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
# The 100,000-step curve: an event file written by TensorBoard's own writer.
"$venv/bin/python" bench/console/curve.py "$work/curve" 100000
api -X POST "$url/v1/projects/bench/jobs" \
  -d "{\"jobId\": \"curve\", \"trainingInput\": {\"jobDir\": \"$work/curve\", \"masterConfig\": {\"containerCommand\": [\"mle\", \"--version\"]}}}" >/dev/null
api -X POST "$url/v1/projects/bench/jobs" \
  -d '{"jobId": "seed", "trainingInput": {"masterConfig": {"containerCommand": ["mle", "--version"]}}}' >/dev/null
for _ in $(seq 300); do
  api "$url/v1/projects/bench/jobs/seed" | grep -q '"SUCCEEDED"' && break; sleep 0.1
done
kill $server; wait $server 2>/dev/null || true
# 9,998 more finished jobs, copies of the seed's row (the store is SQLite in the data dir).
python3 bench/console/seed.py "$work/data/mle.db" 9998
start
token=$(cat "$work/data/token")
echo "$(/usr/bin/chromium --version), $(node --version), playwright-core $(node -p "require('./tests/console/node_modules/playwright-core/package.json').version")"
MLE_URL=$url MLE_TOKEN=$token RUNS=$runs MLE_PROFILE=$work/profile node bench/console/bench.mjs
