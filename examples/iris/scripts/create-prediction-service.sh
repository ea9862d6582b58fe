#!/usr/bin/env bash
# Bisong (2019), ch. 41, create-prediction-service.sh, with `gcloud ml-engine` replaced by `mle`:
# a model and a version from a training export. MODEL_BINARIES (a path, or a gs:// or s3://
# URI) is an export directory (or an export root such as jobs/iris_hp/3/export/iris, whose newest export is
# used), e.g. the best trial of hyper-tune.sh. Needs a running `mle server`.
set -euo pipefail
MLE=${MLE:-mle}
MODEL_NAME=${MODEL_NAME:-iris}
VERSION_NAME=${VERSION_NAME:-v1}
MODEL_BINARIES=${MODEL_BINARIES:?set MODEL_BINARIES to an export directory, e.g. jobs/iris_hp/3/export/iris}
REGION=local

# create the model
$MLE models create "$MODEL_NAME" --regions=$REGION

# create the model version
$MLE versions create "$VERSION_NAME" \
  --model "$MODEL_NAME" \
  --origin "$MODEL_BINARIES" \
  --runtime-version 1.8
