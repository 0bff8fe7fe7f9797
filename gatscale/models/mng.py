"""MNG: Multi-level Noise-perturbed image Guidance (official `losses/Rp_PT_loss.py`).

Level k of K (early -> final) is perturbed as x~_k = a_k * x_k + n_k with n_k ~ N(0, s_k^2 I).
The noises are coupled across levels like a forward-diffusion chain started at the final level:
    n_K = s_K * eps_K,   n_k = (a_k / a_{k+1}) * n_{k+1} + sqrt(s_k^2 - (a_k / a_{k+1})^2 s_{k+1}^2) * eps_k
(`apply_gaussian_list_cumulative`). Variants (`method.mng`):
  exp     official code: t_k = 1 - I_min^(1 - k/(K-1)) + 0.01, a = 1 - t, s = t
          -> t = [0.885, 0.76, 0.51, 0.01] for K = 4 (signal ~ 1/8, 1/4, 1/2, 1)
  linear  t_k decreasing linearly from 1 - I_min to 0, plus the offset (the paper's MNG-lin ablation)
  vp      the paper's formula as transcribed: a_k = I_min^(1 - k/(K-1)), s_k = sqrt(1 - a_k^2) (a_K = 1)
  off     one level (G's final output only), no noise (the paper's "w/o MNG")
"""
import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MNGSchedule:
    signal: tuple[float, ...]     # a_k, early -> final
    noise_std: tuple[float, ...]  # s_k

    @property
    def num_levels(self) -> int:
        return len(self.signal)

    def perturb(self, levels: torch.Tensor, eps: torch.Tensor | None = None):
        """levels (K, B, C, H, W) -> (perturbed levels, eps). Pass `eps` back to reuse the draws."""
        if levels.shape[0] != self.num_levels:
            raise ValueError(f"MNG schedule has {self.num_levels} levels, got {levels.shape[0]}")
        if eps is None:
            eps = torch.randn_like(levels)
        out, noise = [], None
        for k in reversed(range(self.num_levels)):
            a, s = self.signal[k], self.noise_std[k]
            if noise is None:
                noise = s * eps[k]
            else:
                ratio = a / self.signal[k + 1]
                incr_var = max(s * s - (ratio * self.noise_std[k + 1]) ** 2, 0.0)
                noise = ratio * noise + math.sqrt(incr_var) * eps[k]
            out.append(a * levels[k] + noise)
        return torch.stack(out[::-1]), eps


def _level_fractions(num_levels: int) -> list[float]:
    """k / (K - 1) for k = 0..K-1 (early -> final); [1.0] for a single level."""
    return [k / (num_levels - 1) if num_levels > 1 else 1.0 for k in range(num_levels)]


def mng_noise_levels(num_levels: int, min_info: float = 0.125, t_offset: float = 0.01,
                     variant: str = "exp") -> list[float]:
    """The rectified-flow noise levels t_k of the exp/linear variants, early -> final."""
    lam = _level_fractions(num_levels)
    if variant == "exp":
        return [1.0 - min_info ** (1.0 - lam_k) + t_offset for lam_k in lam]
    if variant == "linear":
        return [(1.0 - min_info) * (1.0 - lam_k) + t_offset for lam_k in lam]
    raise ValueError(f"noise levels are defined for 'exp' and 'linear', not {variant!r}")


def build_schedule(variant: str, num_levels: int = 4, min_info: float = 0.125, t_offset: float = 0.01) -> MNGSchedule:
    if variant == "off":
        return MNGSchedule(signal=(1.0,), noise_std=(0.0,))
    if variant in ("exp", "linear"):
        t = mng_noise_levels(num_levels, min_info, t_offset, variant)
        return MNGSchedule(signal=tuple(1.0 - v for v in t), noise_std=tuple(t))
    if variant == "vp":
        a = [min_info ** (1.0 - lam_k) for lam_k in _level_fractions(num_levels)]
        return MNGSchedule(signal=tuple(a), noise_std=tuple(math.sqrt(max(1.0 - v * v, 0.0)) for v in a))
    raise ValueError(f"unknown MNG variant {variant!r}; valid: exp, linear, vp, off")
