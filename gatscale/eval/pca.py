"""PCA view of generator features (paper: early blocks go inactive without MNG).

For each chosen block, the output tokens of a few samples are projected on their first three
principal components (fitted jointly over all tokens of all samples of that block) and shown as
RGB on the token grid. One PNG: first row the generated images, then one row per block.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .samples import eval_inputs, to_uint8


@torch.no_grad()
def block_features(G, blocks: list[int], num_samples: int = 8, seed: int = 0, device=None,
                   truncation_psi: float = 0.0):
    """(latents (B,C,H,W), {block: its output tokens (B, N, hidden)}), captured with forward hooks."""
    device = torch.device(device) if device is not None else next(G.parameters()).device
    for b in blocks:
        if not 0 <= b < len(G.blocks):
            raise ValueError(f"--blocks: block {b} does not exist; the generator has blocks 0..{len(G.blocks) - 1}")
    z, y = next(eval_inputs(G, num_samples, num_samples, seed))
    z, y = z.to(device), y.to(device)
    captured = {}
    hooks = [G.blocks[b].register_forward_hook(lambda m, args, out, b=b: captured.__setitem__(b, out.float().cpu()))
             for b in blocks]
    try:
        latents = G(z, y, truncation_psi=truncation_psi)
    finally:
        for h in hooks:
            h.remove()
    return latents, captured


def pca_rgb(tokens: torch.Tensor) -> torch.Tensor:
    """(B, N, C) tokens -> (B, 3, g, g) in [0, 1]: first three principal components, each min-max
    scaled over all samples (robust: 1st-99th percentile)."""
    B, N, C = tokens.shape
    grid = int(round(N ** 0.5))
    x = tokens.reshape(B * N, C).double()
    x = x - x.mean(0)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    proj = x @ v[:3].T                                                   # (B*N, 3)
    lo, hi = torch.quantile(proj, 0.01, dim=0), torch.quantile(proj, 0.99, dim=0)
    proj = ((proj - lo) / (hi - lo).clamp(min=1e-12)).clamp(0, 1)
    return proj.float().reshape(B, grid, grid, 3).permute(0, 3, 1, 2)


def pca_grid(images: torch.Tensor, features: dict[int, torch.Tensor], cell: int = 64) -> np.ndarray:
    """uint8 HWC grid: row 0 the images, then one row of PCA maps per block (nearest upsampling)."""
    rows = [images.float().clamp(0, 1)] + [pca_rgb(features[b]) for b in sorted(features)]
    rows = [F.interpolate(r, size=(cell, cell), mode="nearest" if r.shape[-1] <= cell else "area") for r in rows]
    grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)  # (3, rows*cell, B*cell)
    return to_uint8(grid).permute(1, 2, 0).numpy()
