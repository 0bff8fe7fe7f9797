"""Per-block contribution to the output (paper Fig. 4b): LPIPS between images generated normally and
with one block's residual update removed, same z and y.

Without MNG the early blocks of GAT go inactive: removing them barely changes the image. The block
is swapped for a pass-through module inside a context manager (the model class is not touched),
so `x -> x + g1*Attn(..) + g2*MLP(..)` becomes `x -> x` for that block only.

LPIPS comes from the `lpips` package: AlexNet (default) or VGG backbone with torchvision's ImageNet
weights, read from the torch hub cache (never downloaded). `pretrained_backbone=False` builds a
randomly initialised backbone (pnet_rand=True, seeded) for tests; its results are labelled
`<net>-random-stand-in` in the `backbone` field and must not be read as the paper's measurement.
On digits, net 'digits' is an LPIPS-style distance on a small CNN trained on the digits set
(`gatscale.networks.digits_nets.DigitsPerceptual`, labelled `digits`): a trained network, not ImageNet's LPIPS.
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .samples import eval_inputs

# torchvision's ImageNet weights that lpips' backbones load (torch hub cache, checkpoints/).
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
LPIPS_SIZE = 64   # tiny images are upsampled to this side for the LPIPS network


class SkippedBlock(nn.Module):
    """Stands in for a generator block: returns its input tokens unchanged."""

    def forward(self, x, w, rope):
        return x


@contextlib.contextmanager
def block_removed(G, index: int):
    """Within the context G.blocks[index] is a pass-through; restored on exit."""
    original = G.blocks[index]
    G.blocks[index] = SkippedBlock()
    try:
        yield G
    finally:
        G.blocks[index] = original


def build_lpips(net: str = "alex", pretrained_backbone: bool = True, seed: int = 0):
    """(lpips.LPIPS in eval mode, backbone label). Fails early if the backbone weights are missing.
    net 'digits': the trained digits distance (cached; pretrained_backbone must stay True)."""
    if net == "digits":
        if not pretrained_backbone:
            raise ValueError("LPIPS net 'digits' is a trained digits network; --random-backbone applies to alex/vgg")
        from gatscale.networks.digits_nets import load_digits_perceptual
        return load_digits_perceptual(), "digits"
    import lpips

    if net not in BACKBONE_FILES:
        raise ValueError(f"LPIPS net = {net!r}: must be one of digits, {', '.join(BACKBONE_FILES)}")
    if pretrained_backbone:
        path = Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]
        if not path.is_file():
            raise FileNotFoundError(
                f"LPIPS backbone weights {path} not found (torchvision's ImageNet {net} weights; nothing is downloaded "
                f"here). Put {BACKBONE_FILES[net]} there, from https://download.pytorch.org/models/{BACKBONE_FILES[net]}.")
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # lpips calls the old torchvision API
        warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning)
        torch.manual_seed(seed)
        model = lpips.LPIPS(net=net, pnet_rand=not pretrained_backbone, verbose=False)
    label = net if pretrained_backbone else f"{net}-random-stand-in"
    return model.eval().requires_grad_(False), label


def _lpips_input(images: torch.Tensor, size: int = LPIPS_SIZE) -> torch.Tensor:
    """[0, 1] float images -> [-1, 1], upsampled to `size` when smaller."""
    x = images.float().clamp(0, 1) * 2 - 1
    if x.shape[-1] < size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


@torch.no_grad()
def block_contributions(G, tokenizer, lpips_model, num_samples: int = 256, batch_size: int = 32,
                        truncation_psi: float = 0.0, seed: int = 0, device=None) -> list[float]:
    """Mean LPIPS(G(z, y), G_without_block_b(z, y)) for each block b, over num_samples samples."""
    device = torch.device(device) if device is not None else next(G.parameters()).device
    lpips_model = lpips_model.to(device)
    totals = torch.zeros(len(G.blocks), dtype=torch.float64)
    size = getattr(lpips_model, "INPUT_SIZE", LPIPS_SIZE)  # the digits network reads 16 px images
    for z, y in eval_inputs(G, num_samples, batch_size, seed):
        z, y = z.to(device), y.to(device)

        def render():
            return _lpips_input(tokenizer.decode(G(z, y, truncation_psi=truncation_psi).float()), size)

        full = render()
        for b in range(len(G.blocks)):
            with block_removed(G, b):
                totals[b] += lpips_model(full, render()).sum().double().cpu()
    return (totals / num_samples).tolist()


def contribution_table(contributions: list[float], backbone: str, num_samples: int) -> list[dict]:
    """Rows (block, contribution, normalized, backbone, num_samples); normalized = value / the largest."""
    top = max(contributions) if contributions and max(contributions) > 0 else 1.0
    return [{"block": b, "contribution": c, "normalized": c / top, "backbone": backbone, "num_samples": num_samples}
            for b, c in enumerate(contributions)]
