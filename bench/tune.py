"""Tuner benchmark (issue 19): mle's Bayesian optimisation (sequential and 4 trials at a time),
mle's random search and Optuna's TPE on the same problems, seeds and study loop, plus OSS
Vizier's GP bandit from its stored results (bench/results/tune-vizier.jsonl, refreshed by
`bench/tune.sh --rerun-vizier`). Writes bench/results/tune.jsonl (one line per study), the
tables in bench/results/tune-report.md and the plots in docs/bench/. See bench/tune.sh."""
import argparse
import json
import multiprocessing
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench/tune/py"))
import report  # noqa: E402
import runners  # noqa: E402
import suite  # noqa: E402

MLE = ("mle_bo", "mle_bo_batch4", "mle_random")
PEERS = ("optuna_tpe",)
# Bayesian optimisation's inner choices one at a time (`--ablation`): the tuner before issue 19,
# and that tuner with each change alone.
BEFORE = {"initial": 3, "quasi_random_init": False, "local_candidates": False, "length_scale_prior": False}
DEFAULT = {**BEFORE, "quasi_random_init": True, "local_candidates": True}  # the default the first round chose
ABLATION = {
    "bo_before": BEFORE,
    "bo_quasi_init": {**BEFORE, "quasi_random_init": True},
    "bo_local": {**BEFORE, "local_candidates": True},
    "bo_prior": {**BEFORE, "length_scale_prior": True},
    "bo_all": {"initial": 3, "quasi_random_init": True, "local_candidates": True, "length_scale_prior": True},
    # Second round, against the default that the first round chose: TuRBO's trust region in
    # every space, and from 4 dimensions up.
    "bo_default": DEFAULT,
    "bo_tr": {**DEFAULT, "trust_region_min_dims": 1},
    "bo_tr4": {**DEFAULT, "trust_region_min_dims": 4},
}
ROUNDS = {"bo_before": ("bo_before", "bo_quasi_init", "bo_local", "bo_prior", "bo_all"),
          "bo_default": ("bo_default", "bo_tr", "bo_tr4")}
_server = None


def _work(task):
    global _server
    alg, name, seed, budget = task
    prob = suite.problem(name, seed)
    if alg.startswith("mle_") or alg in ABLATION:
        if _server is None:
            _server = runners.MleServer(os.path.join(ROOT, "target/release/mle-bench-tune"))
        propose = _server.propose_fn(prob, seed, "random" if alg == "mle_random" else "bayesian", ABLATION.get(alg))
    else:
        propose = runners.optuna_propose(prob, seed)
    t = time.time()
    rec = suite.run_study(prob, seed, budget, propose, batch=4 if alg == "mle_bo_batch4" else 1)
    rec.update(problem=name, algorithm=alg, seed=seed, wall_s=round(time.time() - t, 3))
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget", type=int, default=100, help="trials per study (reported at 20, 50 and this)")
    ap.add_argument("--only", choices=("all", "mle", "peers", "ablation") + MLE + PEERS, default="all",
                    help="rerun only these algorithms (a group or one) and keep the other results from the file")
    ap.add_argument("--baseline", choices=tuple(ROUNDS), default="bo_before",
                    help="with --only ablation: the round of variants, named by its baseline")
    ap.add_argument("--problems", nargs="*", help="a subset of problems (default: all 76)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/tune.jsonl"))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    names = args.problems or suite.all_problems()
    if not args.report_only:
        groups = {"all": MLE + PEERS, "mle": MLE, "peers": PEERS, "ablation": ROUNDS[args.baseline]}
        algs = groups.get(args.only, (args.only,))
        tasks = [(a, p, s, args.budget) for a in algs for p in names for s in range(args.seeds)
                 if a != "mle_bo_batch4" or p in suite.VIZIER_SUBSET]
        kept = []
        if args.only != "ablation" and os.path.exists(args.out):
            # only the (algorithm, problem) pairs rerun are replaced; --problems keeps the others
            rerun = {(a, p) for a, p, _, _ in tasks}
            kept = [r for r in map(json.loads, open(args.out))
                    if "problem" in r and (r["algorithm"], r["problem"]) not in rerun]
        t = time.time()
        with multiprocessing.Pool(args.jobs) as pool:
            fresh = []
            for i, rec in enumerate(pool.imap_unordered(_work, tasks, chunksize=4)):
                fresh.append(rec)
                if (i + 1) % 200 == 0 or i + 1 == len(tasks):
                    print(f"{i + 1}/{len(tasks)} studies, {time.time() - t:.0f} s", file=sys.stderr, flush=True)
        with open(args.out, "w") as out:
            for rec in sorted(kept + fresh, key=lambda r: (r["algorithm"], r["problem"], r["seed"])):
                out.write(json.dumps(rec) + "\n")
    records = [r for r in map(json.loads, open(args.out)) if "problem" in r]
    if args.only == "ablation":
        return report.ablation(records, os.path.splitext(args.out)[0] + ".md", args.baseline)
    vizier = os.path.join(ROOT, "bench/results/tune-vizier.jsonl")
    if os.path.exists(vizier):
        records += [r for r in map(json.loads, open(vizier)) if "problem" in r]
    report.write(records, os.path.join(ROOT, "bench/results/tune-report.md"), os.path.join(ROOT, "docs/bench"))


if __name__ == "__main__":
    main()
