"""Samples for evaluation: N images from a generator with balanced classes, as uint8 (B,3,R,R).

Follows the official sampler (`generate.py`): z ~ N(0, I), class labels uniform over classes, optional
truncation (psi = 0: none, psi = 1: the class mean w), decode through the tokenizer, uint8 images.
Unlike `generate.py` the labels are exactly balanced (class counts differ by at most one) and the
whole set is a function of the seed. `NpzWriter` streams them into the ADM evaluator's `.npz`
(`arr_0` NHWC uint8 images, `arr_1` int64 labels) without holding 50K images in memory.
"""
from __future__ import annotations

import contextlib
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from gatscale.core.atomic import atomic_open


def build_eval_tokenizer(cfg, device, decoder: str | None = None):
    """The run's tokenizer decoding with `decoder` (default data.vae_decoder: ft-ema, as the official sampler),
    in float32 unless eval.precision is bf16."""
    from gatscale.data.vae import build_tokenizer

    dtype = torch.bfloat16 if cfg.eval.precision == "bf16" else torch.float32
    return build_tokenizer(cfg.data.tokenizer, decoder or cfg.data.vae_decoder, scale=cfg.data.scale, device=device,
                           dtype=dtype)


def balanced_labels(num_samples: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    """Exactly `num_samples` int64 labels, every class num_samples // num_classes times, the remaining
    num_samples % num_classes on distinct random classes; shuffled; deterministic given the seed."""
    if num_samples < 1 or num_classes < 1:
        raise ValueError(f"balanced_labels: num_samples = {num_samples}, num_classes = {num_classes}: "
                         "both must be >= 1")
    g = torch.Generator().manual_seed(seed)
    full = torch.arange(num_classes).repeat(num_samples // num_classes)
    extra = torch.randperm(num_classes, generator=g)[: num_samples % num_classes]
    labels = torch.cat([full, extra])
    return labels[torch.randperm(num_samples, generator=g)]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> rounded uint8 in [0, 255]."""
    return (images.float() * 255 + 0.5).clamp(0, 255).to(torch.uint8)


def eval_inputs(G, num_samples: int, batch_size: int, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (z (B, z_dim), labels (B,)) CPU batches, num_samples in total: balanced labels (`seed`) and
    z ~ N(0, I) from a private generator (seed + 1), so they depend on the seed only (not on the device or
    on the global RNG state the trainer uses)."""
    labels = balanced_labels(num_samples, G.num_classes, seed)
    g = torch.Generator().manual_seed(seed + 1)
    for start in range(0, num_samples, batch_size):
        y = labels[start:start + batch_size]
        yield torch.randn(len(y), G.z_dim, generator=g), y


@torch.no_grad()
def generate_images(G, tokenizer, num_samples: int, batch_size: int = 64, truncation_psi: float = 0.0,
                    seed: int = 0, device=None, precision: str = "fp32") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images (B,3,R,R) on CPU, labels (B,)) batches, num_samples in total.

    z and labels come from `eval_inputs`, so the samples depend on the seed only. G runs in float32 (TF32
    where the caller allows it), as the official sampler and in-training FID do, also inside a caller's
    autocast; precision 'bf16' runs it under bf16 autocast. The tokenizer decodes in its own dtype.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision = {precision!r}: must be 'fp32' or 'bf16'")
    device = torch.device(device) if device is not None else next(G.parameters()).device
    for z, y in eval_inputs(G, num_samples, batch_size, seed):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            latents = G(z.to(device), y.to(device), truncation_psi=truncation_psi)
        images = tokenizer.decode(latents.float())
        yield to_uint8(images).cpu(), y


class NpzWriter:
    """Stream uint8 (B,3,H,W) batches into an ADM-evaluator `.npz`: arr_0 (N,H,W,3) uint8, arr_1 (N,) int64.

    Use as a context manager. The archive goes through `atomic_open`: it appears at `path` only when all N
    images have arrived, and an error (or too few images) leaves no file behind.
    """

    def __init__(self, path, num_samples: int, resolution: int):
        self.path, self.num_samples, self.resolution = Path(path), num_samples, resolution
        self.stack = contextlib.ExitStack()  # closed in __exit__: the ZipFile, then atomic_open
        file = self.stack.enter_context(atomic_open(self.path))
        self.zip = self.stack.enter_context(zipfile.ZipFile(file, "w", allowZip64=True))
        self.images = self.zip.open("arr_0.npy", "w", force_zip64=True)
        shape = (num_samples, resolution, resolution, 3)
        np.lib.format.write_array_header_2_0(self.images, {"descr": "|u1", "fortran_order": False, "shape": shape})
        self.labels, self.count = [], 0

    def write(self, images: torch.Tensor, labels: torch.Tensor):
        if images.dtype != torch.uint8 or images.shape[1:] != (3, self.resolution, self.resolution):
            raise ValueError(f"NpzWriter({self.path}): expected uint8 (B,3,{self.resolution},{self.resolution}) "
                             f"images, got {tuple(images.shape)} {images.dtype}")
        if self.count + len(images) > self.num_samples:
            raise ValueError(f"NpzWriter({self.path}): more than the announced {self.num_samples} images")
        self.images.write(images.permute(0, 2, 3, 1).contiguous().numpy().tobytes())
        self.labels.append(labels.to(torch.int64).numpy())
        self.count += len(images)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.images.close()
        if exc_type is not None:
            return self.stack.__exit__(exc_type, exc, tb)  # closes the zip, deletes the temporary file
        with self.stack:  # closes the zip, then renames the file into place (or deletes it if this block fails)
            if self.count != self.num_samples:
                raise ValueError(f"NpzWriter({self.path}): got {self.count} images, announced {self.num_samples}")
            with self.zip.open("arr_1.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.concatenate(self.labels))
