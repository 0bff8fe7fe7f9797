"""Reference statistics of the real images: feature mean/covariance (for FID) and a feature subset
(for precision/recall), computed once and cached as an `.npz`.

Two kinds of file are read:
- ours: mu, sigma (float64), features (float32, a seeded random subset of up to 10,000 real
  images, for precision/recall), extractor, feature_layer, num_images, source;
- the ADM evaluator's reference batches (e.g. `VIRTUAL_imagenet256_labeled.npz`): mu, sigma of
  Inception pool features (2048-d), taken as `inception` statistics; no features, so no
  precision/recall against them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gatscale.core.atomic import atomic_open
from ..data import cache_root

MAX_PRC_FEATURES = 10_000


class FeatureMoments:
    """Streaming mean/covariance (float64 sums) plus a uniform random subset of the feature rows
    (the rows with the smallest seeded random keys), all in bounded memory."""

    def __init__(self, dim: int, max_kept: int = MAX_PRC_FEATURES, seed: int = 0):
        self.n = 0
        self.sum, self.outer = torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dim, dtype=torch.float64)
        self.kept, self.keys, self.max_kept = torch.zeros(0, dim), torch.zeros(0), max_kept
        self.rng = torch.Generator().manual_seed(seed)

    def update(self, feats: torch.Tensor):
        x = feats.detach().to("cpu", torch.float64)
        self.n += len(x)
        self.sum += x.sum(0)
        self.outer += x.T @ x
        self.kept = torch.cat([self.kept, x.float()])
        self.keys = torch.cat([self.keys, torch.rand(len(x), generator=self.rng)])
        if len(self.keys) > self.max_kept:
            keep = self.keys.topk(self.max_kept, largest=False).indices.sort().values
            self.kept, self.keys = self.kept[keep], self.keys[keep]

    def stats(self) -> dict:
        if self.n < 2:
            raise ValueError(f"reference statistics need at least 2 images, got {self.n}")
        mu = self.sum / self.n
        sigma = (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return {"mu": mu.numpy(), "sigma": sigma.numpy(), "features": self.kept.numpy(), "num_images": self.n}


def default_reference_path(cfg, extractor_kind: str, use_reference_stats: bool = True) -> Path:
    """cfg.eval.reference_stats (the main extractor's file; `use_reference_stats=False` for the others), else beside
    the data (data.path), else in the gatscale cache."""
    if cfg.eval.reference_stats and use_reference_stats:
        return Path(cfg.eval.reference_stats)
    name = f"reference-{cfg.data.source}-{cfg.data.resolution}px-{extractor_kind}.npz"
    return Path(cfg.data.path) / name if cfg.data.path else cache_root() / "reference" / name


def save_reference(path, stats: dict, extractor_kind: str, feature_layer: str, source: str):
    with atomic_open(path) as f:
        np.savez(f, mu=stats["mu"], sigma=stats["sigma"], features=stats["features"], num_images=stats["num_images"],
                 extractor=extractor_kind, feature_layer=feature_layer, source=source)


def load_reference(path, extractor_kind: str, feature_dim: int) -> dict:
    """Read our cache or an ADM reference `.npz`; check that it matches the feature extractor."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npz of reference statistics ({e})") from None
    if "mu" not in data or "sigma" not in data:
        raise ValueError(f"{path}: reference statistics need arrays 'mu' and 'sigma'; found {sorted(data.files)}")
    kind = str(data["extractor"]) if "extractor" in data else "inception"  # ADM files: Inception pool3
    if kind != extractor_kind:
        raise ValueError(f"{path}: statistics were computed with the '{kind}' feature extractor, but "
                         f"eval.feature_extractor = {extractor_kind!r}; use a matching file or delete it to recompute")
    mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
    if mu.shape != (feature_dim,) or sigma.shape != (feature_dim, feature_dim):
        raise ValueError(f"{path}: mu {mu.shape} / sigma {sigma.shape} do not match the {feature_dim}-d features "
                         f"of the '{extractor_kind}' extractor")
    return {"mu": mu, "sigma": sigma, "path": str(path),
            "features": torch.from_numpy(data["features"]) if "features" in data else None,
            "num_images": int(data["num_images"]) if "num_images" in data else None}


@torch.no_grad()
def compute_reference(image_batches, extract, feature_dim: int, max_images: int | None = None) -> dict:
    """Moments of `extract(uint8 batch) -> (B, D) features` over an iterable of uint8 (B,3,H,W)
    batches, stopping after max_images."""
    moments = FeatureMoments(feature_dim)
    for images in image_batches:
        images = torch.as_tensor(images)
        if max_images is not None:
            images = images[: max_images - moments.n]
        if len(images):
            moments.update(extract(images))
        if max_images is not None and moments.n >= max_images:
            break
    return moments.stats()
