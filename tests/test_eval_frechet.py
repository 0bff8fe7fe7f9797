"""FD's bootstrap standard error and FD_inf against Gaussian features whose truth is known in closed form."""
import numpy as np
import pytest
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

from gatscale.eval import frechet

# Diagonal Gaussians: generated N(m, diag s^2) against the reference N(0, diag r^2). Then
# FD = sum_i m_i^2 + (s_i - r_i)^2, and to first order in 1/n (the sample mean and standard deviation of a
# Gaussian are independent, Var(mean_i) = s_i^2 / n, Var(sd_i) = s_i^2 / 2n; the off-diagonal covariance
# entries enter the trace term only at second order) Var(FD_n) = sum_i (4 m_i^2 s_i^2 + 2 (s_i - r_i)^2 s_i^2) / n.
M = np.array([0.5, -0.3, 0.2, 0.0])
S = np.array([1.0, 1.5, 0.7, 1.2])
R = np.ones(4)


def closed_form_sd(n):
    return np.sqrt((4 * M**2 * S**2 + 2 * (S - R) ** 2 * S**2).sum() / n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bootstrap_se_of_fd_matches_the_closed_form_on_gaussian_features(seed):
    # tolerance 20 %: the bootstrap SD from 200 resamples carries ~5 % Monte Carlo error, the single sample's
    # own moments a few % more (over seeds 0-5 the ratio was 0.92-1.04)
    n = 4000
    features = M + S * np.random.default_rng(seed).standard_normal((n, 4))
    se = frechet.bootstrap_se(features, frechet.Reference(np.zeros(4), np.diag(R**2)), resamples=200, seed=seed)
    assert se == pytest.approx(closed_form_sd(n), rel=0.2)


def test_bootstrap_se_shrinks_as_one_over_root_n():
    ref = frechet.Reference(np.zeros(4), np.diag(R**2))
    rng = np.random.default_rng(3)
    small, large = (frechet.bootstrap_se(M + S * rng.standard_normal((n, 4)), ref, 200) for n in (1000, 16000))
    assert small / large == pytest.approx(4, rel=0.25)


def test_eigen_form_fd_equals_torch_fidelitys_sqrtm_form():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((500, 16)) @ rng.standard_normal((16, 16)))
    a = rng.standard_normal((16, 16))
    mu_r, sigma_r = rng.standard_normal(16), a @ a.T / 16 + np.eye(16)
    theirs = fid_statistics_to_metric(fid_features_to_statistics(x), {"mu": mu_r, "sigma": sigma_r}, verbose=False)
    ours = frechet.frechet_distance(x.mean(0), torch.cov(x.T), frechet.Reference(mu_r, sigma_r)).item()
    assert ours == pytest.approx(theirs["frechet_inception_distance"], rel=1e-8)


def test_fd_inf_recovers_the_infinite_sample_fd_that_fd_n_overestimates():
    # 64-d N(delta, I) against N(0, I) with |delta| = 1: FD_inf = 1 exactly, while FD at N = 5000 is biased up by
    # ~ d^2 / 4N + d / N ~ 0.2 (Chong & Forsyth 2020: the bias is linear in 1/N)
    d, n = 64, 5000
    ref = frechet.Reference(np.zeros(d), np.eye(d))
    features = np.eye(d)[0] + np.random.default_rng(0).standard_normal((n, d))
    x = torch.from_numpy(features)
    fd_n = frechet.frechet_distance(x.mean(0), torch.cov(x.T), ref).item()
    fd_inf, fit = frechet.fd_infinity(features, ref)
    assert fd_n - 1 > 0.15
    assert abs(fd_inf - 1) < 0.06
    assert fit["counts"][0] == 500 and fit["counts"][-1] == n and len(fit["counts"]) == 15
    assert fit["slope"] > 0 and fit["intercept_stderr"] < 0.05


def test_fd_inf_needs_three_sample_counts():
    ref = frechet.Reference(np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="at least 3 distinct sample counts"):
        frechet.fd_infinity(np.random.default_rng(0).standard_normal((2, 2)), ref)
