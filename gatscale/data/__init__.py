"""The data layer: sharded latents (+ raw uint8 images for REPA) and the loaders the trainer calls.

    info = dataset_info(cfg.data)
    for batch in build_train_loader(cfg.data, batch_size, rank, world_size, seed, start_step):
        x = sample_latents(batch["latent"].to(device), cfg.data.scale)   # (mean + std*eps) * scale

Pass the same `seed` on every rank: the order of images is shared by all ranks, which take disjoint parts.
`source: digits` prepares the embedded digits set into the shard format on first use (cached, see
`digits_cache_dir`); `source: shards` reads a folder written by `gatscale extract-latents`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from gatscale.core.config import ConfigError, DataConfig
from .digits import load_digits_images, prepare_digits
from .loader import StepBatches, batch_loader
from .shards import ShardSet


@dataclass
class DatasetInfo:
    num_images: int
    num_classes: int
    latent_channels: int
    latent_size: int
    image_resolution: int
    class_names: list[str]


def cache_root() -> Path:
    """$GATSCALE_CACHE, default ~/.cache/gatscale: prepared digits, the digits CNN, reference statistics."""
    return Path(os.environ.get("GATSCALE_CACHE") or Path.home() / ".cache" / "gatscale").expanduser()


def digits_cache_dir(cfg: DataConfig) -> Path:
    """data.path if set, else cache_root() / digits-<resolution>-<tokenizer>."""
    if cfg.path:
        return Path(cfg.path).expanduser()
    return cache_root() / f"digits-{cfg.resolution}-{cfg.tokenizer}"


def open_shards(cfg: DataConfig) -> ShardSet:
    """The shard set `cfg` names (preparing digits if needed), checked against the config."""
    if cfg.source == "digits":
        path = prepare_digits(digits_cache_dir(cfg), cfg.resolution, cfg.tokenizer)
    elif cfg.source == "shards":
        if not cfg.path or not Path(cfg.path).expanduser().is_dir():
            raise ConfigError(None, "data.path", cfg.path, "folder not found; it must be the output folder of "
                                                           "`gatscale extract-latents`")
        path = Path(cfg.path).expanduser()
    else:
        raise ConfigError(None, "data.source", cfg.source, "must be 'digits' or 'shards'")
    shards = ShardSet(path)
    index, where = shards.index, str(path / "index.json")
    if index["tokenizer"]["kind"] != cfg.tokenizer:
        raise ConfigError(where, "data.tokenizer", cfg.tokenizer,
                          f"the shards hold {index['tokenizer']['kind']!r} latents; set data.tokenizer to match")
    if index["resolution"] != cfg.resolution:
        raise ConfigError(where, "data.resolution", cfg.resolution,
                          f"the shards were extracted at resolution {index['resolution']}; "
                          "set data.resolution to match")
    if index["num_classes"] != cfg.num_classes:
        raise ConfigError(where, "data.num_classes", cfg.num_classes,
                          f"the shards hold {index['num_classes']} classes; set data.num_classes to match")
    if cfg.load_images and "image" not in index["fields"]:
        raise ConfigError(where, "data.load_images", True,
                          "the shards hold no raw images (extracted with --no-images); set data.load_images: false "
                          "(and method.repa: false)")
    return shards


def dataset_info(cfg: DataConfig) -> DatasetInfo:
    shards = open_shards(cfg)
    index, latent_shape = shards.index, shards.fields["latent"]["shape"]
    return DatasetInfo(num_images=len(shards), num_classes=index["num_classes"], latent_channels=latent_shape[0] // 2,
                       latent_size=latent_shape[-1], image_resolution=index["resolution"],
                       class_names=list(index["class_names"]))


def build_train_loader(cfg: DataConfig, batch_size: int, rank: int, world_size: int, seed: int,
                       start_step: int = 0) -> Iterator[dict]:
    """Infinite iterator of per-rank batches {"latent": float32 (B,2C,h,w) [mean, std], "label": int64 (B,),
    "image": uint8 (B,3,R,R) if cfg.load_images}, from step `start_step` on (see loader.py for the order)."""
    shards = open_shards(cfg)
    sampler = StepBatches(len(shards), batch_size, rank, world_size, seed, start_step)
    return iter(batch_loader(shards, sampler, cfg.load_images, cfg.num_workers))


def sample_latents(moments: torch.Tensor, scale: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A draw from the stored posterior: (mean + std * eps) * scale, eps ~ N(0, I) (REPA/GAT preprocessing)."""
    mean, std = moments.chunk(2, dim=1)
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return (mean + std * eps) * scale


def iterate_images(cfg: DataConfig, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """All real images in stored order as (uint8 (B,3,R,R), int64 labels), e.g. for FID reference statistics."""
    shards = open_shards(cfg)
    if "image" not in shards.fields:
        raise ConfigError(str(shards.path / "index.json"), "data.path", str(shards.path),
                          "the shards hold no raw images (extracted with --no-images)")
    for lo in range(0, len(shards), batch_size):
        idx = np.arange(lo, min(lo + batch_size, len(shards)))
        yield torch.from_numpy(shards.gather("image", idx)), torch.from_numpy(shards.gather("label", idx, np.int64))


__all__ = ["DatasetInfo", "dataset_info", "build_train_loader", "sample_latents", "iterate_images",
           "load_digits_images", "prepare_digits", "cache_root", "digits_cache_dir", "open_shards"]
