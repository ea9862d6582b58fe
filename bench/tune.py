"""Tuner benchmark (issue 5): median best-found regret after 20 and 50 trials over seeds, for
our Bayesian optimisation, our random search and Optuna's TPE, in the same run."""
import collections
import json
import os
import statistics
import subprocess
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
seeds = sys.argv[1] if len(sys.argv) > 1 else "10"
rows = []
for cmd in ([os.path.join(root, "target/release/mle-bench-tune"), seeds],
            [os.path.join(root, "bench/.venv/bin/python"), os.path.join(root, "bench/tune_optuna.py"), seeds]):
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows += [json.loads(line) for line in out.splitlines() if line.strip()]
by = collections.defaultdict(list)
latency = {}
for r in rows:
    by[(r["problem"], r["algorithm"])].append(r)
    if r.get("propose100_ms", -1) >= 0:
        latency[r["problem"]] = r["propose100_ms"]
problems = list(dict.fromkeys(r["problem"] for r in rows))
algs = ["mle_bo", "mle_random", "optuna_tpe"]
print(f"median regret over {seeds} seeds (lower is better)")
print(f"{'problem':<14}" + "".join(f"{a + ' @20':>16}{a + ' @50':>16}" for a in algs))
wins = 0
for p in problems:
    med = {a: (statistics.median(r["regret20"] for r in by[(p, a)]), statistics.median(r["regret50"] for r in by[(p, a)])) for a in algs}
    print(f"{p:<14}" + "".join(f"{med[a][0]:>16.4g}{med[a][1]:>16.4g}" for a in algs))
    if med["mle_bo"][1] < med["optuna_tpe"][1] and med["mle_bo"][1] < med["mle_random"][1]:
        wins += 1
print(f"mle_bo beats TPE and random at 50 trials on {wins} of {len(problems)} problems")
print("time to propose with 100 completed trials (mle_bo): " + ", ".join(f"{p} {ms:.1f} ms" for p, ms in latency.items()))
