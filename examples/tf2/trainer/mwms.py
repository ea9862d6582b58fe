"""A TensorFlow 2 trainer written for Cloud ML Engine: tf.keras (tf_keras, TF_USE_LEGACY_KERAS=1)
under MultiWorkerMirroredStrategy, which reads the cluster from TF_CONFIG and needs the primary
to be named `chief` (runtime versions 2.1 and later).

Every replica trains in sync; the chief checks that `num_replicas_in_sync` is the number of
trainers in TF_CONFIG (or --expect-replicas) and writes <job-dir>/mwms.json. A wrong count
exits 1, so the job FAILS.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--job-dir", default="")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--expect-replicas", type=int, default=0)
    args, _ = p.parse_known_args()
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = tf_config.get("cluster", {})
    task = tf_config.get("task", {})
    trainers = sum(len(cluster.get(r, [])) for r in ("chief", "master", "worker")) or 1
    expect = args.expect_replicas or trainers

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    n = strategy.num_replicas_in_sync
    print(f"task {task.get('type', 'single')}/{task.get('index', 0)}: num_replicas_in_sync={n}", flush=True)
    with strategy.scope():
        model = keras.Sequential(
            [keras.layers.Dense(8, activation="relu", input_shape=(4,)), keras.layers.Dense(1)]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    rng = np.random.RandomState(0)
    x = rng.rand(256, 4).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(16 * n).with_options(options)
    history = model.fit(ds, epochs=1, steps_per_epoch=args.steps, verbose=2)
    loss = float(history.history["loss"][-1])
    primary = task.get("type") in (None, "chief", "master")
    if primary:
        print(f"chief: {n} replicas in sync (expected {expect}), final loss {loss:.4f}", flush=True)
        if args.job_dir:
            os.makedirs(args.job_dir, exist_ok=True)
            with open(os.path.join(args.job_dir, "mwms.json"), "w") as f:
                json.dump({"num_replicas_in_sync": n, "loss": loss, "task": task}, f)
        if n != expect:
            sys.exit(f"expected {expect} replicas in sync, got {n}")


if __name__ == "__main__":
    main()
