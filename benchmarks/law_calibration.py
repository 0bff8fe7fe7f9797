"""How often the study's law intervals cover the truth, on synthetic studies whose truth is known
(gatscale/core/stats.py).

1. The leave-largest-out backtest: ladders S/B/L/XL (the demo's training compute per iteration, relative), 1-3 seeds
   per size, seed noise log-normal with sd 0.1-0.3 (the demo's seeds of one config), a known power law. The fit
   without XL predicts the geometric mean of XL's runs; prints how often its 80 % and 95 % prediction intervals
   cover that, and the same for a percentile bootstrap that resamples seeds within each size (scipy.stats.bootstrap),
   to show why the fit does not use it.
2. The LR law: a stability oracle with a known b (a width's edge on the law times a log-normal departure; each
   seed of a trial is stable below the edge times its own log-normal noise; a trial is stable only if every seed
   is), searched by `gatscale probe-lr`'s ladder and bisection (sweep/probe.py search), fitted from the brackets.
   Prints the 95 % interval's coverage of the true b, its median width, and the trials and runs it took, per
   budget (widths x seeds).

    python benchmarks/law_calibration.py [--ladders 400] [--probes 200]
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from gatscale.core import stats
from gatscale.sweep.probe import ProbeConfig, search

DEMO_X = np.array([16, 32, 40, 48], float) ** 2      # training compute per iteration grows ~ C^2 at fixed depth


def synthetic_ladder(rng, x=DEMO_X, b=None, seeds=(1, 3)):
    """(x, values, truth-free parameters) of one ladder: value = a * x^b * exp(sd * z) per seed."""
    b = rng.uniform(-0.6, -0.1) if b is None else b
    sd = rng.uniform(0.1, 0.3)
    n = rng.integers(seeds[0], seeds[1] + 1, size=len(x))
    a = 50 * x[0] ** -b
    return [list(a * xi ** b * np.exp(sd * rng.standard_normal(k))) for xi, k in zip(x, n)]


def bootstrap_interval(x, values, level, rng, resamples=499):
    """Percentile bootstrap of the law's value at the largest size, fitted without it, resampling seeds within each
    size (a one-seed size resamples to itself; scipy.stats.bootstrap refuses one-observation samples, so by hand)."""
    lx = np.log(x[:-1])
    means = np.stack([np.log(rng.choice(v, size=(resamples, len(v)))).mean(axis=1) for v in values[:-1]])
    slope, icpt = np.polyfit(lx, means, 1)
    pred = icpt + slope * math.log(x[-1])
    lo, hi = np.quantile(pred, [(1 - level) / 2, (1 + level) / 2])
    return math.exp(lo), math.exp(hi)


def ladder_coverage(ladders: int, seed: int = 0, with_bootstrap: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    hits = {"80": 0, "95": 0, "boot80": 0}
    width80 = []
    for _ in range(ladders):
        values = synthetic_ladder(rng)
        bt = stats.backtest(DEMO_X, values)
        if bt is None:        # S, B, L with one seed each and... never: three sizes always give 3 runs
            continue
        hits["80"] += bt.inside80
        hits["95"] += bt.inside95
        width80.append(math.log(bt.hi80 / bt.lo80))
        if with_bootstrap:
            lo, hi = bootstrap_interval(DEMO_X, values, 0.8, rng)
            hits["boot80"] += lo <= bt.truth <= hi
    return {k: v / ladders for k, v in hits.items()} | {"median_log_width80": float(np.median(width80))}


def simulated_probe(rng, widths, b, seeds, p: ProbeConfig, law_sd=0.1, seed_sd=0.3, c_ref=32.0, lr_ref=0.1):
    """One probe of a stability oracle: per width, lo/hi of its final bracket, and the trials and runs it took."""
    lo, hi, trials = [], [], 0
    for c in widths:
        edge = math.log(lr_ref) + b * math.log(c / c_ref) + law_sd * rng.standard_normal()
        verdicts = {}
        while (s := search(p, verdicts)).next_lr is not None:
            verdicts[s.next_lr] = bool(np.all(math.log(s.next_lr) < edge + seed_sd * rng.standard_normal(seeds)))
        trials += len(s.tried)
        lo.append(s.lo)
        hi.append(s.hi)
    return lo, hi, trials


DEMO_PROBE = ProbeConfig(lr_start=0.16, factor=4, lr_min=1e-4, lr_max=4.0, resolution=1.25, max_trials=8)
DEMO_PROBE_NOW = ProbeConfig(lr_start=0.06, factor=2, lr_min=1e-4, lr_max=4.0, resolution=1.5, max_trials=6)


def lr_law_coverage(probes: int, widths=(16, 32, 48), seeds: int = 1, seed: int = 0, p: ProbeConfig = DEMO_PROBE,
                    **oracle) -> dict:
    rng = np.random.default_rng(seed)
    covered, widths_b, trials, n = 0, [], [], 0
    for _ in range(probes):
        b = rng.uniform(-1.5, 0.5)
        lo, hi, t = simulated_probe(rng, widths, b, seeds, p, **oracle)
        if sum(v is not None for v in lo + hi) < 2:
            continue
        law = stats.fit_lr_law(widths, lo, hi)
        n += 1
        covered += law.b_lo <= b <= law.b_hi
        widths_b.append(law.b_hi - law.b_lo)
        trials.append(t)
    return {"probes": n, "coverage95": covered / n, "median_width": float(np.median(widths_b)),
            "trials": float(np.mean(trials)), "runs": float(np.mean(trials)) * seeds}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ladders", type=int, default=400)
    ap.add_argument("--probes", type=int, default=200)
    args = ap.parse_args()
    t0 = time.time()
    cov = ladder_coverage(args.ladders)
    print(f"backtest over {args.ladders} synthetic ladders (S/B/L/XL, 1-3 seeds, seed sd 0.1-0.3): 80 % interval "
          f"covers {cov['80']:.1%}, 95 % covers {cov['95']:.1%} "
          f"(median 80 % width x{math.exp(cov['median_log_width80']):.2f}); "
          f"seed-resampling percentile bootstrap 80 %: {cov['boot80']:.1%}  [{time.time() - t0:.0f} s]")
    print(f"LR law, 95 % interval on b over {args.probes} simulated probes each (true b uniform in [-1.5, 0.5]; "
          "ladder from 0.16 x4, bisection to x1.25, <= 8 trials unless said):")
    print(f"  {'widths':<22} {'seeds':>5} {'coverage':>9} {'median width':>13} {'trials':>7} {'runs':>6}")
    rows = [((16, 32, 48), 1, {}), ((16, 32, 48), 2, {}), ((16, 24, 32, 40, 48), 2, {}), ((8, 16, 32, 64, 128), 2, {}),
            ((16, 32, 48), 2, {"seed_sd": 0.6}), ((16, 32, 48), 2, {"law_sd": 0.3}),
            ((16, 32, 48), 2, {"p": DEMO_PROBE_NOW}), ((8, 16, 32, 64, 128), 2, {"p": DEMO_PROBE_NOW})]
    for widths, seeds, extra in rows:
        t0 = time.time()
        r = lr_law_coverage(args.probes, widths, seeds, **extra)
        note = ", ".join(f"{k} {v}" if k != "p" else "demo spec now (from 0.06 x2, to x1.5, <= 6)"
                         for k, v in extra.items())
        print(f"  {str(widths):<22} {seeds:>5} {r['coverage95']:>9.1%} {r['median_width']:>13.2f} "
              f"{r['trials']:>7.1f} {r['runs']:>6.1f}  {note or 'law_sd 0.1, seed_sd 0.3'}  [{time.time() - t0:.0f} s]",
              flush=True)


if __name__ == "__main__":
    main()
