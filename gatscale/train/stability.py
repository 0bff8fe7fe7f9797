"""Non-NaN GAN failure modes (train.stability): the watch the trainer asks at every log tick and FID evaluation.

NaN/inf is the trainer's own check (every `divergence_check_every` steps). A GAN can also fail without a NaN:
the discriminator wins outright (its relativistic loss softplus(-(real - fake)) -> 0 while G's loss grows, the
logit gap widens), or the samples get worse than at the start (FID rises). Each mode has a threshold in
StabilityConfig (0 = off); a mode that holds on `patience` consecutive ticks ends the run as `diverged`.
"""
from __future__ import annotations

import math

from gatscale.core.config import StabilityConfig
from ..tracking.metrics_log import FD_METRICS  # noqa: F401 (the trainer reads it from here)


class StabilityWatch:
    """check(values) -> the reason the run is unstable, or None. `values`: the metrics of this tick (the
    log-interval means of the losses and logits, and/or this step's FID)."""

    def __init__(self, cfg: StabilityConfig):
        self.cfg = cfg
        self.first_fd: float | None = None   # the first FID seen by this process (a resumed run starts over)
        self.strikes: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        c = self.cfg
        return any(v > 0 for v in (c.d_loss_below, c.g_loss_above, c.logit_gap_above, c.fd_rise))

    def modes(self, values: dict) -> dict[str, str]:
        """{mode: what was seen} for every enabled mode that holds in `values` (a mode whose metric is absent
        from this tick keeps its count)."""
        c, seen = self.cfg, {}
        if c.d_loss_below > 0 and "loss/d_adv" in values and values["loss/d_adv"] < c.d_loss_below:
            seen["d_loss_below"] = f"D relativistic loss {values['loss/d_adv']:.3g} < {c.d_loss_below:g}"
        if c.g_loss_above > 0 and "loss/g" in values and values["loss/g"] > c.g_loss_above:
            seen["g_loss_above"] = f"G loss {values['loss/g']:.3g} > {c.g_loss_above:g}"
        if c.logit_gap_above > 0 and {"logits/real", "logits/fake"} <= set(values):
            gap = abs(values["logits/real"] - values["logits/fake"])
            if gap > c.logit_gap_above:
                seen["logit_gap_above"] = f"logit gap |real - fake| {gap:.3g} > {c.logit_gap_above:g}"
        fd_key = next((k for k in FD_METRICS if k in values and math.isfinite(values[k])), None)
        if c.fd_rise > 0 and fd_key:
            if self.first_fd is None:
                self.first_fd = values[fd_key]
            elif values[fd_key] > c.fd_rise * self.first_fd:
                seen["fd_rise"] = f"{fd_key} {values[fd_key]:.4g} > {c.fd_rise:g} x its first value {self.first_fd:.4g}"
        return seen

    def check(self, values: dict) -> str | None:
        seen = self.modes(values)
        watched = {"d_loss_below": "loss/d_adv", "g_loss_above": "loss/g", "logit_gap_above": "logits/real",
                   "fd_rise": None}
        for mode, metric in watched.items():
            present = any(k in values for k in FD_METRICS) if metric is None else metric in values
            if mode in seen:
                self.strikes[mode] = self.strikes.get(mode, 0) + 1
            elif present:
                self.strikes[mode] = 0
        fired = [seen[m] for m in seen if self.strikes[m] >= self.cfg.patience]
        if not fired:
            return None
        ticks = f" on {self.cfg.patience} ticks in a row" if self.cfg.patience > 1 else ""
        return "unstable: " + "; ".join(fired) + ticks
