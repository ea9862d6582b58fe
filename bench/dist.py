"""Distributed-training benchmark (issue 3), all in one run, median of several rounds:

1. all-reduce bus bandwidth for 1, 16 and 64 MB with 2 and 4 replicas on loopback, next to the
   raw TCP limits measured by the same script: one loopback stream, and a ring of N processes
   streaming raw TCP to their neighbours at once (the most a ring can move per link here);
2. scaling: examples/s of a compute-bound wide MLP with 1 and 2 replicas (ring all-reduce).
"""
import argparse
import os
import re
import statistics
import subprocess

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
bench = os.path.join(root, "target/release/mle-bench-dist")
mle = os.path.join(root, "target/release/mle")
data = os.path.join(root, "examples/abalone/data")
parser = argparse.ArgumentParser()
parser.add_argument("--rounds", type=int, default=3)
args = parser.parse_args()
port = [22000]  # below the ephemeral range (32768+)


def run(*cmd):
    port[0] += 10
    out = subprocess.run([bench, *map(str, cmd)], capture_output=True, text=True, check=True, timeout=120)
    return float(out.stdout.split()[-1])


def median_of(f):
    return statistics.median(f() for _ in range(args.rounds))


single = median_of(lambda: run("loopback", 64))
print(f"raw TCP, one loopback stream moving 64 MB of distinct memory: {single:.0f} MB/s (median of {args.rounds})")
print(f"{'world':>5} {'MB':>4} {'busbw MB/s':>11} {'ring link MB/s':>15} {'/ring link':>11} {'/one stream':>12}")
for world in (2, 4):
    link = median_of(lambda: run("ringlink", world, 64, 5, port[0]))
    for mb in (1, 16, 64):
        iters = 20 if mb == 1 else 8
        bus = median_of(lambda: run("allreduce", world, mb, iters, port[0]))
        print(f"{world:>5} {mb:>4} {bus:>11.0f} {link:>15.0f} {bus / link:>11.2f} {bus / single:>12.2f}")


def examples_per_sec(replicas):
    common = ["--model", os.path.join(root, "bench/wide.yaml"),
              "--train-files", f"{data}/abalone_train.csv", "--eval-files", f"{data}/abalone_test.csv",
              "--train-steps", "300", "--train-batch-size", "256", "--eval-every-steps", "100000",
              "--no-progress"]
    if replicas == 1:
        cmd = [mle, "train", *common]
    else:
        port[0] += 10
        cmd = [mle, "local", "train", "--distributed", "--builtin", "--worker-count", str(replicas - 1),
               "--parameter-server-count", "0", "--start-port", str(port[0]), "--", *common]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout
    return float(re.findall(r"\((\d+) examples/s\)", out)[-1])


one = median_of(lambda: examples_per_sec(1))
two = median_of(lambda: examples_per_sec(2))
print(f"wide MLP (7-1024-1024-1, batch 256 per replica): 1 replica {one:.0f} examples/s, "
      f"2 replicas {two:.0f} examples/s, scaling efficiency {two / (2 * one):.2f}")
