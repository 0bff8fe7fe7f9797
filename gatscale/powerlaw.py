"""A power law y = a * x^b fitted by least squares on (log x, log y), with the exponent's 95 % interval and a
pointwise confidence band (t distribution, n - 2 degrees of freedom; nan with two points).

One fit for both laws a study measures: FD or FID against compute (analysis/figures.py) and the largest stable
LR against width (`LRLaw`: `gatscale probe-lr` in sweep/probe.py, and the lr_probe figure).
"""
from __future__ import annotations

import math

from dataclasses import dataclass

import numpy as np


@dataclass
class PowerLaw:
    a: float          # prefactor
    b: float          # exponent
    b_lo: float       # its 95 % confidence interval (nan for n = 2)
    b_hi: float
    r: float          # Pearson correlation of (log x, log y)
    n: int
    mean_log_x: float
    sxx: float        # sum of squared deviations of log x
    resid_std: float  # residual standard deviation in log y (nan for n = 2)

    @property
    def b_ci(self) -> tuple[float, float]:
        return self.b_lo, self.b_hi

    def __call__(self, x):
        return self.a * np.asarray(x, float) ** self.b

    def band(self, x, level: float = 0.95):
        """Pointwise confidence band of the fitted line, as (lower, upper) arrays."""
        from scipy import stats
        lx = np.log(np.asarray(x, float))
        se = self.resid_std * np.sqrt(1 / self.n + (lx - self.mean_log_x) ** 2 / self.sxx)
        half = stats.t.ppf((1 + level) / 2, self.n - 2) * se
        return self(x) * np.exp(-half), self(x) * np.exp(half)


def fit_power_law(x, y, cls: type[PowerLaw] = PowerLaw) -> PowerLaw:
    """Least squares on the logs of positive (x, y) pairs; needs two distinct x (three for an interval)."""
    from scipy import stats
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    if len(set(lx.tolist())) < 2:
        raise ValueError(f"a power-law fit needs two or more distinct x values; got {sorted(set(np.exp(lx).tolist()))}")
    fit = stats.linregress(lx, ly)
    n = len(lx)
    half = float(stats.t.ppf(0.975, n - 2) * fit.stderr) if n > 2 else float("nan")
    resid = ly - (fit.intercept + fit.slope * lx)
    return cls(a=float(np.exp(fit.intercept)), b=float(fit.slope), b_lo=fit.slope - half, b_hi=fit.slope + half,
               r=float(fit.rvalue), n=n, mean_log_x=float(lx.mean()), sxx=float(((lx - lx.mean()) ** 2).sum()),
               resid_std=float(np.sqrt((resid ** 2).sum() / (n - 2))) if n > 2 else float("nan"))


# ---------------------------------------------------------------------------------------------
# The LR law: the largest stable LR against width

def bracket(verdicts: dict[float, bool]) -> tuple[float | None, float | None]:
    """{LR: stable?} -> (largest stable LR below the smallest unstable one, smallest unstable LR); None where there
    is none. LR_max lies in between."""
    unstable = [lr for lr, ok in verdicts.items() if not ok]
    hi = min(unstable) if unstable else None
    stable = [lr for lr, ok in verdicts.items() if ok and (hi is None or lr < hi)]
    return (max(stable) if stable else None), hi


class LRLaw(PowerLaw):
    """LR_max = a * C^b over the probed widths; b_lo..b_hi its 95 % interval."""

    def line(self) -> str:
        ci = f"95% CI {self.b_lo:.2f} .. {self.b_hi:.2f}" if math.isfinite(self.b_lo) else "no CI with 2 widths"
        return f"lr_max ∝ C^b: b = {self.b:.2f} ({ci}), {self.n} widths"


def fit_lr_law(widths, lr_max) -> LRLaw:
    """Fit over (width, LR_max) pairs; needs two distinct widths (three for a confidence interval)."""
    if len(set(widths)) < 2:
        raise ValueError(f"the LR law needs LR_max at two or more widths; got widths {sorted(set(widths))}")
    return fit_power_law(widths, lr_max, LRLaw)
