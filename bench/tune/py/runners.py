"""The algorithms of the tuner benchmark as `propose(completed, pending, n)` functions: mle's
Bayesian optimisation and random search (through `mle-bench-tune serve`, the tuner crate itself)
and Optuna's TPE (ask and tell). OSS Vizier has its own runner (vizier_runner.py), in its own venv.
"""
import json
import subprocess


class MleServer:
    """One `mle-bench-tune serve` process, asked one proposal request per line."""

    def __init__(self, binary):
        self.proc = subprocess.Popen([binary, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def propose_fn(self, prob, seed, algorithm, options=None):
        def propose(completed, pending, n):
            ask = {"bounds": prob.bounds, "algorithm": algorithm, "seed": seed,
                   "completed": [[x, y] for x, y in completed], "pending": pending, "n": n}
            if options is not None:
                ask["options"] = options
            self.proc.stdin.write(json.dumps(ask) + "\n")
            self.proc.stdin.flush()
            answer = json.loads(self.proc.stdout.readline())
            if "error" in answer:
                raise RuntimeError(answer["error"])
            return answer["points"]

        return propose


def optuna_propose(prob, seed):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), direction="minimize")
    asked = []

    def propose(completed, pending, n):
        assert not pending and n == 1, "the TPE runs are sequential"
        if asked:
            study.tell(asked.pop(), completed[-1][1])
        trial = study.ask()
        asked.append(trial)
        return [[trial.suggest_float(f"x{i}", lo, hi) for i, (lo, hi) in enumerate(prob.bounds)]]

    return propose
