#!/usr/bin/env bash
# Bisong (2019), ch. 41, distributed-training.sh, with `gcloud ml-engine` replaced by `mle`
# and the book's TensorFlow trainer by the built-in trainer with the Iris spec (the same
# DNNClassifier); JOB_DIR, TRAIN_DATA and EVAL_DATA may be gs:// or s3:// URIs. Needs a running `mle server`.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
MLE=${MLE:-mle}
JOB_NAME=${JOB_NAME:-iris_dist_$(date +%s)}
JOB_DIR=${JOB_DIR:-$here/jobs/$JOB_NAME}
TRAIN_DATA=${TRAIN_DATA:-$here/data/train_data.csv}
EVAL_DATA=${EVAL_DATA:-$here/data/test_data.csv}
REGION=local

$MLE jobs submit training "$JOB_NAME" \
  --job-dir "$JOB_DIR" \
  --scale-tier STANDARD_1 \
  --runtime-version 1.8 \
  --python-version 3.5 \
  --builtin \
  --region $REGION \
  --stream-logs \
  -- \
  --model "$here/model.yaml" \
  --train-files "$TRAIN_DATA" \
  --eval-files "$EVAL_DATA" \
  --train-steps 5000 \
  --verbosity DEBUG
