"""Tables, summary scores and plots of the tuner benchmark.

Normalised regret of a study after t trials: (best true value − the problem's minimum) divided by
the problem's scale (the median value of 2,000 uniform random points minus the minimum, per
instance; suite.Problem.scale), so 1 is "as good as a typical random point" and 0 is optimal.

Summary scores, as the Vizier authors report them:
- optimality-gap ratio to random search (Golovin et al., "Google Vizier: A Service for Black-Box
  Optimization", KDD 2017, §5): per problem, an algorithm's median regret over the random search's
  median regret at the same budget; summarised by the median and the geometric mean over problems;
  below 1 beats random search.
- log-efficiency against a baseline (OSS Vizier's `LogEfficiencyConvergenceCurveComparator`,
  re-implemented here from its documented definition): targets are the median over both
  algorithms' runs of log10 regret after each trial; for each target, log(1 + trials the baseline's
  median curve needs to reach it) − log(1 + trials the compared one needs), each term clipped to
  ±1 (never reached counts as the clip); the score is the median over targets. Positive: the
  compared algorithm needs fewer trials (e^score times fewer).
"""
import math
import os
import statistics

import suite

ORDER = ("mle_bo", "mle_bo_batch4", "mle_random", "optuna_tpe", "vizier_gp_bandit")
LABEL = {"mle_bo": "mle BO", "mle_bo_batch4": "mle BO ×4", "mle_random": "random",
         "optuna_tpe": "Optuna TPE", "vizier_gp_bandit": "Vizier GP bandit"}
BUDGETS = (20, 50, 100)
FLOOR = 1e-9  # regrets below this count as solved (and as this on log axes)

_scales = {}


def scale(name, seed):
    key = (name, seed if name.startswith("bbob") else 0)
    if key not in _scales:
        p = suite.problem(name, seed)
        _scales[key] = (p.optimum, p.scale())
    return _scales[key]


def regret_curve(rec, budget):
    opt, sc = scale(rec["problem"], rec["seed"])
    return [max(v - opt, 0.0) / sc for v in suite.best_curve(rec, budget)]


def _budget(rec):
    return rec["improved"][-1][0] if "improved" in rec else len(rec["best"])


class Results:
    def __init__(self, records):
        self.runs = {}  # (alg, problem) -> [record]
        for r in records:
            self.runs.setdefault((r["algorithm"], r["problem"]), []).append(r)
        self.algs = [a for a in ORDER if any(k[0] == a for k in self.runs)]
        self.problems = list(dict.fromkeys(p for p in suite.all_problems() if any(k[1] == p for k in self.runs)))
        self._len = {}
        for (a, p), rs in self.runs.items():
            # a record knows its trials only up to its last improvement; the run lengths are
            # the benchmark's: Vizier's budget is 50, everyone else's the --budget (100)
            self._len[(a, p)] = 50 if a == "vizier_gp_bandit" else max(BUDGETS[-1], max(map(_budget, rs)))

    def has(self, alg, prob, budget):
        return (alg, prob) in self.runs and self._len[(alg, prob)] >= budget

    def curves(self, alg, prob, budget):
        return [regret_curve(r, budget) for r in self.runs[(alg, prob)]]

    def median(self, alg, prob, budget):
        return statistics.median(c[-1] for c in self.curves(alg, prob, budget))

    def seeds(self, alg, prob):
        return len(self.runs.get((alg, prob), []))


def gap_ratio(res, alg, budget, problems):
    ratios = [(res.median(alg, p, budget) + FLOOR) / (res.median("mle_random", p, budget) + FLOOR)
              for p in problems if res.has(alg, p, budget) and res.has("mle_random", p, budget)]
    if not ratios:
        return None
    return statistics.median(ratios), math.exp(statistics.fmean(math.log(r) for r in ratios)), len(ratios)


def _log10(v):
    return math.log10(max(v, FLOOR))


def log_efficiency(base, comp):
    """OSS Vizier's log-efficiency of curves `comp` against `base` (lists of regret curves)."""
    t_max = min(len(base[0]), len(comp[0]))
    base = [[_log10(v) for v in c[:t_max]] for c in base]
    comp = [[_log10(v) for v in c[:t_max]] for c in comp]
    med = lambda cs: [statistics.median(c[t] for c in cs) for t in range(t_max)]  # noqa: E731
    target = med(base + comp)
    mb, mc = med(base), med(comp)

    def eff(curve):
        out = []
        for t, y in enumerate(target):
            hit = next((s for s, v in enumerate(curve) if v <= y), None)
            e = -1.0 if hit is None else math.log(1 + t + 1) - math.log(1 + hit + 1)
            out.append(min(max(e, -1.0), 1.0))
        return out

    return statistics.median(c - b for b, c in zip(eff(mb), eff(mc)))


def log_eff_summary(res, base, comp, budget, problems):
    scores = [log_efficiency(res.curves(base, p, budget), res.curves(comp, p, budget))
              for p in problems if res.has(base, p, budget) and res.has(comp, p, budget)]
    return (statistics.median(scores), len(scores)) if scores else None


def wins(res, a, b, budget, problems):
    """(a ahead, tied, b ahead) in median regret at `budget` over `problems`."""
    w = t = l = 0
    for p in problems:
        if not (res.has(a, p, budget) and res.has(b, p, budget)):
            continue
        x, y = res.median(a, p, budget), res.median(b, p, budget)
        if abs(x - y) <= FLOOR or (x < FLOOR and y < FLOOR):
            t += 1
        elif x < y:
            w += 1
        else:
            l += 1
    return w, t, l


def write(records, md_path, plot_dir):
    res = Results(records)
    bbob = [p for p in res.problems if p.startswith("bbob")]
    orig = [p for p in res.problems if p in suite.ORIGINALS]
    subset = [p for p in suite.VIZIER_SUBSET if p in res.problems]
    lines = ["# Tuner benchmark report", "",
             "Written by `bench/tune.sh`; definitions in `bench/tune/py/report.py`. Median normalised regret"
             " over seeds (lower is better; 0 is the optimum, 1 a typical random point).", ""]
    summary = []
    for budget in BUDGETS:
        if bbob and res.has("mle_bo", bbob[0], budget) and res.has("optuna_tpe", bbob[0], budget):
            w, t, l = wins(res, "mle_bo", "optuna_tpe", budget, bbob)
            summary.append(f"- BBOB at {budget} trials: mle BO ahead of TPE on {w} of {w + t + l} (function, dimension)"
                           f" cells ({100 * w / max(w + t + l, 1):.0f} %), tied on {t}, behind on {l}.")
    for budget in (20, 50):
        w, t, l = wins(res, "mle_bo", "optuna_tpe", budget, orig)
        summary.append(f"- Originals at {budget} trials: mle BO ahead of TPE on {w} of {len(orig)} (tied {t}).")
    if "vizier_gp_bandit" in res.algs:
        w, t, l = wins(res, "mle_bo", "vizier_gp_bandit", 50, subset)
        summary.append(f"- Vizier subset at 50 trials: mle BO's median regret at most Vizier's on {w + t} of"
                       f" {w + t + l} problems (ahead {w}, tied {t}, behind {l}); Vizier's seeds per problem run:"
                       f" {sorted({res.seeds('vizier_gp_bandit', p) for p in subset} - {0})}.")
        # the same comparison on the seeds Vizier ran (its studies are few): mle BO restricted to them
        vseeds = {(r["problem"], r["seed"]) for r in records if r["algorithm"] == "vizier_gp_bandit"}
        same = Results([r for r in records if r["algorithm"] == "vizier_gp_bandit"
                        or (r["algorithm"] == "mle_bo" and (r["problem"], r["seed"]) in vseeds)])
        if "mle_bo" in same.algs:
            w, t, l = wins(same, "mle_bo", "vizier_gp_bandit", 50, subset)
            summary.append(f"- The same on Vizier's seeds only: at most Vizier's on {w + t} of {w + t + l}"
                           f" (ahead {w}, tied {t}, behind {l}).")
    ms = {a: statistics.median(1000 * r["propose_s"] for (a2, _), rs in res.runs.items() if a2 == a for r in rs)
          for a in res.algs}
    summary.append("- Median time per proposal (mean over a study): " +
                   ", ".join(f"{LABEL[a]} {ms[a]:.3g} ms" for a in res.algs) + ".")
    if "vizier_gp_bandit" in res.algs:
        m_sub = statistics.median(1000 * r["propose_s"] for p in subset for r in res.runs.get(("mle_bo", p), []))
        summary.append(f"- On the Vizier subset: mle BO {m_sub:.3g} ms per proposal over 100-trial studies, Vizier"
                       f" {ms['vizier_gp_bandit']:.4g} ms over 50-trial ones: {ms['vizier_gp_bandit'] / m_sub:.0f}× faster.")
    lines += ["## Summary", ""] + summary + [""]

    lines += ["## Scores against random search", "",
              "Optimality-gap ratio to random search (median / geometric mean over problems; < 1 is better) and"
              " log-efficiency against random search (median over problems; > 0 is better).", "",
              "| algorithm | problems | budget | gap ratio median | gap ratio geo-mean | log-efficiency |",
              "|---|---|---:|---:|---:|---:|"]
    for group, probs in (("BBOB", bbob), ("originals", orig), ("Vizier subset", subset)):
        for budget in BUDGETS:
            for a in res.algs:
                if a == "mle_random":
                    continue
                g = gap_ratio(res, a, budget, probs)
                le = log_eff_summary(res, "mle_random", a, budget, probs)
                if g:
                    lines.append(f"| {LABEL[a]} | {group} ({g[2]}) | {budget} | {g[0]:.3g} | {g[1]:.3g} | "
                                 f"{'' if le is None else f'{le[0]:+.2f}'} |")
    lines += ["", "## mle BO against its peers", "",
              "Log-efficiency of mle BO against each peer as the baseline (> 0: mle needs fewer trials), median"
              " over problems.", "", "| peer | problems | budget | log-efficiency | ahead / tied / behind |",
              "|---|---|---:|---:|---|"]
    for peer, probs in (("optuna_tpe", bbob), ("optuna_tpe", orig), ("vizier_gp_bandit", subset)):
        for budget in BUDGETS:
            le = log_eff_summary(res, peer, "mle_bo", budget, probs)
            if le:
                w, t, l = wins(res, "mle_bo", peer, budget, probs)
                grp = "BBOB" if probs is bbob else "originals" if probs is orig else "Vizier subset"
                lines.append(f"| {LABEL[peer]} | {grp} ({le[1]}) | {budget} | {le[0]:+.2f} | {w} / {t} / {l} |")
    for budget in BUDGETS:
        algs = [a for a in res.algs if any(res.has(a, p, budget) for p in res.problems)]
        lines += ["", f"## Median normalised regret at {budget} trials", "",
                  "| problem | " + " | ".join(LABEL[a] for a in algs) + " |",
                  "|---|" + "---:|" * len(algs)]
        for p in res.problems:
            cells = []
            vals = {a: res.median(a, p, budget) for a in algs if res.has(a, p, budget)}
            best = min(vals.values()) if vals else None
            for a in algs:
                if a in vals:
                    s = f"{vals[a]:.3g} ({res.seeds(a, p)})" if a == "vizier_gp_bandit" else f"{vals[a]:.3g}"
                    cells.append(f"**{s}**" if vals[a] <= best + FLOOR else s)
                else:
                    cells.append("")
            lines.append(f"| {p} | " + " | ".join(cells) + " |")
    seeds = sorted({len(rs) for (a, _), rs in res.runs.items() if a != "vizier_gp_bandit"})
    lines += ["", f"Seeds per cell: {seeds} (Vizier: the count in brackets). Bold: the best median in the row.", ""]
    with open(md_path, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(["## Summary"] + summary))
    plots(res, subset, bbob, plot_dir)


def plots(res, subset, bbob, plot_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(plot_dir, exist_ok=True)
    colors = {"mle_bo": "C0", "mle_bo_batch4": "C9", "mle_random": "C7", "optuna_tpe": "C1", "vizier_gp_bandit": "C3"}
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5), constrained_layout=True)
    for ax, p in zip(axes.flat, subset):
        for a in res.algs:
            if (a, p) not in res.runs:
                continue
            budget = 50 if a == "vizier_gp_bandit" else BUDGETS[-1]
            cs = res.curves(a, p, budget)
            med = [max(statistics.median(c[t] for c in cs), FLOOR) for t in range(budget)]
            ax.plot(range(1, budget + 1), med, color=colors[a], label=f"{LABEL[a]} ({len(cs)})")
        ax.set_yscale("log")
        ax.set_title(p)
        ax.set_xlabel("trials")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("median normalised regret")
    axes[1][0].set_ylabel("median normalised regret")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Best-found regret on the Vizier subset (median over seeds; seeds in brackets)")
    fig.savefig(os.path.join(plot_dir, "tune-vizier-subset.png"), dpi=80)
    plt.close(fig)
    dims = sorted({int(p.split("_d")[1]) for p in bbob})
    if not dims:
        return
    fig, axes = plt.subplots(1, len(dims), figsize=(5 * len(dims), 4), constrained_layout=True, squeeze=False)
    for ax, d in zip(axes[0], dims):
        probs = [p for p in bbob if p.endswith(f"_d{d}")]
        for a in res.algs:
            if not all(res.has(a, p, BUDGETS[-1]) for p in probs):
                continue
            meds = []
            for p in probs:
                cs = res.curves(a, p, BUDGETS[-1])
                meds.append([math.log10(max(statistics.median(c[t] for c in cs), FLOOR)) for t in range(BUDGETS[-1])])
            geo = [10 ** statistics.fmean(m[t] for m in meds) for t in range(BUDGETS[-1])]
            ax.plot(range(1, BUDGETS[-1] + 1), geo, color=colors[a], label=LABEL[a])
        ax.set_yscale("log")
        ax.set_title(f"BBOB, 24 functions, d = {d}")
        ax.set_xlabel("trials")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("geometric mean of median normalised regret")
    axes[0][0].legend(fontsize=8)
    fig.savefig(os.path.join(plot_dir, "tune-bbob.png"), dpi=80)
    plt.close(fig)


BASELINES = {"bo_before": "the tuner before issue 19", "bo_default": "the default after the first round"}


def ablation(records, md_path, base="bo_before"):
    """Each variant of `tune.py --only ablation` against `base` on every problem: ahead /
    tied / behind in median regret, the geometric mean of the median-regret ratio, and the
    median log-efficiency, at each budget."""
    res = Results([])
    for r in records:
        res.runs.setdefault((r["algorithm"], r["problem"]), []).append(r)
    variants = list(dict.fromkeys(r["algorithm"] for r in records))
    res.problems = [p for p in suite.all_problems() if (base, p) in res.runs]
    for k, rs in res.runs.items():
        res._len[k] = max(BUDGETS[-1], max(map(_budget, rs)))
    lines = ["# Tuner ablation", "", f"Each variant against `{base}` ({BASELINES[base]}) on "
             f"{len(res.problems)} problems, {sorted({len(v) for v in res.runs.values()})} seeds each.", "",
             "| variant | budget | ahead / tied / behind | geo-mean regret ratio | log-efficiency |",
             "|---|---:|---|---:|---:|"]
    for v in variants:
        if v == base:
            continue
        for budget in BUDGETS:
            w, t, l = wins(res, v, base, budget, res.problems)
            ratios = [(res.median(v, p, budget) + FLOOR) / (res.median(base, p, budget) + FLOOR)
                      for p in res.problems if (v, p) in res.runs]
            geo = math.exp(statistics.fmean(math.log(r) for r in ratios))
            le = log_eff_summary(res, base, v, budget, res.problems)
            lines.append(f"| {v} | {budget} | {w} / {t} / {l} | {geo:.3g} | {le[0]:+.3f} |")
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
