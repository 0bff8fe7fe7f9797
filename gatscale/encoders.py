"""The REPA target encoder: DINOv2 through timm (official: torch.hub dinov2_vitb14, no registers), or on
digits the "digits encoder" (`encoder.name: digits-vit`), a tiny ViT trained on the digits set
(`gatscale.digits_nets`; not DINOv2, and not the CNN behind fd_digits).

Preprocessing as the official `preprocess_raw_image` for 'dinov2': uint8 -> /255 -> ImageNet
mean/std -> bicubic resize to 224 -> forward_features -> normed [cls] and patch tokens (16x16 for
ViT-B/14 at 224). Patch features are bicubically resized to D's token grid when it differs.
"""
import math

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from .sizes import DIGITS_ENCODER, DIGITS_VIT


class RepaEncoder(nn.Module):
    def __init__(self, model: nn.Module, resolution: int, stand_in: bool):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.resolution = resolution
        self.stand_in = stand_in  # random weights: REPA targets are not a trained encoder's (runs are tagged so)
        self.dim = model.num_features
        self.num_prefix_tokens = getattr(model, "num_prefix_tokens", 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images_uint8: torch.Tensor) -> torch.Tensor:
        x = (images_uint8.float() / 255.0 - self.mean) / self.std
        return F.interpolate(x, size=self.resolution, mode="bicubic")

    @torch.no_grad()
    def forward(self, x: torch.Tensor, grid_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed images -> (cls (B, d), patch tokens (B, grid_size**2, d))."""
        tokens = self.model.forward_features(x)
        cls, patches = tokens[:, 0], tokens[:, self.num_prefix_tokens:]
        side = math.isqrt(patches.shape[1])
        if side != grid_size:
            patches = patches.transpose(1, 2).reshape(x.shape[0], -1, side, side)
            patches = F.interpolate(patches.float(), size=(grid_size, grid_size), mode="bicubic")
            patches = patches.flatten(2).transpose(1, 2)
        return cls, patches


def build_encoder(cfg) -> RepaEncoder:
    """cfg: EncoderConfig. Loads pretrained weights from the hub, or a local file via `checkpoint`; `digits-vit`
    is trained on the digits set on first use and cached (it has its own resolution, 16 px)."""
    if cfg.name == DIGITS_ENCODER:
        from .digits_nets import load_digits_vit
        return RepaEncoder(load_digits_vit(cfg.checkpoint), DIGITS_VIT["resolution"], stand_in=False)
    kwargs = dict(img_size=cfg.resolution, num_classes=0, **cfg.kwargs)
    if cfg.checkpoint:
        kwargs["pretrained_cfg_overlay"] = dict(file=cfg.checkpoint)
    pretrained = cfg.pretrained or bool(cfg.checkpoint)
    try:
        model = timm.create_model(cfg.name, pretrained=pretrained, **kwargs)
    except Exception as e:
        if not pretrained:
            raise
        raise RuntimeError(
            f"encoder.name = {cfg.name!r}: could not load pretrained weights ({type(e).__name__}: {e}). "
            "Without network access, download the weights once (e.g. `timm.create_model(name, pretrained=True)` "
            "on a machine with internet fills the Hugging Face cache) or set encoder.checkpoint to a local "
            "weights file; encoder.pretrained: false uses a random stand-in (tests only)."
        ) from e
    return RepaEncoder(model, cfg.resolution, stand_in=not pretrained)
