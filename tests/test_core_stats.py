"""gatscale.core.stats against synthetic oracles of known truth (fixed seeds, margins wide enough not to flake)."""
import math

import numpy as np
import pytest

from gatscale.core import stats


def _lognormal(rng, median, sd, n):
    return np.exp(np.log(median) + sd * rng.standard_normal(n))


def test_welch_interval_covers_the_true_log_ratio_at_its_level():
    rng = np.random.default_rng(0)
    true = math.log(20 / 30)
    covered = 0
    for _ in range(1000):
        c = stats.compare(_lognormal(rng, 20, 0.25, 3), _lognormal(rng, 30, 0.25, 4))
        covered += c.lo < true < c.hi
    assert 0.93 <= covered / 1000 <= 0.97


def test_paired_interval_covers_with_a_shared_seed_effect():
    rng = np.random.default_rng(1)
    true, covered = math.log(0.5), 0
    for _ in range(1000):
        seed_effect = 0.4 * rng.standard_normal(4)           # what both arms share at one seed
        a = np.exp(math.log(10) + true + seed_effect + 0.1 * rng.standard_normal(4))
        b = np.exp(math.log(10) + seed_effect + 0.1 * rng.standard_normal(4))
        c = stats.compare(a, b, paired=True)
        covered += c.lo < true < c.hi
    assert 0.93 <= covered / 1000 <= 0.97


def test_a_study_wide_spread_is_students_pooled_t_when_it_pools_just_the_two_sides():
    from scipy.stats import ttest_ind

    rng = np.random.default_rng(7)
    a, b = _lognormal(rng, 20, 0.3, 3), _lognormal(rng, 30, 0.3, 4)
    c = stats.compare(a, b, spread=stats.pooled_spread([a, b]), level=0.9)
    ci = ttest_ind(np.log(a), np.log(b), equal_var=True).confidence_interval(confidence_level=0.9)
    assert (c.lo, c.hi) == pytest.approx((ci.low, ci.high), rel=1e-12) and c.df == 5


def test_a_study_wide_spread_covers_at_its_level_and_narrows_the_interval():
    rng = np.random.default_rng(8)
    true, covered, pooled_w, welch_w = math.log(20 / 30), 0, [], []
    for _ in range(1000):
        a, b = _lognormal(rng, 20, 0.25, 3), _lognormal(rng, 30, 0.25, 3)
        others = [_lognormal(rng, m, 0.25, 3) for m in (15, 40)]    # other sets of the study: their spread only
        c = stats.compare(a, b, spread=stats.pooled_spread([a, b, *others]))
        covered += c.lo < true < c.hi
        pooled_w.append(c.hi - c.lo)
        welch = stats.compare(a, b)
        welch_w.append(welch.hi - welch.lo)
    assert 0.93 <= covered / 1000 <= 0.97
    assert np.median(pooled_w) < 0.8 * np.median(welch_w)  # 8 degrees of freedom against Welch's ~4 (seen 0.76)


def test_identical_arms_are_rarely_called_different():
    rng = np.random.default_rng(2)
    wrong = sum(stats.compare(_lognormal(rng, 25, 0.3, 3), _lognormal(rng, 25, 0.3, 3)).verdict(0.1)
                in ("A lower", "B lower") for _ in range(2000))
    assert wrong / 2000 <= 0.07


def test_verdicts_read_the_interval():
    big = stats.compare([10, 11, 10.5], [30, 33, 31])
    assert big.verdict(0.1) == "A lower" and big.ratio == pytest.approx(1 / 3, rel=0.05)
    assert stats.compare([30, 33, 31], [10, 11, 10.5]).verdict(0.1) == "B lower"
    same = stats.compare([20.0, 20.1, 19.9, 20.05], [20.02, 19.95, 20.1, 20.0])
    assert same.verdict(0.1) == "equivalent"
    assert same.verdict(0.0) == "unresolved"
    assert stats.compare([20, 40], [25, 30]).verdict(0.1) == "unresolved"


def test_one_seed_a_side_has_no_interval_and_borrows_a_spread_for_the_seeds_it_needs():
    c = stats.compare([20.0], [30.0])
    assert math.isnan(c.lo) and c.verdict(0.1) == "unresolved" and math.isnan(c.p_a_lower)
    assert stats.seeds_needed(c, 0.1) is None
    spread = stats.pooled_spread([[20, 22, 21], [30, 36], [5.0]])
    assert spread.df == 3
    n = stats.seeds_needed(c, 0.1, spread)
    assert n is not None and n >= 2


def test_seeds_needed_resolves_a_simulated_study_about_as_often_as_promised():
    # With the spread known and the effect as seen, n seeds should resolve a study at least about half the time.
    rng = np.random.default_rng(3)
    c = stats.compare(_lognormal(rng, 20, 0.3, 2), _lognormal(rng, 26, 0.3, 2))
    n = stats.seeds_needed(c, 0.0, stats.Spread(0.3, 1000))
    assert n is not None
    resolved = sum(stats.compare(_lognormal(rng, 20, 0.3, n), _lognormal(rng, 20 * math.exp(abs(c.effect)), 0.3, n))
                   .verdict(0.0) == "A lower" for _ in range(400))
    assert 0.3 <= resolved / 400


def test_p_a_lower_follows_the_effect():
    assert stats.compare([10, 11, 12], [20, 21, 22]).p_a_lower > 0.99
    assert stats.compare([20, 21, 22], [10, 11, 12]).p_a_lower < 0.01


def test_spent_level_splits_the_error_rate_over_the_looks():
    assert stats.spent_level(0.95, 1) == pytest.approx(0.95)
    assert stats.spent_level(0.95, 4) == pytest.approx(1 - 0.0125)
    with pytest.raises(ValueError):
        stats.spent_level(0.95, 0)


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="positive finite"):
        stats.compare([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="as many"):
        stats.compare([1.0, 2.0], [1.0], paired=True)


def _ladder(rng, x, b, sd, seeds):
    return [list(50 * (xi / x[0]) ** b * np.exp(sd * rng.standard_normal(n))) for xi, n in zip(x, seeds)]


LADDER = np.array([16, 32, 40, 48], float) ** 2   # the demo's sizes, compute ~ width^2


def test_scaling_law_recovers_the_exponent_and_uses_every_seed():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    values = [[100 * xi ** -0.5 * f for f in (0.98, 1.02)] for xi in x[:3]] + [[100 * 8 ** -0.5] * 6]
    law = stats.fit_scaling_law(x, values)
    assert law.b == pytest.approx(-0.5, abs=1e-3) and law.n == 4 and law.runs == 12 and law.df == 10
    assert law.b_lo < -0.5 < law.b_hi
    one = stats.fit_scaling_law(x, [[v[0]] for v in values])      # one seed per size: fewer degrees of freedom
    assert one.df == 2 and (one.b_hi - one.b_lo) > (law.b_hi - law.b_lo)


def test_seed_aware_exponent_interval_covers_at_its_level():
    rng = np.random.default_rng(4)
    hits = 0
    for _ in range(500):
        law = stats.fit_scaling_law(LADDER, _ladder(rng, LADDER, -0.3, rng.uniform(0.1, 0.3), rng.integers(1, 4, 4)))
        hits += law.b_lo < -0.3 < law.b_hi
    assert 0.92 <= hits / 500 <= 0.98


def test_backtest_80_interval_covers_the_held_out_mean_70_to_90_percent():
    # the held-out truth: the geometric mean of the largest size's seeds (docs/figures.md)
    rng = np.random.default_rng(5)
    c80 = c95 = 0
    for _ in range(300):
        bt = stats.backtest(LADDER, _ladder(rng, LADDER, rng.uniform(-0.6, -0.1), rng.uniform(0.1, 0.3),
                                            rng.integers(1, 4, 4)))
        c80 += bt.inside80
        c95 += bt.inside95
    assert 0.74 <= c80 / 300 <= 0.86 and 0.91 <= c95 / 300 <= 0.99


def test_backtest_catches_a_law_that_bends_at_the_largest_size():
    rng = np.random.default_rng(6)
    outside = 0
    for _ in range(200):
        values = _ladder(rng, LADDER, -0.4, 0.1, [2, 2, 2, 2])
        values[-1] = [v * 3 for v in values[-1]]          # XL three times worse than the law says
        outside += not stats.backtest(LADDER, values).inside95
    assert outside / 200 > 0.8


def test_backtest_needs_three_runs_below_the_largest_size():
    assert stats.backtest([1, 2], [[10.0], [8.0]]) is None
    assert stats.backtest([1, 2, 4], [[10.0], [8.0], [7.0]]) is None        # two runs below: no residual left
    assert stats.backtest([1, 2, 4], [[10.0], [8.0, 8.6], [7.0]]) is not None


def test_metric_se_lowers_the_weight_of_a_noisy_measurement():
    x = [1.0, 2.0, 4.0, 8.0]
    values = [[100.0], [100 * 2 ** -0.5], [100 * 4 ** -0.5], [100 * 8 ** -0.5 * 2]]   # the largest is off the law
    plain = stats.fit_scaling_law(x, values)
    noisy = stats.fit_scaling_law(x, values, se=[[0.5], [0.3], [0.2], [60.0]])    # ... and measured poorly
    assert abs(noisy.b + 0.5) < abs(plain.b + 0.5)
    assert stats.fit_scaling_law(x, values, se=[None, None, None, None]).b == pytest.approx(plain.b)


def test_prediction_interval_widens_with_extrapolation_and_narrows_with_seeds():
    rng = np.random.default_rng(7)
    law = stats.fit_scaling_law(LADDER, _ladder(rng, LADDER, -0.3, 0.2, [3, 3, 3, 3]))
    ratio = lambda x, seeds: np.divide(*law.interval(x, 0.8, seeds)[::-1])
    assert ratio(LADDER[-1] * 16, 1) > ratio(LADDER[-1], 1) > ratio(LADDER[-1], 4) > ratio(LADDER[-1], math.inf)
    assert law.quantile(LADDER[-1], 0.5) == pytest.approx(law(LADDER[-1]))


def test_seeds_needed_on_a_study_spread_counts_the_studys_degrees_of_freedom():
    a, b = [20.0, 26.0, 23.0], [27.0, 33.0, 30.0]
    welch = stats.compare(a, b)
    pooled = stats.compare(a, b, spread=stats.Spread(sd=welch.sd, df=30))   # the same spread, 30 df behind it
    assert pooled.pooled and not welch.pooled
    assert stats.seeds_needed(pooled, 0.1) < stats.seeds_needed(welch, 0.1)
