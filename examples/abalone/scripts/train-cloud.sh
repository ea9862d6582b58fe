#!/usr/bin/env bash
# The abalone tutorial's cloud training step with `gcloud ml-engine` replaced by `mle`: the
# built-in trainer on STANDARD_1 (1 master, 4 workers, 3 parameter servers), streaming its logs until it ends. Needs a running `mle server` (MLE_SERVER,
# MLE_DATA_DIR or --token for the CLI to find it).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
MLE=${MLE:-mle}
JOB_NAME=${JOB_NAME:-abalone_$(date +%s)}
JOB_DIR=${JOB_DIR:-$here/jobs/$JOB_NAME}
# The tutorial's gs://smiling-beaming-abalone/... paths work as they are (mle server reads
# buckets); the defaults are the copies in this repository.
TRAIN_DATA=${TRAIN_DATA:-$here/data/abalone_train.csv}
EVAL_DATA=${EVAL_DATA:-$here/data/abalone_test.csv}

$MLE jobs submit training "$JOB_NAME" \
  --scale-tier STANDARD_1 \
  --job-dir "$JOB_DIR" \
  --runtime-version 1.4 \
  --region local \
  --builtin \
  --stream-logs \
  -- \
  --model "$here/model.yaml" \
  --train-files "$TRAIN_DATA" \
  --eval-files "$EVAL_DATA" \
  --train-steps 5000 --train-batch-size 32 \
  --eval-batch-size 850 --eval-steps 1 --learning-rate 0.001

case $JOB_DIR in
  gs://* | s3://*) ;;
  *) ls "$JOB_DIR/export/abalone" ;;
esac
