"""`gatscale predict SPEC --size GAT-XL/2 [--iterations N | --target FD --probability P]`: what the study's law says
a run would do before it is paid for.

From the finished runs of the study (the FD-vs-training-compute ladder of `gatscale figures`: each size's runs at
the matched iteration, every seed), the seed-aware law FD = a * F^b (gatscale/core/stats.py fit_scaling_law) is read
at the compute F of the asked size trained N iterations (FLOPs per iteration from gatscale/models/flops.py): the
law's value and the 80 % / 95 % prediction intervals of one new run. With --target, the iterations (and device-hours:
measured throughput of finished runs first, else configs/throughput.yaml, sweep/throughput.py) at which one new run
reaches FD <= target with probability P. Moving along iterations assumes FD follows the same law in training compute
as it does across sizes at a matched iteration; the leave-largest-out backtest is printed beside the answer as the
check of how far the law has been right.

It refuses, saying why, when the data cannot carry the extrapolation: fewer than three sizes, no residual degrees of
freedom, a law that does not fall with compute (for a target), or an 80 % interval wider than the prediction.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import sys
from dataclasses import dataclass

import numpy as np

from gatscale.core.errors import EnvironmentProblem, InputError
from gatscale.core.stats import Backtest
from . import figures
from .load import MissingData

MAX_EXTRAPOLATION = 1e4    # a target is looked for up to this factor beyond the largest compute measured


class CannotPredict(EnvironmentProblem):
    """The study's runs cannot support the asked extrapolation (exit 1, `gatscale: error: ...`)."""


@dataclass
class Prediction:
    compute: float             # GFLOPs of training compute at the asked point
    iterations: int
    value: float               # the law at that compute
    lo80: float                # one new run's prediction intervals
    hi80: float
    lo95: float
    hi95: float
    extrapolation: float       # compute / the largest compute measured
    law: figures.PowerLaw
    backtest: Backtest | None
    probability: float | None = None   # with a target: P(one new run <= target) at `iterations`


def law_of(pts) -> figures.PowerLaw:
    """The seed-aware law of fid_vs_compute_data's frame; refuses fewer than three sizes or no interval."""
    law = figures.fit_power_law(pts["c"], pts["value"], pts["se"] if "se" in pts else None)
    if law.n < 3:
        raise CannotPredict(f"the law has {law.n} sizes; an extrapolation needs at least three (train more sizes)")
    if law.df < 1:
        raise CannotPredict(f"the law has {law.runs} runs over {law.n} sizes and no residual to estimate its spread "
                            "from: add seeds")
    return law


def predict_at(pts, flops_per_iteration: float, iterations: int) -> Prediction:
    """The law at `iterations` of a size costing `flops_per_iteration` (FLOPs) per iteration."""
    law = law_of(pts)
    c = flops_per_iteration * iterations / 1e9
    (lo80, hi80), (lo95, hi95) = law.interval(c, 0.8), law.interval(c, 0.95)
    p = Prediction(c, int(iterations), float(law(c)), float(lo80), float(hi80), float(lo95), float(hi95),
                   c / float(pts["c"].max()), law, figures.backtest_of(pts["c"], pts["value"], pts.get("se")))
    if p.hi80 - p.lo80 > p.value:
        raise CannotPredict(f"the 80 % interval at {iterations:,} iterations ({p.lo80:.3g} .. {p.hi80:.3g}) is wider "
                            f"than the prediction itself ({p.value:.3g}), {p.extrapolation:.3g}x the largest compute "
                            f"measured: the data cannot support this extrapolation (add sizes or seeds)")
    return p


def iterations_for(pts, flops_per_iteration: float, target: float, probability: float) -> Prediction:
    """The fewest iterations at which one new run has FD <= target with `probability`, under the law."""
    law = law_of(pts)
    if law.b >= 0:
        raise CannotPredict(f"the law does not fall with compute (exponent {law.b:+.3f}): no iteration count "
                            "reaches a lower target")
    cs = np.geomspace(float(pts["c"].min()), float(pts["c"].max()) * MAX_EXTRAPOLATION, 4000)
    ok = law.quantile(cs, probability) <= target
    if not ok.any():
        best = float(np.min(law.quantile(cs, probability)))
        raise CannotPredict(f"FD <= {target:g} with probability {probability:g} is not reached within "
                            f"{MAX_EXTRAPOLATION:g}x the largest compute measured (its {probability:g}-quantile "
                            f"bottoms out at {best:.3g}: the interval widens faster than the law falls)")
    c = float(cs[np.argmax(ok)])
    p = predict_at(pts, flops_per_iteration, math.ceil(c * 1e9 / flops_per_iteration))
    return dataclasses.replace(p, probability=probability)


# ---------------------------------------------------------------------------------------------
# The command

def add_arguments(parser):
    parser.add_argument("spec", help="the study's sweep spec (its finished runs in the tracker make the law)")
    parser.add_argument("--size", required=True, help="the model size to predict, e.g. GAT-XL/2 (a size of the spec)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--iterations", type=int, help="predict FD after this many iterations (default: the study's "
                                                     "matched iteration)")
    what.add_argument("--target", type=float, help="the FD to reach: prints the iterations and device-hours")
    parser.add_argument("--probability", type=float, default=0.8, help="with --target: the probability that one new "
                                                                      "run reaches it (default 0.8)")
    parser.add_argument("--metric", help="Frechet-distance metric (default: fid, else fd_digits)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the spec's runs' tracking.uri)")


def size_run(spec, size: str):
    """The spec's first run of `size`, or, for a size the study does not train, its base run at that size with the
    spec's `per_size` shape; an error listing the valid sizes when `size` is not a model size."""
    from gatscale.core.sizes import MODEL_NAMES
    from gatscale.sweep.spec import run_at_size
    for run in spec.runs:
        if run.config.model.generator.size == size:
            return run
    if size not in MODEL_NAMES:
        raise InputError(f"{spec.path}: --size {size!r} is not a GAT size; valid: {', '.join(MODEL_NAMES)}")
    return run_at_size(spec.path, size, spec.study_dir)


def answer(spec, run, pts, size: str, iterations: int | None = None, target: float | None = None,
           probability: float = 0.8) -> list[str]:
    """The printed answer of `gatscale predict` (and the report's prediction line): the law, its backtest, the
    prediction at `size` and its cost. Raises CannotPredict where the data cannot carry it."""
    from gatscale.sweep.throughput import estimate, load_table, measured_runs, run_cost
    out: list[str] = []
    fd, step = pts.attrs["metric"], pts.attrs["step"]
    one = dataclasses.replace(run, config=copy.deepcopy(run.config))
    one.config.train.iterations = 1
    per_iteration = run_cost(one)      # training FLOPs of one iteration (gatscale/models/flops.py, through the sweep)
    if target is not None:
        p = iterations_for(pts, per_iteration, target, probability)
    else:
        p = predict_at(pts, per_iteration, iterations or step)
    law = p.law
    out.append(f"law over {law.n} sizes, {law.runs} runs at iteration {step:,}: {fd} = {law.a:.4g} F^{law.b:.3f} "
                  f"(exponent 95 % CI {law.b_lo:.3f} .. {law.b_hi:.3f}), F in training GFLOPs")
    out.append(p.backtest.line() if p.backtest else "backtest: fewer than three runs below the largest size")
    iters = f"{p.iterations:,} iterations ({p.compute:.4g} GFLOPs, {p.extrapolation:.3g}x the largest compute)"
    if p.probability is not None:
        out.append(f"{size}: {fd} <= {target:g} with probability {p.probability:g} after about {iters}")
    out.append(f"{size} at {iters}: {fd} {p.value:.4g}, one new run 80 % {p.lo80:.4g} .. {p.hi80:.4g}, "
               f"95 % {p.lo95:.4g} .. {p.hi95:.4g}")
    planned = dataclasses.replace(run, config=copy.deepcopy(run.config))
    planned.config.train.iterations = p.iterations
    est = estimate(planned, spec.device, load_table(spec.throughput), measured_runs(spec.study_dir.parent))
    hours = "unknown" if est.hours is None else f"{est.hours:.3g}"
    out.append(f"cost: {hours} device-hours on {spec.device if run.gpus else 'cpu'} ({est.how})")
    return out


def main(args) -> int:
    from gatscale.sweep.spec import load_spec
    from .load import load_experiment
    if args.target is not None and not (args.target > 0 and 0 < args.probability < 1):
        raise InputError(f"--target {args.target:g} --probability {args.probability:g}: the target must be > 0 "
                         "and the probability in (0, 1)")
    if args.iterations is not None and args.iterations < 1:
        raise InputError(f"--iterations = {args.iterations}: must be >= 1")
    spec = load_spec(args.spec)
    run = size_run(spec, args.size)
    try:
        runs, histories = load_experiment(spec.name, args.tracking_uri or spec.tracking.uri, cache_dir=None)
        pts = figures.fid_vs_compute_data(runs, histories, "train", metric=args.metric)
    except MissingData as e:
        raise CannotPredict(f"no law to predict from: {e}") from None
    for line in answer(spec, run, pts, args.size, args.iterations, args.target, args.probability):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(None))
