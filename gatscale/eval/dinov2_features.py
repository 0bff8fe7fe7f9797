"""DINOv2 features for a Fréchet distance beside Inception's FID: `fd_dinov2` (with `eval.fd_dinov2: true`).

Stein et al. 2023 ("Exposing flaws of generative model evaluation metrics and their unfair treatment of diffusion
models", NeurIPS) find FD in DINOv2 ViT-L/14 feature space tracks human judgement better than Inception's FID.
The network is built through timm exactly as REPA's encoder (`gatscale.networks.encoders.build_encoder`;
`eval.dinov2` is an encoder section: name, pretrained, checkpoint, resolution, kwargs): uint8 -> ImageNet mean/std
-> bicubic resize -> the normed [cls] token (`dim` wide) is the feature. Its default is REPA's ViT-B/14
(vit_base_patch14_dinov2.lvd142m, whose weights a REPA run already has); Stein et al.'s ViT-L/14 is
`eval.dinov2.name: vit_large_patch14_dinov2.lvd142m`.

`eval.dinov2.pretrained: false` builds a random stand-in (seeded, so that its cached reference statistics stay
valid): its FD is not DINOv2's, and the recipe, the run's `gatscale.stand_in` tag and the reference file say so.
"""
from __future__ import annotations

import contextlib
import hashlib
import json

import torch
import torch.nn as nn

from gatscale.core.config import ConfigError, to_dict
from gatscale.core.errors import EnvironmentProblem, InputError
from gatscale.networks.encoders import build_encoder, check_weights_available

STAND_IN_SEED = 0
_CACHE: dict = {}


class Dinov2Features(nn.Module):
    """torch-fidelity's extractor interface (as fid.extract_features uses it): uint8 (B,3,H,W) -> ('cls' (B, dim),)."""
    fid_layer = "cls"

    def __init__(self, encoder_cfg):
        super().__init__()
        with torch.random.fork_rng(devices=[]), _named():  # a stand-in's random weights: the same in every process
            torch.manual_seed(STAND_IN_SEED)
            self.encoder = build_encoder(encoder_cfg)
        self.dim, self.stand_in = self.encoder.dim, self.encoder.stand_in
        self.cache_id = cache_id(encoder_cfg)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor]:
        x = self.encoder.preprocess(images)
        tokens = self.encoder.model.forward_features(x)  # (B, prefix + patches, dim), normed
        return (tokens[:, 0],)

    @staticmethod
    def convert_features_tuple_to_dict(features: tuple[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"cls": features[0]}


@contextlib.contextmanager
def _named():
    """The encoder's errors say `encoder.*`; these are about `eval.dinov2.*`."""
    try:
        yield
    except EnvironmentProblem as e:
        raise EnvironmentProblem(f"eval.dinov2 (fd_dinov2): {e}") from None
    except ConfigError as e:
        raise InputError(f"eval.dinov2 (fd_dinov2): {e}") from None


def check_available(encoder_cfg):
    """Fail in seconds (e.g. at the start of training) when the pretrained DINOv2 weights cannot be had."""
    if encoder_cfg.pretrained and not encoder_cfg.checkpoint:
        with _named():
            check_weights_available(encoder_cfg)


def cache_id(encoder_cfg) -> str:
    """Names the reference statistics of this network: its timm name, a hash of the whole section, and
    'stand-in' for random weights."""
    digest = hashlib.sha1(json.dumps(to_dict(encoder_cfg), sort_keys=True).encode()).hexdigest()[:8]
    stand_in = not (encoder_cfg.pretrained or encoder_cfg.checkpoint)
    return f"dinov2-{encoder_cfg.name}-{digest}" + ("-stand-in" if stand_in else "")


def describe(encoder_cfg) -> dict:
    """fd_dinov2's part of an evaluation's recipe."""
    return {"network": encoder_cfg.name, "feature": "normed [cls] token", "resolution": encoder_cfg.resolution,
            "checkpoint": encoder_cfg.checkpoint,
            "stand_in": not (encoder_cfg.pretrained or encoder_cfg.checkpoint)}


def get_dinov2(encoder_cfg, device="cpu") -> Dinov2Features:
    """The extractor for `encoder_cfg` on `device`, built once per process."""
    key = (cache_id(encoder_cfg), str(device))
    if key not in _CACHE:
        _CACHE[key] = Dinov2Features(encoder_cfg).to(device).eval()
    return _CACHE[key]
