"""The REPA target encoder: DINOv2 through timm (official: torch.hub dinov2_vitb14, no registers), or on
digits the "digits encoder" (`encoder.name: digits-vit`), a tiny ViT trained on the digits set
(`gatscale.networks.digits_nets`; not DINOv2, and not the CNN behind fd_digits).

Preprocessing as the official `preprocess_raw_image` for 'dinov2': uint8 -> /255 -> ImageNet
mean/std -> bicubic resize to 224 -> forward_features -> normed [cls] and patch tokens (16x16 for
ViT-B/14 at 224). Patch features are bicubically resized to D's token grid when it differs.
"""
import math
from pathlib import Path

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from gatscale.core.config import ConfigError
from gatscale.core.errors import EnvironmentProblem
from gatscale.core.hub import hub_unreachable
from gatscale.core.sizes import DIGITS_ENCODER, DIGITS_VIT


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


def _missing_weights(cfg, why: str) -> EnvironmentProblem:
    return EnvironmentProblem(
        f"encoder.name = {cfg.name!r}: the pretrained weights are not available here ({why}). Download them once "
        "on a machine with internet (`timm.create_model(name, pretrained=True)` fills the Hugging Face cache; copy "
        "~/.cache/huggingface over) or set encoder.checkpoint to a local weights file; encoder.pretrained: false "
        "uses a random stand-in (tests only).")


def check_weights_available(cfg):
    """Fail in seconds, not after a minute of hub retries, when the weights are neither cached nor downloadable."""
    pcfg = timm.models.get_pretrained_cfg(cfg.name)
    if pcfg is None:
        return  # timm says so itself when it builds the model
    if pcfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache
        files = (pcfg.hf_hub_filename or "model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
        if any(isinstance(try_to_load_from_cache(pcfg.hf_hub_id, f), str) for f in files):
            return
    elif pcfg.url and (Path(torch.hub.get_dir()) / "checkpoints" / Path(pcfg.url).name).is_file():
        return
    if (why := hub_unreachable(None if pcfg.hf_hub_id else pcfg.url)) is not None:
        raise _missing_weights(cfg, f"not in the local cache, and {why}")


def build_encoder(cfg) -> RepaEncoder:
    """cfg: EncoderConfig. Loads pretrained weights from the hub, or a local file via `checkpoint`; `digits-vit`
    is trained on the digits set on first use and cached (it has its own resolution, 16 px)."""
    if cfg.name == DIGITS_ENCODER:
        from .digits_nets import load_digits_vit
        return RepaEncoder(load_digits_vit(cfg.checkpoint), DIGITS_VIT["resolution"], stand_in=False)
    if not timm.is_model(cfg.name):
        raise ConfigError(None, "encoder.name", cfg.name,
                          f"not a timm model name (e.g. vit_base_patch14_dinov2.lvd142m) nor {DIGITS_ENCODER!r}")
    kwargs = dict(img_size=cfg.resolution, num_classes=0, **cfg.kwargs)
    if cfg.checkpoint:
        if not Path(cfg.checkpoint).expanduser().is_file():
            raise ConfigError(None, "encoder.checkpoint", cfg.checkpoint, "file not found")
        kwargs["pretrained_cfg_overlay"] = dict(file=str(Path(cfg.checkpoint).expanduser()))
    pretrained = cfg.pretrained or bool(cfg.checkpoint)
    if pretrained and not cfg.checkpoint:
        check_weights_available(cfg)
    try:
        model = timm.create_model(cfg.name, pretrained=pretrained, **kwargs)
    except TypeError as e:  # a keyword timm's model does not take
        raise ConfigError(None, "encoder.kwargs", cfg.kwargs, f"not accepted by timm's {cfg.name}: {e}") from None
    except Exception as e:
        if not pretrained:
            raise
        raise _missing_weights(cfg, f"{type(e).__name__}: {e}") from e
    return RepaEncoder(model, cfg.resolution, stand_in=not pretrained)
