"""Training statistics by name (edm2's `training_stats` habit): reported where they arise, accumulated on the
device as a sum and a count per name, and averaged over the steps since the last log tick and over all ranks
in one all-reduce at that tick, so the logged losses and logits describe the whole global batch.

A statistic reported on some steps only (the per-group gradient norms, on log steps) is the mean of the steps
that reported it. Every rank must report the same names on the same steps (the all-reduce pairs them by name).
"""
import torch
import torch.distributed as dist

from .distributed import DistInfo


class StatsCollector:
    def __init__(self, device: torch.device, watched: tuple[str, ...] = ()):
        self.device, self.watched = device, watched
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.nonfinite = torch.zeros((), device=device)  # 1 once a watched statistic was not finite on this rank
        self.last: dict[str, torch.Tensor] = {}          # the latest report, to name what was not finite

    def report(self, stats: dict[str, torch.Tensor]):
        """Add one step's statistics (device tensors; no host sync)."""
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v.detach().float().reshape(())
            self.counts[k] = self.counts.get(k, 0) + 1
        for k in self.watched:
            if k in stats:
                self.nonfinite = torch.maximum(self.nonfinite, (~torch.isfinite(stats[k].float())).float().max())
        self.last = stats

    def nonfinite_names(self) -> list[str]:
        """The watched statistics of the latest report that are not finite (a host sync)."""
        return [k for k in self.watched if k in self.last and not torch.isfinite(self.last[k]).all()]

    def mean(self, info: DistInfo) -> dict[str, float]:
        """Each statistic's mean over the steps since the last call and over the ranks, then start over.
        One all-reduce (under DDP) and one host sync (this is a CPU-GPU sync point)."""
        names = sorted(self.sums)
        if not names:
            return {}
        counts = torch.tensor([float(self.counts[k]) for k in names], device=self.device)
        packed = torch.stack([torch.stack([self.sums[k] for k in names]), counts])  # (2, N): sums, counts
        if info.enabled:
            dist.all_reduce(packed)
        self.sums, self.counts = {}, {}
        return dict(zip(names, (packed[0] / packed[1]).tolist()))
