#!/usr/bin/env bash
# Bisong (2019), ch. 41, hyper-tune.sh, with `gcloud ml-engine` replaced by `mle` and the
# book's TensorFlow trainer by the built-in trainer with the Iris spec. JOB_DIR, TRAIN_DATA
# and EVAL_DATA may be gs:// or s3:// URIs.
# Runs hptuning_config.yaml (4 trials, 2 in parallel); `mle jobs describe $JOB_NAME
# --summarize` then lists the trials best first. Needs a running `mle server`.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
MLE=${MLE:-mle}
JOB_NAME=${JOB_NAME:-iris_hp_$(date +%s)}
JOB_DIR=${JOB_DIR:-$here/jobs/$JOB_NAME}
TRAIN_DATA=${TRAIN_DATA:-$here/data/train_data.csv}
EVAL_DATA=${EVAL_DATA:-$here/data/test_data.csv}
HPTUNING_CONFIG=$here/hptuning_config.yaml
TRAIN_STEPS=${TRAIN_STEPS:-5000}
REGION=local

$MLE jobs submit training "$JOB_NAME" \
  --job-dir "$JOB_DIR" \
  --runtime-version 1.8 \
  --python-version 3.5 \
  --config "$HPTUNING_CONFIG" \
  --builtin \
  --region $REGION \
  --stream-logs \
  -- \
  --model "$here/model.yaml" \
  --train-files "$TRAIN_DATA" \
  --eval-files "$EVAL_DATA" \
  --train-steps "$TRAIN_STEPS" \
  --verbosity DEBUG
