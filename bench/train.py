"""`mle train` against Keras 3 on JAX on the identical abalone net and data, in the same run,
alternating, median of several runs. Whole-process wall time (start-up and evaluation included)
and the in-process training throughput of each, printed as ratios."""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
data = os.path.join(root, "examples/abalone/data")
mle = os.path.join(root, "target/release/mle")
venv_python = os.path.join(root, "bench/.venv/bin/python")

parser = argparse.ArgumentParser()
parser.add_argument("--runs", type=int, default=5)
parser.add_argument("--epochs", type=int, default=200)
parser.add_argument("--batches", default="32,1024")
args = parser.parse_args()


def timed(cmd, env=None):
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    secs = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{out.stdout}\n{out.stderr}")
    return secs, out.stdout


def run_mle(batch):
    secs, out = timed([
        mle, "train", "--model", os.path.join(root, "examples/abalone/model.yaml"),
        "--train-files", f"{data}/abalone_train.csv", "--eval-files", f"{data}/abalone_test.csv",
        "--num-epochs", str(args.epochs), "--train-batch-size", str(batch),
        "--eval-batch-size", "850", "--eval-every-steps", "100000000", "--no-progress",
    ])
    ex_s = float(re.search(r"\((\d+) examples/s\)", out).group(1))
    rmse = float(re.search(r"rmse ([0-9.]+)", out.splitlines()[-1]).group(1))
    return secs, ex_s, rmse


def run_keras(batch):
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    secs, out = timed([venv_python, os.path.join(root, "bench/keras_abalone.py"), data,
                       str(args.epochs), str(batch)], env)
    m = re.search(r"rmse ([0-9.]+) examples_per_sec (\d+)", out)
    return secs, float(m.group(2)), float(m.group(1))


print(f"abalone net, {args.epochs} epochs of 3320 rows, {args.runs} alternating runs each, median")
print(f"{'batch':>6} {'peer':>10} {'wall s':>8} {'examples/s':>12} {'test rmse':>10}")
for batch in [int(b) for b in args.batches.split(",")]:
    results = {"mle": [], "keras-jax": []}
    for _ in range(args.runs):
        results["mle"].append(run_mle(batch))
        results["keras-jax"].append(run_keras(batch))
    med = {k: [statistics.median(col) for col in zip(*v)] for k, v in results.items()}
    for name, (secs, ex_s, rmse) in med.items():
        print(f"{batch:>6} {name:>10} {secs:>8.2f} {ex_s:>12.0f} {rmse:>10.3f}")
    print(f"{batch:>6} {'ratio':>10} {med['keras-jax'][0] / med['mle'][0]:>7.2f}x "
          f"{med['mle'][1] / med['keras-jax'][1]:>11.2f}x   (mle over keras-jax: wall time, throughput)")
