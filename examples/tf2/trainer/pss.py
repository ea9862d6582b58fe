"""A TensorFlow 2 trainer for ParameterServerStrategy, as Cloud ML Engine ran it: the chief is
the coordinator (a custom training loop with ClusterCoordinator), the workers and parameter
servers run `tf.distribute.Server` until the service stops them when the chief ends.

The chief checks that every variable lives on a parameter server and that training moved
them, then writes <job-dir>/pss.json; a variable elsewhere exits 1, so the job FAILS.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--job-dir", default="")
    p.add_argument("--steps", type=int, default=20)
    args, _ = p.parse_known_args()
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if resolver.task_type in ("worker", "ps"):
        server = tf.distribute.Server(
            resolver.cluster_spec(),
            job_name=resolver.task_type,
            task_index=resolver.task_id,
            protocol=resolver.rpc_layer or "grpc",
            start=True,
        )
        print(f"{resolver.task_type}/{resolver.task_id}: serving", flush=True)
        server.join()
        return

    strategy = tf.distribute.ParameterServerStrategy(resolver)
    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    with strategy.scope():
        model = keras.Sequential([keras.layers.Dense(1, input_shape=(4,))])
        optimizer = keras.optimizers.SGD(0.05)
    before = [v.numpy().copy() for v in model.trainable_variables]

    def dataset_fn():
        x = tf.random.stateless_uniform((256, 4), seed=(1, 2))
        y = tf.reduce_sum(x, axis=1, keepdims=True)
        return tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(16)

    per_worker = iter(coordinator.create_per_worker_dataset(dataset_fn))

    @tf.function
    def step(iterator):
        def replica_fn(x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        x, y = next(iterator)
        return strategy.run(replica_fn, args=(x, y))

    losses = [coordinator.schedule(step, args=(per_worker,)) for _ in range(args.steps)]
    coordinator.join()
    loss = float(losses[-1].fetch())
    devices = [v.device for v in model.variables]
    moved = any(
        float(tf.reduce_max(tf.abs(v - b))) > 0 for v, b in zip(model.trainable_variables, before)
    )
    workers = resolver.cluster_spec().num_tasks("worker")
    print(f"chief: {args.steps} steps on {workers} workers, loss {loss:.4f}, variables on {devices}", flush=True)
    if args.job_dir:
        os.makedirs(args.job_dir, exist_ok=True)
        with open(os.path.join(args.job_dir, "pss.json"), "w") as f:
            json.dump({"devices": devices, "moved": moved, "loss": loss, "workers": workers}, f)
    if not all("/job:ps" in d for d in devices):
        sys.exit(f"variables not on the parameter servers: {devices}")
    if not moved:
        sys.exit("training did not change the variables")


if __name__ == "__main__":
    main()
