"""The peer: Optuna's TPE sampler on the same problems, seeds, budgets and noise as
bench/tune/src/main.rs; one JSON line per (problem, seed)."""
import json
import math
import random
import sys

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)


def branin(x):
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi ** 2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x[1] - b * x[0] ** 2 + c * x[0] - r) ** 2 + s * (1 - t) * math.cos(x[0]) + s


A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886], [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
     [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650], [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]
ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(x):
    return -sum(ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j]) ** 2 for j in range(6))) for i in range(4))


def rosenbrock(x):
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


PROBLEMS = [("branin", [(-5, 10), (0, 15)], branin, 0.0, 0.397887),
            ("hartmann6", [(0, 1)] * 6, hartmann6, 0.0, -3.32237),
            ("rosenbrock4", [(-5, 10)] * 4, rosenbrock, 0.0, 0.0),
            ("noisy_branin", [(-5, 10), (0, 15)], branin, 1.0, 0.397887)]

seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
for name, bounds, f, noise, optimum in PROBLEMS:
    for seed in range(seeds):
        rng = random.Random(1000 + seed)
        best = [math.inf]
        regrets = {}

        def objective(trial):
            x = [trial.suggest_float(f"x{i}", lo, hi) for i, (lo, hi) in enumerate(bounds)]
            truth = f(x)
            best[0] = min(best[0], truth)
            if trial.number == 19:
                regrets[20] = best[0] - optimum
            return truth + noise * (rng.random() * 2 - 1) * 1.7320508

        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), direction="minimize")
        study.optimize(objective, n_trials=50)
        print(json.dumps({"problem": name, "algorithm": "optuna_tpe", "seed": seed,
                          "regret20": regrets[20], "regret50": best[0] - optimum}))
