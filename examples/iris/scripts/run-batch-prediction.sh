#!/usr/bin/env bash
# Bisong (2019), ch. 41, run-batch-prediction.sh, with `gcloud ml-engine` replaced by `mle`:
# predict every row of the hold-out file with the deployed model (run
# create-prediction-service.sh first); INPUT_PATHS (patterns allowed) and OUTPUT_PATH may be
# gs:// or s3:// URIs. Results: $OUTPUT_PATH/prediction.results-00000-of-00001,
# one JSON line per input row. Needs a running `mle server`.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
MLE=${MLE:-mle}
JOB_NAME=${JOB_NAME:-iris_prediction_$(date +%s)}
MODEL_NAME=${MODEL_NAME:-iris}
INPUT_PATHS=${INPUT_PATHS:-$here/data/hold_out_test.csv}
OUTPUT_PATH=${OUTPUT_PATH:-$here/jobs/$JOB_NAME}
DATA_FORMAT=text
REGION=local

$MLE jobs submit prediction "$JOB_NAME" \
  --model "$MODEL_NAME" \
  --input-paths "$INPUT_PATHS" \
  --output-path "$OUTPUT_PATH" \
  --region $REGION \
  --data-format $DATA_FORMAT \
  --stream-logs
