"""An offline feature extractor for the embedded digits set: a small CNN trained on it in seconds.

The Inception network behind FID cannot be downloaded here, so CPU runs on digits measure the
Fréchet distance in the feature space of this CNN instead. Its numbers are NOT FID and are always
reported as `fd_digits` / `is_digits` / `precision_digits` / `recall_digits`.

Training is deterministic (fixed seed, private RNG) and takes a few seconds on CPU; the weights are
cached in `$GATSCALE_CACHE` (default `~/.cache/gatscale/`). The extractor is registered with
torch-fidelity under the name `gatscale-digits`, so `torch_fidelity.calculate_metrics(...,
feature_extractor="gatscale-digits")` works as well.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from gatscale.networks.digits_nets import load_cached, train_classifier
from ..data import cache_root

DIGITS_EXTRACTOR = "gatscale-digits"
INPUT_SIZE = 16          # images are resized to 16x16 before the CNN
FEATURE_DIM = 128
VERSION = 1              # bump when the architecture or the training recipe changes (new cache file)


class DigitsCNN(nn.Module):
    """conv16-pool-conv32-pool-fc128-fc10; the 128-d ReLU layer is the feature space (~96% held-out accuracy)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        )
        self.fc = nn.Linear(32 * (INPUT_SIZE // 4) ** 2, FEATURE_DIM)
        self.classifier = nn.Linear(FEATURE_DIM, num_classes)

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """uint8 (B,3,H,W) of any size -> float (B,3,16,16) in [-1, 1]."""
        x = images.float() / 127.5 - 1
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
        return x

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = F.relu(self.fc(self.convs(self.preprocess(images))))
        return feat, self.classifier(feat)


def train_digits_cnn(epochs: int = 10, batch_size: int = 64, seed: int = 0) -> tuple[DigitsCNN, float]:
    """Train on all 1,797 embedded digits (random +-1 px shifts); returns (model, training accuracy)."""
    return train_classifier(DigitsCNN, lambda model, x: model(x)[1], INPUT_SIZE, epochs, batch_size, seed)


def load_digits_cnn(path: str | os.PathLike | None = None) -> DigitsCNN:
    """The cached CNN (trained and cached on first use); `path` overrides the cache file."""
    path = Path(path) if path else cache_root() / f"digits_cnn-v{VERSION}-{INPUT_SIZE}px.pt"
    return load_cached(path, DigitsCNN, train_digits_cnn, VERSION)


class FeatureExtractorDigits(FeatureExtractorBase):
    """torch-fidelity interface: uint8 (B,3,H,W) in, features 'feat' (128-d) and 'logits' (10) out."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        self.net = load_digits_cnn(feature_extractor_weights_path)

    @staticmethod
    def get_provided_features_list():
        return ("feat", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "feat", "kid": "feat", "prc": "feat"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, dtype=torch.uint8)

    def forward(self, x):
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name}: expected uint8 (B,3,H,W) images, got {tuple(x.shape)} {x.dtype}")
        feat, logits = self.net(x)
        features = {"feat": feat, "logits": logits}
        return tuple(features[name] for name in self.features_list)


@torch.no_grad()
def classify_features(extractor: FeatureExtractorDigits, feats: torch.Tensor) -> torch.Tensor:
    """The CNN's predicted class of 128-d 'feat' rows (its last layer on the features, e.g. the reference's)."""
    head = extractor.net.classifier
    return head(feats.to(head.weight.device, head.weight.dtype)).argmax(1).cpu()


def register():
    """Register `gatscale-digits` with torch-fidelity (idempotent)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if DIGITS_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(DIGITS_EXTRACTOR, FeatureExtractorDigits)


register()
