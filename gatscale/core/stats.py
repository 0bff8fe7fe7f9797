"""The study's statistics, in one module that the findings and the laws share.

Comparisons (the findings, docs/findings.md): two run sets A and B that differ in one factor are compared on the
log of their metric, so an effect reads as a ratio ("A's FD is 40 % lower"). Seeds are the unit of replication: a
set's spread is its seeds' spread, never the spread of one seed's runs. The interval is Welch's t interval on the
log values (scipy.stats.ttest_ind, equal_var=False), the pooled-spread t interval when the caller gives the study's
seed spread (one spread for every set, pooled over the sets' seeds), or the paired t interval on per-seed
log-ratios when the caller pairs the sets by seed (scipy.stats.ttest_rel). A verdict is read from the interval and
the smallest effect that matters, delta (a log-ratio):

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
from dataclasses import dataclass, field
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
    df: float          # degrees of freedom of the t reference (Welch-Satterthwaite when unpaired, the study's pooled)
    sd: float          # the spread behind `se`: sd of paired log-ratios, or the root mean of the two sides' variances
    pooled: bool = False  # `se` and `df` are the study's pooled spread's (compare(spread=...))

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


def compare(a: Sequence[float], b: Sequence[float], *, paired: bool = False, level: float = 0.95,
            spread: Spread | None = None) -> Comparison:
    """Compare the seeds of A with the seeds of B on the log scale (see the module docstring).

    paired: a[i] and b[i] come from the same seed; the interval is then on the per-seed log-ratios (n - 1 degrees of
    freedom). spread (unpaired only): one seed spread for the whole study (`pooled_spread` over its sets, A's and B's
    seeds among them) in place of the two sides' own: the pooled-variance t interval of a one-way layout's contrast,
    sd * sqrt(1/n_a + 1/n_b) on the spread's degrees of freedom (scipy.stats.t). It assumes one log-scale spread for
    every set; in exchange the t quantile is the study's (8 degrees of freedom for 4 sets of 3 seeds, against
    Welch's 4 for one pair). Without it and with fewer than two seeds on a side (or two pairs) there is no spread:
    the effect is returned with a nan interval, and `seeds_needed` takes the spread from elsewhere.
    """
    la, lb = _logs(a), _logs(b)
    nan = float("nan")
    if spread is not None and not paired:
        effect, se = float(la.mean() - lb.mean()), spread.sd * math.sqrt(1 / len(la) + 1 / len(lb))
        if se == 0:
            return Comparison(effect, effect, effect, level, len(la), len(lb), False, 0.0, math.inf, 0.0)
        lo, hi = stats.t.interval(level, spread.df, loc=effect, scale=se)
        return Comparison(effect, float(lo), float(hi), level, len(la), len(lb), False, se, spread.df, spread.sd,
                          pooled=True)
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
        if c.pooled:   # the study's spread: at least the degrees of freedom it has now
            df = max(df, c.df)
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
# Laws over a size ladder: metric = a * x^b, x a size's compute (or parameters), several seeds per size.
#
# The model: log value_ij = log a + b log x_i + e_ij for seed j of size i, e_ij ~ N(0, sigma^2 + se_ij^2), sigma the
# seed spread (pooled over sizes) and se_ij the metric's own sampling error on the log scale where it is known.
# Every run is a point; weighted least squares (weights 1 / (sigma^2 + se^2), sigma^2 estimated by moments from the
# within-size spread, or from the residuals when no size has two seeds), the residual scale estimated with
# N - 2 degrees of freedom (N runs), t intervals. A size with one seed adds a point and no spread; the residuals
# carry both the seed noise and each size's departure from the law (lack of fit widens the interval through them,
# but a size-level departure is not modelled on its own: with 3-4 sizes it cannot be estimated).
#
# Why not resample seeds (scipy.stats.bootstrap over each size's seeds): with 1-3 seeds per size the percentile
# interval covers the held-out truth far less often than it says (benchmarks/law_calibration.py prints both).

@dataclass
class ScalingLaw:
    """metric = a * x^b fitted over a size ladder; b_lo..b_hi the exponent's interval at `level`."""
    a: float
    b: float
    b_lo: float               # nan without residual degrees of freedom (N - 2 < 1)
    b_hi: float
    level: float
    n: int                    # sizes
    runs: int                 # runs (points)
    df: int                   # N - 2
    sigma: float              # a new run's spread of log values about the law (nan when df < 1)
    r: float                  # Pearson correlation of (log x, mean log value) over the sizes
    x: tuple                  # the sizes, ascending
    values: tuple             # per size, its runs' values
    cov: np.ndarray           # covariance of (log a, b), scaled by the residual variance

    @property
    def b_ci(self) -> tuple[float, float]:
        return self.b_lo, self.b_hi

    def __call__(self, x):
        return self.a * np.asarray(x, float) ** self.b

    def _sd(self, x, seeds: float) -> np.ndarray:
        """sd of log(law at x) (seeds = inf) or of the mean log value of `seeds` new runs at x (a prediction)."""
        lx = np.log(np.asarray(x, float))
        line = self.cov[0, 0] + 2 * lx * self.cov[0, 1] + lx ** 2 * self.cov[1, 1]
        noise = 0.0 if math.isinf(seeds) else self.sigma ** 2 / seeds
        return np.sqrt(line + noise)

    def interval(self, x, level: float = 0.8, seeds: float = 1):
        """(lower, upper) of the geometric mean of `seeds` new runs at x (a prediction interval; seeds=inf: the
        law's own confidence band). nan without degrees of freedom."""
        if self.df < 1:
            nan = np.full(np.shape(x), np.nan)
            return nan, nan
        half = stats.t.ppf((1 + level) / 2, self.df) * self._sd(x, seeds)
        return self(x) * np.exp(-half), self(x) * np.exp(half)

    def band(self, x, level: float = 0.95):
        """The pointwise confidence band of the law itself."""
        return self.interval(x, level, math.inf)

    def quantile(self, x, p: float, seeds: float = 1):
        """The p-quantile of the predicted geometric mean of `seeds` new runs at x (nan without degrees of freedom)."""
        if self.df < 1:
            return np.full(np.shape(x), np.nan)
        return self(x) * np.exp(stats.t.ppf(p, self.df) * self._sd(x, seeds))


def _ladder(x, values, se):
    if len(x) != len(values):
        raise ValueError(f"a scaling law needs one value set per size; got {len(x)} sizes and {len(values)} sets")
    lx, ly, lv = [], [], []
    for i, (xi, vals) in enumerate(zip(x, values)):
        logs = _logs(vals)
        rel = np.zeros(len(logs)) if se is None or se[i] is None else np.asarray(se[i], float) / np.exp(logs)
        if len(rel) != len(logs) or not np.all(np.isfinite(rel) | np.isnan(rel)):
            raise ValueError(f"size {xi}: {len(logs)} values but {len(rel)} standard errors")
        lx += [math.log(xi)] * len(logs)
        ly += logs.tolist()
        lv += np.nan_to_num(rel ** 2).tolist()      # se on the log scale (delta method); unknown = 0
    return np.array(lx), np.array(ly), np.array(lv)


def fit_scaling_law(x: Sequence[float], values: Sequence[Sequence[float]], level: float = 0.95,
                    se: Sequence[Sequence[float] | None] | None = None, cls: type | None = None) -> ScalingLaw:
    """Fit metric = a * x^b over sizes x[i], each with its seeds' values values[i] (see the section's comment).

    se[i]: the metric's own standard errors of those values (e.g. fd_digits_se), None where not known. Needs two
    distinct sizes; an interval needs N - 2 >= 1 (three runs).
    """
    lx, ly, lv = _ladder(x, values, se)
    if len(set(lx.tolist())) < 2:
        raise ValueError(f"a scaling law needs two or more distinct sizes; got {sorted(set(x))}")
    groups = [ly[lx == u] for u in np.unique(lx)]
    n_runs, df = len(ly), len(ly) - 2
    X = np.column_stack([np.ones(n_runs), lx])
    if lv.any():    # weights 1 / (sigma_seed^2 + se^2), sigma_seed^2 = (seed variance seen - its metric share)
        within = [g for g in groups if len(g) > 1]
        if within:
            var = sum(((g - g.mean()) ** 2).sum() for g in within) / sum(len(g) - 1 for g in within)
            share = np.mean([v for u, g in zip(np.unique(lx), groups) if len(g) > 1 for v in lv[lx == u]])
        else:
            resid = ly - X @ np.linalg.lstsq(X, ly, rcond=None)[0]
            var, share = (resid ** 2).sum() / max(df, 1), lv.mean()
        seed_var = max(var - share, 0.0)
        u = seed_var + lv
        u = np.where(u > 0, u, lv[lv > 0].min())
        new_var = seed_var + lv.mean()
    else:
        u, new_var = np.ones(n_runs), 1.0
    w = 1 / u
    xtwx_inv = np.linalg.inv(X.T @ (w[:, None] * X))
    coef = xtwx_inv @ X.T @ (w * ly)
    resid = ly - X @ coef
    scale2 = float((w * resid ** 2).sum() / df) if df >= 1 else float("nan")
    cov = xtwx_inv * (scale2 if df >= 1 else 0.0)
    if df >= 1:
        half = stats.t.ppf((1 + level) / 2, df) * math.sqrt(cov[1, 1])
    else:
        half = float("nan")
    means = np.array([g.mean() for g in groups])
    r = float(np.corrcoef(np.unique(lx), means)[0, 1]) if len(groups) > 2 else float(np.sign(means[1] - means[0]))
    order = np.argsort(np.asarray(x, float))
    return (cls or ScalingLaw)(
        a=float(math.exp(coef[0])), b=float(coef[1]), b_lo=float(coef[1] - half), b_hi=float(coef[1] + half),
        level=level, n=len(groups), runs=n_runs, df=df, sigma=math.sqrt(scale2 * new_var) if df >= 1 else float("nan"),
        r=r, x=tuple(float(x[i]) for i in order), values=tuple(tuple(map(float, values[i])) for i in order),
        cov=cov if df >= 1 else np.full((2, 2), np.nan))


@dataclass(frozen=True)
class Backtest:
    """The law fitted without the largest size, against that size's runs.

    The held-out truth is the geometric mean of the largest size's runs (what the study measured there, seed noise
    and all); the intervals are prediction intervals for exactly that: the law's uncertainty at x plus the seed
    noise of a mean over as many runs."""
    x: float
    values: tuple            # the held-out size's runs
    truth: float             # their geometric mean
    predicted: float         # the law's value at x
    lo80: float
    hi80: float
    lo95: float
    hi95: float

    @property
    def inside80(self) -> bool:
        return self.lo80 <= self.truth <= self.hi80

    @property
    def inside95(self) -> bool:
        return self.lo95 <= self.truth <= self.hi95

    def line(self) -> str:
        where = "inside" if self.inside80 else ("outside the 80 %, inside the 95 %" if self.inside95 else "outside")
        return (f"backtest at the largest size (fit without it): predicted {self.predicted:.3g}, 80 % "
                f"[{self.lo80:.3g}, {self.hi80:.3g}], 95 % [{self.lo95:.3g}, {self.hi95:.3g}]; its {len(self.values)} "
                f"run(s) landed at {self.truth:.3g}: {where}")


def backtest(x: Sequence[float], values: Sequence[Sequence[float]],
             se: Sequence[Sequence[float] | None] | None = None) -> Backtest | None:
    """Leave the largest size out, fit the rest, predict it. None when the rest cannot give an interval (fewer
    than two sizes or three runs)."""
    order = np.argsort(np.asarray(x, float))
    *keep, last = order.tolist()
    rest = [values[i] for i in keep]
    if len(keep) < 2 or sum(len(v) for v in rest) < 3:
        return None
    law = fit_scaling_law([x[i] for i in keep], rest, se=None if se is None else [se[i] for i in keep])
    held = tuple(map(float, values[last]))
    n = len(held)
    (lo80, hi80), (lo95, hi95) = law.interval(x[last], 0.8, n), law.interval(x[last], 0.95, n)
    return Backtest(float(x[last]), held, float(np.exp(_logs(held).mean())), float(law(x[last])),
                    float(lo80), float(hi80), float(lo95), float(hi95))


# ---------------------------------------------------------------------------------------------
# The LR law: the largest stable LR against width, from brackets (`gatscale probe-lr`, sweep/probe.py)
#
# A width's probe ends with a bracket lo < lr_max < hi (stable at lo, unstable at hi), or one side open (stable up
# to the ladder's top: lr_max > lo; unstable down to its bottom: lr_max < hi). The law is
#     log lr_max(C) = log a + b log C + N(0, s^2),
# fitted by the interval-censored likelihood of the brackets (Tobit-style: each width contributes
# P(lo < lr_max < hi)), never by their midpoints. b's interval is the profile likelihood's; its deviance threshold
# is calibrated like the exact t interval of a regression on k points (k log(1 + t^2 / (k - 2)), k widths), which it
# equals when the brackets shrink to points. P(b < 0) is read from the signed root of the profile deviance at b = 0
# on the same t reference. s is kept >= LR_SPREAD_MIN (10 %): with three or four brackets a line often threads them
# all, and the likelihood alone would then claim no spread at all and an interval far too narrow (calibrated on a
# stability oracle: benchmarks/law_calibration.py).

LR_SPREAD_MIN = 0.1


def bracket(verdicts: dict[float, bool]) -> tuple[float | None, float | None]:
    """{LR: stable?} -> (largest stable LR below the smallest unstable one, smallest unstable LR); None where there
    is none. LR_max lies in between."""
    unstable = [lr for lr, ok in verdicts.items() if not ok]
    hi = min(unstable) if unstable else None
    stable = [lr for lr, ok in verdicts.items() if ok and (hi is None or lr < hi)]
    return (max(stable) if stable else None), hi


@dataclass
class LRLaw:
    """lr_max = a * C^b over the probed widths; b_lo..b_hi its interval at `level`, p_negative = P(b < 0)."""
    a: float
    b: float
    b_lo: float               # nan with fewer than three widths
    b_hi: float
    level: float
    p_negative: float
    s: float                  # spread of log lr_max about the law
    n: int                    # widths
    widths: tuple
    intercept: object = field(repr=False, compare=False)   # b -> the best log a at slope b (the profile)

    def __call__(self, c):
        return self.a * np.asarray(c, float) ** self.b

    def band(self, c):
        """The envelope of the lines whose b lies in the interval, each at its best a: (lower, upper); the fitted
        line alone without an interval."""
        lc = np.log(np.asarray(c, float))
        bs = np.linspace(self.b_lo, self.b_hi, 9) if math.isfinite(self.b_lo + self.b_hi) else [self.b]
        ys = np.array([self.intercept(b) + b * lc for b in bs] + [math.log(self.a) + self.b * lc])
        return np.exp(ys.min(axis=0)), np.exp(ys.max(axis=0))

    def line(self) -> str:
        if not math.isfinite(self.b_lo):
            return f"lr_max ∝ C^b: b = {self.b:.2f} (no interval with {self.n} widths)"
        return (f"lr_max ∝ C^b: b = {self.b:.2f} ({self.level:.0%} CI {self.b_lo:.2f} .. {self.b_hi:.2f}, "
                f"P(b < 0) = {self.p_negative:.2f}), {self.n} widths, interval-censored fit of the brackets")


def _log_prob_between(zl, zh):
    """log(Phi(zh) - Phi(zl)), stable in both tails (zl may be -inf, zh +inf)."""
    from scipy.special import log_ndtr
    flip = zl > 0                                   # both in the upper tail: use the mirror image
    a, b = np.where(flip, -zh, zl), np.where(flip, -zl, zh)
    lb, la = log_ndtr(b), log_ndtr(a)
    return lb + np.log1p(-np.exp(np.minimum(la - lb, -1e-300)))


def _lr_loglik(la, b, log_s, lc, llo, lhi):
    mu, s = la + b * lc, math.exp(log_s)
    return float(_log_prob_between((llo - mu) / s, (lhi - mu) / s).sum())


def fit_lr_law(widths, lo, hi, level: float = 0.95) -> LRLaw:
    """Fit the LR law over brackets: widths[i] with lo[i] < lr_max < hi[i] (None or nan: that side is open).
    Needs two distinct widths with at least one closed side each (three widths for an interval)."""
    from scipy import optimize
    c = np.asarray(widths, float)
    as_log = lambda v, fill: np.array([fill if (u is None or not np.isfinite(u)) else math.log(u) for u in v])
    llo, lhi = as_log(lo, -np.inf), as_log(hi, np.inf)
    if len(set(c.tolist())) < 2 or len(llo) != len(c) or len(lhi) != len(c):
        raise ValueError(f"the LR law needs brackets at two or more widths; got widths {sorted(set(c.tolist()))}")
    if np.any(np.isinf(llo) & np.isinf(lhi)) or np.any(llo >= lhi):
        raise ValueError(f"the LR law needs lo < hi with one side known at every width; "
                         f"got lo {list(lo)} hi {list(hi)}")
    lc = np.log(c)
    k = len(c)
    mid = np.where(np.isinf(llo), lhi, np.where(np.isinf(lhi), llo, (llo + lhi) / 2))
    smin = math.log(LR_SPREAD_MIN)

    def best(b: float | None, start):
        """max log-likelihood over (log a, log s) at slope b (b None: over b too)."""
        if b is None:
            f = lambda t: -_lr_loglik(t[0], t[1], t[2], lc, llo, lhi)
            res = optimize.minimize(f, start, method="Nelder-Mead", bounds=[(None, None), (None, None), (smin, 5)],
                                   options={"xatol": 1e-4, "fatol": 1e-7})
        else:
            f = lambda t: -_lr_loglik(t[0], b, t[1], lc, llo, lhi)
            res = optimize.minimize(f, [start[0], start[-1]], method="Nelder-Mead", bounds=[(None, None), (smin, 5)],
                                   options={"xatol": 1e-4, "fatol": 1e-7})
        return -res.fun, res.x

    slope = np.polyfit(lc, mid, 1)[0] if k > 1 else 0.0
    start = [float(np.mean(mid - slope * lc)), float(slope), max(smin, math.log(max(np.std(mid), 0.1)))]
    top, t = best(None, start)
    for guess in (0.0, -1.0, 1.0):   # a likelihood over brackets can be flat; try a few slopes as starts
        alt, u = best(None, [float(np.mean(mid - guess * lc)), guess, start[2]])
        if alt > top + 1e-9:
            top, t = alt, u
    la_hat, b_hat, ls_hat = (float(v) for v in t)
    nan = float("nan")
    if k < 3:
        return LRLaw(math.exp(la_hat), b_hat, nan, nan, level, nan, math.exp(ls_hat), k, tuple(c), lambda b: la_hat)
    tq = stats.t.ppf((1 + level) / 2, k - 2)
    thr = k * math.log1p(tq ** 2 / (k - 2))
    dev = lambda b: 2 * (top - best(b, [la_hat + (b_hat - b) * lc.mean(), ls_hat])[0])

    def end(direction):
        step, b = 0.5, b_hat
        for _ in range(60):                          # walk out until the deviance passes the threshold
            nb = b + direction * step
            if dev(nb) > thr:
                return optimize.brentq(lambda v: dev(v) - thr, b, nb, xtol=1e-2) if direction > 0 else \
                    optimize.brentq(lambda v: dev(v) - thr, nb, b, xtol=1e-2)
            b, step = nb, step * 1.6
        return direction * math.inf
    b_lo, b_hi = end(-1), end(+1)
    d0 = dev(0.0)
    r0 = math.copysign(math.sqrt(max(d0, 0.0)), -b_hat)          # signed root: > 0 when b_hat < 0
    t0 = math.copysign(math.sqrt((k - 2) * math.expm1(abs(r0) ** 2 / k)), r0)  # on the t reference of thr
    return LRLaw(math.exp(la_hat), b_hat, b_lo, b_hi, level, float(stats.t.cdf(t0, k - 2)), math.exp(ls_hat), k,
                 tuple(c), lambda b: best(b, [la_hat + (b_hat - b) * lc.mean(), ls_hat])[1][0])
