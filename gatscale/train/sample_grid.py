"""Periodic sample grids from the EMA generator, decoded through the tokenizer (VAE or pixels)."""
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import make_grid
from PIL import Image

from ..atomic import atomic_open


@torch.no_grad()
def save_sample_grid(G, z, y, tokenizer, path: Path, tracker=None, autocast=None, truncation_psi: float = 0.0):
    """One image per (z, y), no truncation by default (the official 'samples w/o trunc'); atomic PNG."""
    with autocast() if autocast else torch.autocast("cpu", enabled=False):
        latents = G(z, y, truncation_psi=truncation_psi)
    images = tokenizer.decode(latents.float()).clamp(0, 1).cpu()
    grid = make_grid(images, nrow=max(int(len(images) ** 0.5), 1), padding=1)
    save_png(grid.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy(), path)
    if tracker is not None:
        tracker.log_artifact(path, "samples")
    return path


def save_png(array: np.ndarray, path):
    """A uint8 (H, W, 3) array as a PNG, written atomically."""
    with atomic_open(path, "wb") as f:
        Image.fromarray(array).save(f, format="PNG")
