"""The peer: the abalone net of the CMLE tutorial in Keras 3 on JAX, trained on the same CSV
files with the same batch size and epochs as `mle train`. Prints the test RMSE and the
training throughput measured inside the process (fit only)."""
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

data, epochs, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
train = np.loadtxt(f"{data}/abalone_train.csv", delimiter=",", dtype=np.float32)
test = np.loadtxt(f"{data}/abalone_test.csv", delimiter=",", dtype=np.float32)
keras.utils.set_random_seed(42)
model = keras.Sequential(
    [
        keras.Input(shape=(7,)),
        keras.layers.Dense(10, activation="relu"),
        keras.layers.Dense(10, activation="relu"),
        keras.layers.Dense(1),
    ]
)
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.001), loss="mse",
              metrics=[keras.metrics.RootMeanSquaredError()])
start = time.perf_counter()
model.fit(train[:, :7], train[:, 7], epochs=epochs, batch_size=batch, shuffle=True, verbose=0)
fit_secs = time.perf_counter() - start
_, rmse = model.evaluate(test[:, :7], test[:, 7], batch_size=850, verbose=0)
print(f"rmse {rmse:.4f} examples_per_sec {epochs * len(train) / fit_secs:.0f}")
