"""The tuner benchmark's problems and its study loop, shared by every algorithm's runner.

Problems: the four originals (Branin, Hartmann-6, Rosenbrock-4 and a noisy Branin; test functions
from Surjanovic & Bingham, "Virtual Library of Simulation Experiments") and the 24 noiseless BBOB
functions (Hansen, Finck, Ros & Auger, "Real-Parameter Black-Box Optimization Benchmarking 2009:
Noiseless Functions Definitions", INRIA RR-6829) at dimensions 2, 4 and 8 on COCO's box [-5, 5]^d,
evaluated by the `coco-experiment` package itself (`cocoex.BareProblem`, which carries COCO's
instance transformations). Seed s runs BBOB instance s + 1, so every algorithm sees the same
instances.

A study is minimisation; its record keeps the best *true* value as it improved (the noisy
problem's observations carry noise, its record does not), and the mean seconds per proposal.
"""
import math
import random
import time

BBOB_NAMES = {
    1: "sphere", 2: "ellipsoid", 3: "rastrigin", 4: "buche_rastrigin", 5: "linear_slope",
    6: "attractive_sector", 7: "step_ellipsoid", 8: "rosenbrock", 9: "rosenbrock_rotated",
    10: "ellipsoid_rotated", 11: "discus", 12: "bent_cigar", 13: "sharp_ridge",
    14: "different_powers", 15: "rastrigin_rotated", 16: "weierstrass", 17: "schaffer_f7",
    18: "schaffer_f7_ill", 19: "griewank_rosenbrock", 20: "schwefel", 21: "gallagher101",
    22: "gallagher21", 23: "katsuura", 24: "lunacek",
}
BBOB_DIMS = (2, 4, 8)
ORIGINALS = ("branin", "hartmann6", "rosenbrock4", "noisy_branin")
# The fixed subset OSS Vizier runs on (it costs minutes per study): the originals and four BBOB
# functions of different character at dimension 4 — separable multimodal (f3), moderately
# conditioned (f8), ill-conditioned (f10) and weakly structured multimodal (f21).
VIZIER_SUBSET = ORIGINALS + ("bbob_f03_d4", "bbob_f08_d4", "bbob_f10_d4", "bbob_f21_d4")


def branin(x):
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi ** 2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x[1] - b * x[0] ** 2 + c * x[0] - r) ** 2 + s * (1 - t) * math.cos(x[0]) + s


_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
_P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886], [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
      [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650], [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]
_ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(x):
    return -sum(_ALPHA[i] * math.exp(-sum(_A[i][j] * (x[j] - _P[i][j]) ** 2 for j in range(6))) for i in range(4))


def rosenbrock(x):
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


class Problem:
    """A box, a function to minimise, its minimum, and observation noise (uniform, unit variance
    times `noise`)."""

    def __init__(self, name, bounds, f, optimum, noise=0.0, group="original", dim=None):
        self.name, self.bounds, self.f, self.optimum, self.noise = name, bounds, f, optimum, noise
        self.group, self.dim = group, dim or len(bounds)

    def scale(self, samples=2000):
        """The normaliser of regret: the median value of uniform random points above the minimum
        (seeded, so every algorithm divides by the same number)."""
        rng = random.Random(12345)
        vals = sorted(self.f([rng.uniform(lo, hi) for lo, hi in self.bounds]) for _ in range(samples))
        return max(vals[samples // 2] - self.optimum, 1e-12)


def problem(name, seed):
    """The problem `name` as seed `seed` sees it (BBOB: instance seed + 1)."""
    if name == "branin" or name == "noisy_branin":
        return Problem(name, [(-5.0, 10.0), (0.0, 15.0)], branin, 0.397887, 1.0 if name == "noisy_branin" else 0.0)
    if name == "hartmann6":
        return Problem(name, [(0.0, 1.0)] * 6, hartmann6, -3.32237)
    if name == "rosenbrock4":
        return Problem(name, [(-5.0, 10.0)] * 4, rosenbrock, 0.0)
    if name.startswith("bbob_f"):
        import cocoex

        fid, dim = int(name[6:8]), int(name.split("_d")[1])
        p = cocoex.BareProblem("bbob", fid, dim, seed + 1)
        return Problem(name, [(-5.0, 5.0)] * dim, lambda x: float(p(x)), float(p.best_value()),
                       group="bbob", dim=dim)
    raise KeyError(name)


def all_problems():
    return list(ORIGINALS) + [f"bbob_f{f:02d}_d{d}" for d in BBOB_DIMS for f in range(1, 25)]


def run_study(prob, seed, budget, propose, batch=1):
    """Runs `budget` trials; `propose(completed, pending, n)` returns n points (lists of floats)
    given completed [(x, observed)] and pending [x]. With `batch` > 1, trials run `batch` at a
    time, as a study with maxParallelTrials does: a slot is proposed with the others pending."""
    noise = random.Random(1000 + seed)
    completed, best, seconds = [], [], []
    best_true = math.inf
    pending = []
    while len(completed) < budget:
        want = min(batch, budget - len(completed)) - len(pending)
        if want > 0:
            t = time.perf_counter()
            pending += propose(completed, list(pending), want)
            seconds.append((time.perf_counter() - t) / want)
        x = pending.pop(0)
        truth = prob.f(x)
        best_true = min(best_true, truth)
        completed.append((x, truth + prob.noise * (noise.random() * 2 - 1) * 1.7320508))
        best.append(best_true)
    improved = [[t + 1, v] for t, v in enumerate(best) if t == 0 or v < best[t - 1]]
    return {"improved": improved, "propose_s": sum(seconds) / len(seconds)}


def best_curve(rec, budget):
    """A record's best value after each of its first `budget` trials (records store the trials
    where the best improved, `[[trial, value], ...]`, or the whole curve as `best`)."""
    if "best" in rec:
        return rec["best"][:budget]
    out, k, cur = [], 0, None
    for t in range(1, budget + 1):
        while k < len(rec["improved"]) and rec["improved"][k][0] <= t:
            cur = rec["improved"][k][1]
            k += 1
        out.append(cur)
    return out
