"""The Fréchet distance between generated and reference features: its sampling standard error and its value at
infinitely many samples.

    FD = ||mu_g - mu_r||^2 + tr(S_g + S_r - 2 (S_r^1/2 S_g S_r^1/2)^1/2)        (Heusel et al. 2017, FID)

The trace of the square root is the sum of the square roots of the eigenvalues of the symmetric PSD matrix
S_r^1/2 S_g S_r^1/2, which has the spectrum of torch-fidelity's sqrtm(S_g S_r): the same number, in one batched
`eigvalsh` per resample instead of one `sqrtm`. The reported FD itself stays torch-fidelity's (fid.py).

- `bootstrap_se`: the standard deviation of FD over resamples (with replacement) of the generated feature rows,
  the reference statistics held fixed: the sampling error of the generated side, from the features already
  extracted (no new samples). Logged as `<metric>_se`.
- `fd_infinity`: FD of random subsets (without replacement) at 15 sample counts from N/10 to N, a least-squares
  fit FD_N = FD_inf + k / N in 1/N, and its intercept (Chong & Forsyth 2020, "Effectively Unbiased FID and
  Inception Score and where to find them", CVPR; their code: 15 points from 5,000 to 50,000). Logged as
  `<metric>_inf`.
"""
from __future__ import annotations

import numpy as np
import torch

SE_RESAMPLES = 100   # bootstrap resamples: the SE itself is then known to about 1/sqrt(2 * 100) = 7 %
INF_POINTS = 15      # sample counts of the FD_inf fit (Chong & Forsyth's num_points)
INF_MIN_SHARE = 0.1  # the smallest count as a share of N (theirs: 5,000 of 50,000)
_CHUNK_BYTES = 2e8   # float64 work memory per batch of resamples


class Reference:
    """The reference side of FD (mu_r, S_r), with S_r^1/2 and tr S_r computed once, as float64 on `device`."""

    def __init__(self, mu, sigma, device="cpu"):
        self.mu = torch.as_tensor(np.asarray(mu), dtype=torch.float64, device=device)
        self.sigma = torch.as_tensor(np.asarray(sigma), dtype=torch.float64, device=device)
        w, v = torch.linalg.eigh(self.sigma)
        self.root = (v * w.clamp(min=0).sqrt()) @ v.T
        self.trace = torch.diagonal(self.sigma).sum()

    def shifted(self, center: torch.Tensor) -> "Reference":
        """The same reference in coordinates centred on `center` (FD is invariant to a shift of both sides)."""
        out = Reference.__new__(Reference)
        out.mu, out.sigma, out.root, out.trace = self.mu - center, self.sigma, self.root, self.trace
        return out


def frechet_distance(mu: torch.Tensor, sigma: torch.Tensor, ref: Reference) -> torch.Tensor:
    """FD of (mu (..., d), sigma (..., d, d)) against `ref`; batched over the leading dimensions."""
    m = ref.root @ sigma @ ref.root                                          # (..., d, d), symmetric PSD
    m = (m + m.transpose(-1, -2)) / 2
    tr_sqrt = torch.linalg.eigvalsh(m).clamp(min=0).sqrt().sum(-1)          # tr (S_r^1/2 S_g S_r^1/2)^1/2
    return ((mu - ref.mu) ** 2).sum(-1) + torch.diagonal(sigma, dim1=-2, dim2=-1).sum(-1) + ref.trace - 2 * tr_sqrt


def _moments(x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and covariance (unbiased for integer counts summing to n) of rows x (n, d) per row of
    weights (B, n): the moments of B resamples without building them."""
    n = weights.sum(-1, keepdim=True)                                        # (B, 1)
    mu = weights @ x / n                                                     # (B, d)
    second = torch.einsum("bn,ni,nj->bij", weights, x, x)                    # (B, d, d)
    sigma = (second - n[..., None] * mu[:, :, None] * mu[:, None, :]) / (n[..., None] - 1)
    return mu, sigma


def bootstrap_se(features, ref: Reference, resamples: int = SE_RESAMPLES, seed: int = 0) -> float:
    """Standard deviation of FD over `resamples` bootstrap resamples of the generated features (n, d)."""
    x = torch.as_tensor(features).to(ref.mu.device, torch.float64)
    n, d = x.shape
    center = x.mean(0)
    x, ref = x - center, ref.shifted(center)  # centred: float64 second moments lose nothing to a large mean
    g = torch.Generator(device="cpu").manual_seed(seed)
    chunk = max(1, int(_CHUNK_BYTES // (8 * d * max(d, n))))
    values = []
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        idx = torch.randint(n, (b, n), generator=g).to(x.device)
        counts = torch.zeros(b, n, dtype=torch.float64, device=x.device).scatter_add_(
            1, idx, torch.ones(b, n, dtype=torch.float64, device=x.device))
        values.append(frechet_distance(*_moments(x, counts), ref))
    return torch.cat(values).std().item()


def inf_counts(n: int) -> list[int]:
    """The sample counts of the FD_inf fit for n features: 15 from n/10 to n (fewer when n is small)."""
    return sorted({int(c) for c in np.linspace(max(2, round(INF_MIN_SHARE * n)), n, INF_POINTS)})


def fd_infinity(features, ref: Reference, seed: int = 0) -> tuple[float, dict]:
    """FD extrapolated to infinitely many samples: the intercept of FD_N = FD_inf + k / N (least squares in 1/N)
    over random subsets at `inf_counts(n)`. Returns (FD_inf, the fit: counts, FD values, slope k, intercept SE)."""
    x = torch.as_tensor(features).to(ref.mu.device, torch.float64)
    counts = inf_counts(len(x))
    if len(counts) < 3:
        raise ValueError(f"FD_inf needs at least 3 distinct sample counts; {len(x)} features give {counts}")
    g = torch.Generator(device="cpu").manual_seed(seed)
    fds = []
    for c in counts:
        subset = x[torch.randperm(len(x), generator=g)[:c].to(x.device)]
        mu = subset.mean(0)
        fds.append(frechet_distance(mu, torch.cov(subset.T), ref).item())
    from scipy import stats  # here, not at the top: ~1 s of import every run that never asks for FD_inf

    fit = stats.linregress(1 / np.asarray(counts, float), fds)
    return float(fit.intercept), {"counts": counts, "fd": [round(v, 6) for v in fds], "slope": float(fit.slope),
                                  "intercept_stderr": float(fit.intercept_stderr)}
