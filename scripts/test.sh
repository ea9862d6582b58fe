#!/usr/bin/env bash
# The whole test suite: formatting, lints, the structure check, then every test (unit, integration, interop with
# the Python peers, the console in Chromium). Creates target/test-venv (tensorboard, onnxruntime),
# target/tf-venv (TensorFlow) and tests/console/node_modules (playwright-core) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/test-venv
req=tests/python/requirements.txt
if ! cmp -s "$req" "$venv/.requirements" 2>/dev/null; then
  echo "==> creating the test venv in $venv (tests/python/requirements.txt)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$venv/.requirements"
fi
export MLE_TEST_PYTHON="$PWD/$venv/bin/python"

# The TensorFlow runtime of the framework tests (crates/mle-cli/tests/frameworks.rs), ~300 MB.
tfvenv=target/tf-venv
tfreq=tests/python/tf-requirements.txt
if ! cmp -s "$tfreq" "$tfvenv/.requirements" 2>/dev/null; then
  echo "==> creating the TensorFlow venv in $tfvenv (tests/python/tf-requirements.txt)"
  rm -rf "$tfvenv"
  python3 -m venv "$tfvenv"
  "$tfvenv/bin/pip" install --quiet --disable-pip-version-check -r "$tfreq"
  cp "$tfreq" "$tfvenv/.requirements"
fi
export MLE_TEST_TF_PYTHON="$PWD/$tfvenv/bin/python"

# The console's browser tests (crates/mle-cli/tests/console.rs): playwright-core from npm, which
# drives Debian's chromium (.ci/run installs it).
lock=tests/console/package-lock.json
if ! cmp -s "$lock" tests/console/node_modules/.mle-lock 2>/dev/null; then
  echo "==> installing playwright-core in tests/console (npm ci)"
  (cd tests/console && npm ci --no-audit --no-fund --loglevel=error)
  cp "$lock" tests/console/node_modules/.mle-lock
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --release --workspace --all-targets -- -D warnings
echo "==> structure (crate dependency rules, import cycles, file sizes)"
python3 scripts/check-structure.py
echo "==> cargo test"
# --no-fail-fast: one failing test binary must not hide the results of the others.
cargo test --release --workspace --no-fail-fast
