"""The study's statistics, in one module that the findings and the laws share.

Comparisons (the findings, docs/findings.md): two run sets A and B that differ in one factor are compared on the
log of their metric, so an effect reads as a ratio ("A's FD is 40 % lower"). Seeds are the unit of replication: a
set's spread is its seeds' spread, never the runs of other sets. The interval is Welch's t interval on the log
values (scipy.stats.ttest_ind, equal_var=False), or the paired t interval on per-seed log-ratios when the caller
pairs the sets by seed (scipy.stats.ttest_rel). A verdict is read from the interval and the smallest effect that
matters, delta (a log-ratio):

    interval below 0          -> "A lower"   (A's metric is lower)
    interval above 0          -> "B lower"
    interval inside (-delta, delta) -> "equivalent" (no difference larger than delta: two one-sided tests at the
                                  interval's level, Schuirmann 1987)
    anything else             -> "unresolved", with the seeds per side that would resolve it at the spread seen

Looking at the data again after adding seeds (`gatscale sweep --until-resolved`) would inflate the error rate of
a fixed-level interval; `spent_level` splits the error rate over the looks a design allows (Bonferroni alpha
spending), which keeps every verdict valid however the looks come out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

VERDICTS = ("A lower", "B lower", "equivalent", "unresolved")


@dataclass(frozen=True)
class Spread:
    """A pooled seed spread of log metric values: its standard deviation and degrees of freedom."""
    sd: float
    df: int


@dataclass(frozen=True)
class Comparison:
    """log(A) - log(B) of a metric, estimated from seeds: < 0 means A's values are lower."""
    effect: float      # mean log(A) - mean log(B), or the mean per-seed log-ratio when paired
    lo: float          # its confidence interval at `level` (nan when a side has fewer than two seeds)
    hi: float
    level: float
    n_a: int
    n_b: int
    paired: bool
    se: float          # standard error of `effect` (nan without a spread)
    df: float          # degrees of freedom of the t reference (Welch-Satterthwaite when unpaired)
    sd: float          # the spread behind `se`: sd of paired log-ratios, or the root mean of the two sides' variances

    @property
    def ratio(self) -> float:
        """A / B as a ratio of the metric (geometric means)."""
        return math.exp(self.effect)

    @property
    def p_a_lower(self) -> float:
        """The probability that A's true value is lower, under the t reference distribution of the effect (a flat
        prior on it); nan without a spread."""
        if not (self.se > 0 and math.isfinite(self.se)):
            return float("nan")
        return float(stats.t.cdf(-self.effect / self.se, self.df))

    def verdict(self, delta: float) -> str:
        """One of VERDICTS; see the module docstring."""
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return "unresolved"
        if self.hi < 0:
            return "A lower"
        if self.lo > 0:
            return "B lower"
        if -delta < self.lo and self.hi < delta:
            return "equivalent"
        return "unresolved"


def _logs(values) -> np.ndarray:
    v = np.asarray(values, float)
    if v.ndim != 1 or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"a comparison needs positive finite metric values; got {v.tolist()}")
    return np.log(v)


def compare(a: Sequence[float], b: Sequence[float], *, paired: bool = False, level: float = 0.95) -> Comparison:
    """Compare the seeds of A with the seeds of B on the log scale (see the module docstring).

    paired: a[i] and b[i] come from the same seed; the interval is then on the per-seed log-ratios (n - 1 degrees of
    freedom). With fewer than two seeds on a side (or two pairs) there is no spread: the effect is returned with a nan
    interval, and `seeds_needed` takes the spread from elsewhere (`pooled_spread`).
    """
    la, lb = _logs(a), _logs(b)
    nan = float("nan")
    if paired:
        if len(la) != len(lb):
            raise ValueError(f"paired comparison needs as many values on each side; got {len(la)} and {len(lb)}")
        d = la - lb
        n = len(d)
        if n < 2:
            return Comparison(float(d.mean()), nan, nan, level, n, n, True, nan, nan, nan)
        sd = float(d.std(ddof=1))
        ci = stats.ttest_rel(la, lb).confidence_interval(confidence_level=level)
        return Comparison(float(d.mean()), float(ci.low), float(ci.high), level, n, n, True,
                          sd / math.sqrt(n), n - 1, sd)
    effect = float(la.mean() - lb.mean())
    if len(la) < 2 or len(lb) < 2:
        return Comparison(effect, nan, nan, level, len(la), len(lb), False, nan, nan, nan)
    va, vb = la.var(ddof=1) / len(la), lb.var(ddof=1) / len(lb)
    se = math.sqrt(va + vb)
    if se == 0:   # identical values on both sides: no spread to speak of, an exact effect
        return Comparison(effect, effect, effect, level, len(la), len(lb), False, 0.0, math.inf, 0.0)
    res = stats.ttest_ind(la, lb, equal_var=False)
    ci = res.confidence_interval(confidence_level=level)
    sd = math.sqrt((la.var(ddof=1) + lb.var(ddof=1)) / 2)
    return Comparison(effect, float(ci.low), float(ci.high), level, len(la), len(lb), False, se, float(res.df), sd)


def pooled_spread(groups: Sequence[Sequence[float]]) -> Spread | None:
    """The pooled within-set standard deviation of log values over every set with two or more seeds (each set
    contributes n - 1 degrees of freedom); None when no set has two."""
    ss, df = 0.0, 0
    for g in groups:
        lg = _logs(g)
        if len(lg) >= 2:
            ss += float(((lg - lg.mean()) ** 2).sum())
            df += len(lg) - 1
    return Spread(math.sqrt(ss / df), df) if df else None


def seeds_needed(c: Comparison, delta: float, spread: Spread | None = None, cap: int = 100) -> int | None:
    """About how many seeds per side would resolve `c` at the spread seen, if the effect stayed where it is: the
    smallest n at which the expected interval half-width t * sd * sqrt(2 / n) (paired: t * sd / sqrt(n)) excludes 0
    from the effect, or fits the effect inside (-delta, delta). `spread` stands in where the comparison has none of
    its own. None when even `cap` seeds would not (an effect at 0 with delta 0, or no spread at all)."""
    sd = c.sd if math.isfinite(c.sd) else (spread.sd if spread else float("nan"))
    if not math.isfinite(sd):
        return None
    alpha = 1 - c.level
    for n in range(2, cap + 1):
        df = n - 1 if c.paired else 2 * (n - 1)
        half = stats.t.ppf(1 - alpha / 2, df) * sd * (math.sqrt(1 / n) if c.paired else math.sqrt(2 / n))
        if half < abs(c.effect) or abs(c.effect) + half < delta:
            return n
    return None


def spent_level(level: float, looks: int) -> float:
    """The confidence level of each of `looks` interim looks that keeps the overall error rate at 1 - level
    (Bonferroni alpha spending: alpha / looks per look)."""
    if looks < 1:
        raise ValueError(f"looks must be >= 1; got {looks}")
    return 1 - (1 - level) / looks


# ---------------------------------------------------------------------------------------------
# Laws over a size ladder: metric = a * x^b, x the size's compute (or parameters), several seeds per size.

def fit_scaling_law(x: Sequence[float], values: Sequence[Sequence[float]], level: float = 0.95):
    """Fit metric = a * x^b over sizes x[i], each with the seeds' metric values values[i].

    Each size counts once, by the mean log value of its seeds, so a size with more seeds does not pull the line; the
    interval of b is the t interval of that regression (k - 2 degrees of freedom for k sizes), whose residuals hold
    both the seed noise of the means and each size's departure from the law. Needs two sizes (three for an interval).
    """
    from .powerlaw import fit_power_law
    if len(x) != len(values):
        raise ValueError(f"fit_scaling_law: {len(x)} sizes but {len(values)} value sets")
    means = [float(np.exp(_logs(v).mean())) for v in values]
    law = fit_power_law(x, means)
    if level != 0.95 and law.n > 2:
        half = (law.b_hi - law.b) / stats.t.ppf(0.975, law.n - 2) * stats.t.ppf((1 + level) / 2, law.n - 2)
        law.b_lo, law.b_hi = law.b - half, law.b + half
    return law
