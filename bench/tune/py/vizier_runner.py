"""OSS Vizier's default GP-bandit designer on the benchmark's Vizier subset (run by the Vizier
venv, see bench/tune.sh). Appends one JSON line per (problem, seed) to the results file and skips
the pairs already there, so an interrupted run resumes. Each study runs in its own child process
(`--study`): one long-lived process that JIT-compiles study after study ended once with XLA's
"LLVM compilation error: Cannot allocate memory" (see BENCHMARKS.md). Usage:
  vizier_runner.py RESULTS.jsonl SEEDS BUDGET [PROBLEM ...]"""
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suite  # noqa: E402


def versions():
    from importlib.metadata import version

    return {k: version(k) for k in ("google-vizier", "jax", "jaxlib", "equinox", "coco-experiment", "numpy")}


def designer_propose(prob, seed):
    # imported here, in the study's own process: the parent only schedules the studies
    import jax
    from vizier import algorithms as vza
    from vizier import pyvizier as vz
    from vizier._src.algorithms.designers import gp_bandit

    space = vz.SearchSpace()
    for i, (lo, hi) in enumerate(prob.bounds):
        space.root.add_float_param(f"x{i}", lo, hi)
    statement = vz.ProblemStatement(
        search_space=space,
        metric_information=[vz.MetricInformation("obj", goal=vz.ObjectiveMetricGoal.MINIMIZE)])
    designer = gp_bandit.VizierGPBandit(statement, rng=jax.random.PRNGKey(seed))
    told = [0]

    def propose(completed, pending, n):
        assert not pending, "the Vizier runs are sequential"
        new = []
        for x, y in completed[told[0]:]:
            t = vz.Trial(id=len(new) + told[0] + 1, parameters={f"x{i}": v for i, v in enumerate(x)})
            t.complete(vz.Measurement(metrics={"obj": y}))
            new.append(t)
        if new:
            designer.update(vza.CompletedTrials(new), vza.ActiveTrials())
            told[0] += len(new)
        return [[s.parameters[f"x{i}"].value for i in range(len(prob.bounds))] for s in designer.suggest(n)]

    return propose


def main():
    if sys.argv[1] == "--study":
        path, name, seed, budget = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        return study(path, name, seed, budget)
    path, seeds, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    names = sys.argv[4:] or list(suite.VIZIER_SUBSET)
    done = set()
    if os.path.exists(path):
        for line in open(path):
            r = json.loads(line)
            if "problem" in r:
                done.add((r["problem"], r["seed"]))
    else:
        with open(path, "w") as out:
            out.write(json.dumps({"meta": {"command": "bench/tune.sh --rerun-vizier", "versions": versions(),
                                           "date": time.strftime("%Y-%m-%d"), "machine": platform.processor()
                                           or platform.machine(), "cpus": os.cpu_count()}}) + "\n")
    failed = []
    for seed in range(seeds):  # seed-major: an early stop still covers every problem
        for name in names:
            if (name, seed) in done:
                continue
            child = [sys.executable, "-W", "ignore", os.path.abspath(__file__), "--study", path, name, str(seed),
                     str(budget)]
            if subprocess.run(child).returncode != 0:
                failed.append((name, seed))
                print(f"vizier {name} seed {seed}: the study's process failed", file=sys.stderr, flush=True)
    if failed:
        sys.exit(f"{len(failed)} Vizier studies failed; rerun to retry them: {failed}")


def study(path, name, seed, budget):
    prob = suite.problem(name, seed)
    t = time.time()
    rec = suite.run_study(prob, seed, budget, designer_propose(prob, seed))
    rec.update(problem=name, algorithm="vizier_gp_bandit", seed=seed, wall_s=round(time.time() - t, 1))
    with open(path, "a") as out:
        out.write(json.dumps(rec) + "\n")
    print(f"vizier {name} seed {seed}: {rec['wall_s']} s, regret {rec['improved'][-1][1] - prob.optimum:.4g}",
          flush=True)


if __name__ == "__main__":
    main()
