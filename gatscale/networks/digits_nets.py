"""Small networks trained once on the embedded digits set, so that CPU runs on digits use no random stand-ins.

Three networks, three jobs, deliberately different from each other:
- the digits CNN (`gatscale.eval.digits_features`): the evaluator behind fd_digits and acc_digits;
- `DigitsViT`, the "digits encoder": REPA's target on digits (`encoder.name: digits-vit`), in place of DINOv2.
  A ViT (not the CNN), trained with its own seed, so that aligning D to it does not flatter the evaluator;
- `DigitsPerceptual`, the "digits LPIPS" network of the per-block contribution (`--net digits`): an
  LPIPS-style distance (unit-normalised conv features, squared difference, spatial mean, summed over
  layers, no learned heads) on a third small CNN trained with its own seed.

Each is trained as a 10-way classifier on all 1,797 images (random +-1 px shifts), deterministically
(fixed seed, private RNG, one CPU thread: a few seconds), and cached in `gatscale.data.cache_root()`.
"""
from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from gatscale.core.atomic import atomic_open
from gatscale.core.sizes import DIGITS_VIT
from gatscale.data import cache_root

DIGITS_VIT_VERSION = 1         # bump when the architecture or the recipe changes (new cache file)
DIGITS_PERCEPTUAL_VERSION = 1
DIGITS_VIT_SEED = 1            # the digits CNN uses seed 0
DIGITS_PERCEPTUAL_SEED = 2


def train_classifier(build, logits, resolution: int, epochs: int = 10, batch_size: int = 64, seed: int = 0,
                     lr: float = 2e-3) -> tuple[nn.Module, float]:
    """Train `build()` on all embedded digits at `resolution` px; `logits(model, uint8 images)` -> (B, 10).

    Returns (model in eval mode, training accuracy). Deterministic: the model is built and trained under a
    private RNG seeded with `seed`, on one CPU thread (a few seconds, and faster than two on a shared machine).
    """
    from gatscale.data.digits import load_digits_images

    images, labels = load_digits_images(resolution=resolution)
    images, labels = torch.from_numpy(images), torch.from_numpy(labels)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build()
            g = torch.Generator().manual_seed(seed)
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            for _ in range(epochs):
                for idx in torch.randperm(len(images), generator=g).split(batch_size):
                    dx, dy = torch.randint(-1, 2, (2,), generator=g).tolist()
                    x = torch.roll(images[idx], shifts=(dy, dx), dims=(2, 3))
                    loss = F.cross_entropy(logits(model, x), labels[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    with torch.no_grad():
        accuracy = (logits(model, images).argmax(1) == labels).float().mean().item()
    return model, accuracy


def load_cached(path: Path, build, train, version: int) -> nn.Module:
    """`build()` with the weights cached at `path`; `train()` -> (model, accuracy) fills the cache on first use."""
    if not path.exists():
        model, accuracy = train()
        with atomic_open(path) as f:
            torch.save({"model": model.state_dict(), "train_accuracy": accuracy, "version": version}, f)
    model = build()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
    return model.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# The digits encoder: REPA's target on digits

def build_digits_vit() -> nn.Module:
    """A plain timm ViT at DIGITS_VIT's size: forward_features gives normed [cls] + patch tokens, as DINOv2."""
    a = DIGITS_VIT
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=a["resolution"],
                             patch_size=a["patch_size"], embed_dim=a["width"], depth=a["depth"],
                             num_heads=a["num_heads"], num_classes=10)


def _vit_logits(model, images):
    """uint8 images at the ViT's resolution -> logits, with the ImageNet normalisation of RepaEncoder.preprocess."""
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1)
    return model((images.float() / 255.0 - mean) / std)


def train_digits_vit(epochs: int = 20, seed: int = DIGITS_VIT_SEED) -> tuple[nn.Module, float]:
    """~90% training accuracy in ~15 s on one CPU thread (a ViT learns slower than the CNNs: lr 1e-3, 20 epochs)."""
    return train_classifier(build_digits_vit, _vit_logits, DIGITS_VIT["resolution"], epochs=epochs, seed=seed, lr=1e-3)


def load_digits_vit(path: str | os.PathLike | None = None) -> nn.Module:
    """The cached digits encoder (trained on first use); its classifier head is unused by REPA."""
    path = Path(path) if path else cache_root() / f"digits_vit-v{DIGITS_VIT_VERSION}-{DIGITS_VIT['resolution']}px.pt"
    return load_cached(path, build_digits_vit, train_digits_vit, DIGITS_VIT_VERSION)


# ---------------------------------------------------------------------------------------------
# The digits LPIPS network: per-block contribution on digits

class DigitsPerceptual(nn.Module):
    """LPIPS-style distance: conv16 -> conv32/2 -> conv64/2 feature maps, each unit-normalised over channels;
    d(x0, x1) = sum over layers of the spatial mean of ||f0 - f1||^2 (as lpips.LPIPS(lpips=False), uniform
    weights). Inputs are float images in [-1, 1] of any size, resized to 16 px; forward returns (B, 1, 1, 1)."""
    INPUT_SIZE = 16

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.layers = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU()),
        ])
        self.classifier = nn.Linear(64, num_classes)   # trains the features; unused by the distance

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-2:] != (self.INPUT_SIZE, self.INPUT_SIZE):
            x = F.interpolate(x, size=(self.INPUT_SIZE, self.INPUT_SIZE), mode="bilinear", align_corners=False,
                              antialias=True)
        out = []
        for layer in self.layers:
            x = layer(x)
            out.append(x)
        return out

    def logits(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images_uint8.float() / 127.5 - 1)[-1].mean((2, 3)))

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        total = 0
        for f0, f1 in zip(self.features(x0), self.features(x1)):
            f0 = f0 / (f0.norm(dim=1, keepdim=True) + 1e-10)
            f1 = f1 / (f1.norm(dim=1, keepdim=True) + 1e-10)
            total = total + (f0 - f1).pow(2).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        return total


def train_digits_perceptual(epochs: int = 10, seed: int = DIGITS_PERCEPTUAL_SEED) -> tuple[nn.Module, float]:
    return train_classifier(DigitsPerceptual, lambda m, x: m.logits(x), DigitsPerceptual.INPUT_SIZE, epochs=epochs,
                            seed=seed)


def load_digits_perceptual(path: str | os.PathLike | None = None) -> DigitsPerceptual:
    path = Path(path) if path else cache_root() / f"digits_perceptual-v{DIGITS_PERCEPTUAL_VERSION}.pt"
    return load_cached(path, DigitsPerceptual, train_digits_perceptual, DIGITS_PERCEPTUAL_VERSION)
