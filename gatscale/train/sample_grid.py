"""Periodic sample grids from the EMA generator, decoded through the tokenizer (VAE or pixels).

One row per class (its label written left of the row), each image upscaled (nearest) to at least
MIN_CELL px, so that 8x8 or 16x16 samples can be judged by eye.
"""
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from gatscale.core.atomic import atomic_open

MIN_CELL = 32       # tiny images are upscaled (nearest) to at least this side
PAD = 2             # pixels between cells
LABEL_WIDTH = 28    # the label column


def class_rows(num_classes: int, per_class: int = 8, max_rows: int = 10) -> torch.Tensor:
    """Labels for a grid of min(num_classes, max_rows) rows of `per_class` samples: [0]*8 + [1]*8 + ..."""
    return torch.arange(min(num_classes, max_rows)).repeat_interleave(per_class)


def class_grid(images: torch.Tensor, labels: torch.Tensor, class_names=None) -> np.ndarray:
    """(N,3,H,W) images in [0, 1] with their labels -> uint8 (H', W', 3): one row per class, in order of first
    appearance, the class name (or index) left of each row; images upscaled by an integer factor to >= MIN_CELL."""
    images = images.clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    factor = max(1, math.ceil(MIN_CELL / images.shape[-1]))
    cell = images.shape[-1] * factor
    classes = list(dict.fromkeys(labels.tolist()))
    cols = max(int((labels == c).sum()) for c in classes)
    canvas = Image.new("RGB", (LABEL_WIDTH + cols * (cell + PAD), len(classes) * (cell + PAD)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, c in enumerate(classes):
        top = r * (cell + PAD)
        name = str(class_names[c]) if class_names is not None and c < len(class_names) else str(c)
        draw.text((3, top + cell // 2 - 5), name[:4], fill="black")
        for j, image in enumerate(images[labels.cpu() == c]):
            tile = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((cell, cell), Image.NEAREST)
            canvas.paste(tile, (LABEL_WIDTH + j * (cell + PAD), top))
    return np.asarray(canvas)


@torch.no_grad()
def save_sample_grid(G, z, y, tokenizer, path: Path, tracker=None, autocast=None, truncation_psi: float = 0.0,
                     class_names=None):
    """One image per (z, y), no truncation by default (the official 'samples w/o trunc'), one row per class;
    atomic PNG, logged to the tracker under samples/."""
    with autocast() if autocast else torch.autocast("cpu", enabled=False):
        latents = G(z, y, truncation_psi=truncation_psi)
    images = tokenizer.decode(latents.float())
    save_png(class_grid(images, y, class_names), path)
    if tracker is not None:
        tracker.log_artifact(path, "samples")
    return path


def save_png(array: np.ndarray, path):
    """A uint8 (H, W, 3) array as a PNG, written atomically."""
    with atomic_open(path, "wb") as f:
        Image.fromarray(array).save(f, format="PNG")
