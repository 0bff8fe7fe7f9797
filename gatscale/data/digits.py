"""The embedded digits data set: scikit-learn's `load_digits` (1,797 8x8 images, 10 classes) as
small RGB uint8 images, so CPU runs, tests and the demo need no download.

`gatscale prepare-digits DEST [--resolution 16]` writes it in the shard format of `extract-latents`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

DIGITS_CLASS_NAMES = [str(i) for i in range(10)]


def load_digits_images(resolution: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as (images uint8 (N,3,R,R), labels int64 (N,)), in scikit-learn's order.

    Values 0..16 are scaled to 0..255 (white strokes on black), the 8x8 image is resized to R x R by
    BILINEAR interpolation (align_corners=False; antialiased when R < 8) and replicated to 3 channels.
    """
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"load_digits_images: resolution = {resolution!r}: expected a positive integer (e.g. 16)")
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) * (255.0 / 16.0))[:, None]  # (N,1,8,8) in 0..255
    if resolution != 8:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                          antialias=resolution < 8)
    images = x.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous().numpy()
    return images, digits.target.astype(np.int64)
