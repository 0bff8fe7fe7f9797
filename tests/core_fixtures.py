"""Tiny G, D and REPA encoder shared by the core tests (random init, CPU, milliseconds per step)."""
import torch

from gatscale.core.config import EncoderConfig
from gatscale.models import build_discriminator, build_generator
from gatscale.networks.encoders import build_encoder

TINY = dict(depth=4, hidden_size=32, num_heads=2, input_size=8, in_channels=3, num_classes=2)
TINY_ENCODER = EncoderConfig(
    name="vit_tiny_patch16_224", pretrained=False, resolution=16,
    kwargs=dict(patch_size=4, embed_dim=16, depth=1, num_heads=2),
)


def tiny_models(mng_on: bool = True, repa: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    G = build_generator("GAT-S/2", **TINY, use_intermediate_heads=mng_on)
    encoder = build_encoder(TINY_ENCODER) if repa else None
    D = build_discriminator("GAT-S/2", **TINY, num_levels=4 if mng_on else 1, cmap_dim=16, projector_dim=32,
                            encoder_dim=encoder.dim if repa else 0)
    return G, D, encoder


def toy_batch(batch: int = 8, seed: int = 0):
    """A 2-class toy set: class 0 bright top half, class 1 bright bottom half, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(batch) % 2
    x = torch.full((batch, 3, 8, 8), -1.0)
    for i, label in enumerate(y.tolist()):
        if label == 0:
            x[i, :, :4] = 1.0
        else:
            x[i, :, 4:] = 1.0
    x = x + 0.1 * torch.randn(x.shape, generator=g)
    raw = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x, y, raw
