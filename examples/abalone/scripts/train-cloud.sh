#!/usr/bin/env bash
# The abalone tutorial's cloud training step with `gcloud ml-engine` replaced by `mle` and gs://
# paths by local ones: the built-in trainer on STANDARD_1 (1 master, 4 workers, 3 parameter
# servers), streaming its logs until it ends. Needs a running `mle server` (MLE_SERVER,
# MLE_DATA_DIR or --token for the CLI to find it).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
MLE=${MLE:-mle}
JOB_NAME=${JOB_NAME:-abalone_$(date +%s)}
JOB_DIR=${JOB_DIR:-$here/jobs/$JOB_NAME}

$MLE jobs submit training "$JOB_NAME" \
  --scale-tier STANDARD_1 \
  --job-dir "$JOB_DIR" \
  --runtime-version 1.4 \
  --region local \
  --builtin \
  --stream-logs \
  -- \
  --model "$here/model.yaml" \
  --train-files "$here/data/abalone_train.csv" \
  --eval-files "$here/data/abalone_test.csv" \
  --train-steps 5000 --train-batch-size 32 \
  --eval-batch-size 850 --eval-steps 1 --learning-rate 0.001

ls "$JOB_DIR/export/abalone"
