"""`mle train` (native engine, and burn for comparison) against the hand-written limit
(bench/limit: a plain f32 loop for this one net) and Keras 3 on JAX, on the identical abalone
net and data, in the same run, alternating, median of several runs. Whole-process wall time
(start-up and evaluation included), the in-process training throughput of each, and the
ratios mle / limit and mle / Keras-JAX. Then `bench/wide.yaml` (two 1024-wide layers) on both
mle engines, and mle's peak RSS on abalone."""
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
limit = os.path.join(root, "target/release/mle-bench-limit")
venv_python = os.path.join(root, "bench/.venv/bin/python")

parser = argparse.ArgumentParser()
parser.add_argument("--runs", type=int, default=5)
parser.add_argument("--epochs", type=int, default=200)
parser.add_argument("--batches", default="32,1024")
parser.add_argument("--wide-epochs", type=float, default=3)
args = parser.parse_args()


def timed(cmd, env=None):
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    secs = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{out.stdout}\n{out.stderr}")
    return secs, out.stdout, out.stderr


def run_mle(batch, engine, model="examples/abalone/model.yaml", epochs=None):
    secs, out, _ = timed([
        mle, "train", "--model", os.path.join(root, model),
        "--train-files", f"{data}/abalone_train.csv", "--eval-files", f"{data}/abalone_test.csv",
        "--num-epochs", str(epochs or args.epochs), "--train-batch-size", str(batch),
        "--eval-batch-size", "850", "--eval-every-steps", "100000000", "--no-progress",
        "--engine", engine,
    ])
    ex_s = float(re.search(r"\((\d+) examples/s\)", out).group(1))
    rmse = float(re.search(r"rmse ([0-9.]+)", out.splitlines()[-1]).group(1))
    return secs, ex_s, rmse


def run_limit(batch):
    secs, out, _ = timed([limit, f"{data}/abalone_train.csv", f"{data}/abalone_test.csv",
                          str(args.epochs), str(batch)])
    m = re.search(r"rmse ([0-9.]+) examples_per_sec (\d+)", out)
    return secs, float(m.group(2)), float(m.group(1))


def run_keras(batch):
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    secs, out, _ = timed([venv_python, os.path.join(root, "bench/keras_abalone.py"), data,
                          str(args.epochs), str(batch)], env)
    m = re.search(r"rmse ([0-9.]+) examples_per_sec (\d+)", out)
    return secs, float(m.group(2)), float(m.group(1))


peers = {
    "mle": lambda b: run_mle(b, "native"),
    "mle-burn": lambda b: run_mle(b, "burn"),
    "limit": run_limit,
    "keras-jax": run_keras,
}
print(f"abalone net, {args.epochs} epochs of 3320 rows, {args.runs} alternating runs each, median")
print(f"| batch | peer | wall s | examples/s | test RMSE |\n|---:|---|---:|---:|---:|")
for batch in [int(b) for b in args.batches.split(",")]:
    results = {k: [] for k in peers}
    for _ in range(args.runs):
        for name, run in peers.items():
            results[name].append(run(batch))
    med = {k: [statistics.median(col) for col in zip(*v)] for k, v in results.items()}
    for name, (secs, ex_s, rmse) in med.items():
        print(f"| {batch} | {name} | {secs:.2f} | {ex_s:.0f} | {rmse:.3f} |")
    print(f"| {batch} | **mle / limit** | | **{med['mle'][1] / med['limit'][1]:.2f}** | |")
    print(f"| {batch} | **mle / keras-jax** | **{med['keras-jax'][0] / med['mle'][0]:.1f}× faster** "
          f"| **{med['mle'][1] / med['keras-jax'][1]:.1f}×** | |")
    print(f"| {batch} | mle / mle-burn | {med['mle-burn'][0] / med['mle'][0]:.1f}× faster "
          f"| {med['mle'][1] / med['mle-burn'][1]:.2f}× | |")

print(f"\nbench/wide.yaml (7 → 1024 → 1024 → 1), {args.wide_epochs} epochs, {args.runs} runs, median")
print("| batch | engine | examples/s |\n|---:|---|---:|")
for batch in [int(b) for b in args.batches.split(",")]:
    for engine in ["native", "burn"]:
        runs = [run_mle(batch, engine, "bench/wide.yaml", args.wide_epochs)[1] for _ in range(args.runs)]
        print(f"| {batch} | {engine} | {statistics.median(runs):.0f} |")

_, _, err = timed(["/usr/bin/time", "-f", "maxrss_kb %M", mle, "train", "--model",
                   os.path.join(root, "examples/abalone/model.yaml"), "--train-files",
                   f"{data}/abalone_train.csv", "--eval-files", f"{data}/abalone_test.csv",
                   "--num-epochs", str(args.epochs), "--train-batch-size", "32", "--no-progress"])
rss = int(re.search(r"maxrss_kb (\d+)", err).group(1))
print(f"\npeak RSS of mle train on abalone (batch 32, {args.epochs} epochs): {rss / 1024:.1f} MiB")
