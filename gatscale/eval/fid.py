"""FID, IS and precision/recall of generated samples, through torch-fidelity.

Features come from torch-fidelity's feature extractors: `inception-v3-compat` (the TF-Inception
port behind FID; weights file from `eval.inception_weights` or the torch hub cache, never
downloaded) or our offline `gatscale-digits` CNN. The metric functions are torch-fidelity's own
(`fid_statistics_to_metric`, `isc_features_to_metric`, `prc_features_to_metric`); the real side is
a cached reference `.npz` (see `reference.py`), so real features are never recomputed.

Names follow the extractor: Inception gives `fid`, `is`, `precision`, `recall`; the digits CNN gives
`fd_digits`, `is_digits`, `precision_digits`, `recall_digits` (never `fid`), and, when the batches carry
their conditioning labels, `acc_digits`: the share of samples the CNN assigns to their class.
`real_data_floor` is the same Fréchet distance for real images (`fd_digits_floor`): no generator can be
expected to beat it with that many samples.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric
from torch_fidelity.utils import create_feature_extractor

from . import digits_features
from .reference import compute_reference, default_reference_path, load_reference, save_reference
from .samples import generate_images

INCEPTION_FILE = os.path.basename(URL_INCEPTION_V3)  # weights-inception-2015-12-05-6726825d.pth
# pytorch-fid ships the same converted TF weights under this name (same hash, same layer names).
INCEPTION_FILE_NAMES = (INCEPTION_FILE, "pt_inception-2015-12-05-6726825d.pth")


@dataclass(frozen=True)
class Extractor:
    fidelity_name: str   # name in torch-fidelity's registry
    dim: int             # feature width used by FID and precision/recall
    fid_layer: str
    is_layer: str
    suffix: str          # appended to every metric name ('' only for the real Inception)
    cache_id: str        # names (and tags) its cached reference statistics


EXTRACTORS = {
    "inception": Extractor("inception-v3-compat", 2048, "2048", "logits_unbiased", "", "inception"),
    "digits": Extractor(digits_features.DIGITS_EXTRACTOR, digits_features.FEATURE_DIM, "feat", "logits", "_digits",
                        f"digits-cnn-v{digits_features.VERSION}"),
}
METRICS = ("fid", "is", "prc")


def metric_names(kind: str) -> dict[str, str]:
    """Names under which each number is reported; `fid` is only ever Inception's."""
    s = EXTRACTORS[kind].suffix
    return {"fid": "fid" if kind == "inception" else f"fd{s}", "is": f"is{s}", "is_std": f"is_std{s}",
            "precision": f"precision{s}", "recall": f"recall{s}", **({"acc": "acc_digits"} if kind == "digits" else {})}


def resolve_inception_weights(path: str | None) -> str:
    """The local Inception weights file: `path` if given, else the torch hub cache; else fail with
    a message naming the file and where to put it (nothing is downloaded)."""
    if path:
        if not Path(path).expanduser().is_file():
            raise FileNotFoundError(
                f"eval.inception_weights = {path!r}: file not found. It must be torch-fidelity's {INCEPTION_FILE} "
                f"(download {URL_INCEPTION_V3}).")
        return str(Path(path).expanduser())
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    for name in INCEPTION_FILE_NAMES:
        if (hub / name).is_file():
            return str(hub / name)
    raise FileNotFoundError(
        f"Inception weights for FID not found: eval.inception_weights is not set and {hub / INCEPTION_FILE} does not "
        f"exist. Download {URL_INCEPTION_V3} on a machine with internet and put it at {hub / INCEPTION_FILE} "
        f"(or anywhere, and set eval.inception_weights: /path/to/{INCEPTION_FILE}). Offline alternative: "
        f"eval.feature_extractor: digits (reports 'fd_digits', not 'fid').")


def check_feature_extractor(eval_cfg) -> None:
    """Fail early (e.g. at the start of training) if the configured extractor cannot be built."""
    if eval_cfg.feature_extractor == "inception":
        resolve_inception_weights(eval_cfg.inception_weights)


_EXTRACTORS: dict = {}   # in-process caches: evaluate_generator is called every eval.fid_every steps
_REFERENCES: dict = {}


def get_extractor(kind: str, inception_weights: str | None = None, device="cpu"):
    """A torch-fidelity feature extractor giving the FID and IS layers of `kind`, on `device`."""
    if kind not in EXTRACTORS:
        raise ValueError(f"eval.feature_extractor = {kind!r}: must be one of {', '.join(EXTRACTORS)}")
    spec = EXTRACTORS[kind]
    weights = resolve_inception_weights(inception_weights) if kind == "inception" else None
    key = (kind, weights, str(device))
    if key not in _EXTRACTORS:
        extractor = create_feature_extractor(spec.fidelity_name, [spec.fid_layer, spec.is_layer], cuda=False,
                                             feature_extractor_weights_path=weights, verbose=False)
        _EXTRACTORS[key] = extractor.to(device)
    return _EXTRACTORS[key]


@torch.no_grad()
def extract_features(extractor, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """uint8 (B,3,H,W) -> {layer: float32 (B, D) on CPU}; always in float32, even inside a caller's autocast."""
    device = next(extractor.parameters()).device
    with torch.autocast(device.type, enabled=False):
        features = extractor.convert_features_tuple_to_dict(extractor(images.to(device)))
    return {k: v.float().cpu() for k, v in features.items()}


def get_reference(cfg, extractor, device="cpu") -> dict:
    """Reference statistics for cfg.data in the feature space of cfg.eval.feature_extractor: read from
    the cached `.npz` (or an ADM file at eval.reference_stats), else computed from the real images
    with `gatscale.data.iterate_images` and cached."""
    spec = EXTRACTORS[cfg.eval.feature_extractor]
    path = default_reference_path(cfg, spec.cache_id)
    key = (str(path.resolve()), spec.cache_id)
    if key in _REFERENCES:
        return _REFERENCES[key]
    if not path.exists():
        from gatscale.data import iterate_images

        stats = compute_reference((images for images, _ in iterate_images(cfg.data, cfg.eval.batch_size)),
                                  lambda images: extract_features(extractor, images)[spec.fid_layer], spec.dim)
        save_reference(path, stats, spec.cache_id, spec.fid_layer,
                       source=f"data.source={cfg.data.source} data.path={cfg.data.path} data.resolution={cfg.data.resolution}")
    _REFERENCES[key] = load_reference(path, spec.cache_id, spec.dim)
    return _REFERENCES[key]


def compute_metrics(image_batches, kind: str, extractor, reference: dict, metrics=("fid",)) -> dict[str, float]:
    """Metrics of the generated uint8 batches against `reference` (mu, sigma[, features]).

    metrics: any of 'fid' (Fréchet distance), 'is' (Inception Score: mean and std over 10 splits),
    'prc' (precision/recall, k = 3, needs reference features). Batches of (images, labels) also give
    `acc_digits` on the digits extractor (its classes are the data's). Returns {reported name: value}.
    """
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"metrics = {sorted(unknown)}: unknown; valid: {', '.join(METRICS)}")
    spec, names = EXTRACTORS[kind], metric_names(kind)
    # the IS layer (class logits) only when a metric reads it: IS, or acc_digits on the digits CNN
    chunks: dict[str, list] = {spec.fid_layer: [], **({spec.is_layer: []} if "is" in metrics or "acc" in names else {})}
    labels = []
    for batch in image_batches:
        images, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
        feats = extract_features(extractor, images)
        for layer, c in chunks.items():
            c.append(feats[layer])
        labels.append(y)
    feats = {layer: torch.cat(c) for layer, c in chunks.items()}
    out = {}
    if kind == "digits" and labels and all(y is not None for y in labels):
        out[names["acc"]] = (feats[spec.is_layer].argmax(1) == torch.cat(labels).cpu()).double().mean().item()
    if "fid" in metrics:
        stats = fid_features_to_statistics(feats[spec.fid_layer].double())
        out[names["fid"]] = fid_statistics_to_metric(stats, reference, verbose=False)[KEY_METRIC_FID]
    if "is" in metrics:
        isc = isc_features_to_metric(feats[spec.is_layer], splits=10, shuffle=True, rng_seed=2020)
        out[names["is"]], out[names["is_std"]] = isc[KEY_METRIC_ISC_MEAN], isc[KEY_METRIC_ISC_STD]
    if "prc" in metrics:
        if reference.get("features") is None:
            raise ValueError(f"{reference.get('path')}: precision/recall need real features, and these reference "
                             f"statistics hold only mu/sigma (an ADM file?); compute our own reference instead")
        device = next(extractor.parameters()).device
        prc = prc_features_to_metric(feats[spec.fid_layer].to(device), reference["features"].to(device),
                                     prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=True, verbose=False)
        out[names["precision"]], out[names["recall"]] = prc[KEY_METRIC_PRECISION], prc[KEY_METRIC_RECALL]
    return out


def evaluate_generator(G, cfg, tokenizer, device, num_samples: int | None = None, metrics=("fid",)) -> dict[str, float]:
    """The trainer's in-training hook: e.g. {'fid': ...} (Inception) or {'fd_digits': ...} (digits CNN).

    Uses cfg.eval (fid_samples, feature_extractor, inception_weights, reference_stats,
    truncation_psi, batch_size, precision); the same z and labels (seed cfg.train.seed) at every call, so
    successive values differ only through G. Extractor and reference stay cached in-process.
    """
    extractor = get_extractor(cfg.eval.feature_extractor, cfg.eval.inception_weights, device)
    reference = get_reference(cfg, extractor, device)
    batches = generate_images(G, tokenizer, num_samples or cfg.eval.fid_samples, cfg.eval.batch_size,
                              cfg.eval.truncation_psi, seed=cfg.train.seed, device=device, precision=cfg.eval.precision)
    return compute_metrics(batches, cfg.eval.feature_extractor, extractor, reference, metrics)


def real_data_floor(cfg, device="cpu", num_samples: int | None = None, seed: int = 0) -> dict[str, float]:
    """The Fréchet distance of `num_samples` (default eval.fid_samples) real images against the reference
    statistics, e.g. {'fd_digits_floor': ..., 'acc_digits_real': ...}: what a perfect generator would score.

    The images are a seeded random subset of the data set (drawn with replacement when num_samples exceeds it),
    with their labels. Cached beside the reference statistics, one small JSON per sample count and seed.
    """
    import json

    from gatscale.atomic import atomic_write_text
    from gatscale.data import open_shards

    n = num_samples or cfg.eval.fid_samples
    kind, names = cfg.eval.feature_extractor, metric_names(cfg.eval.feature_extractor)
    extractor = get_extractor(kind, cfg.eval.inception_weights, device)
    reference = get_reference(cfg, extractor, device)
    ref = Path(reference["path"])
    path = ref.with_name(f"{ref.stem}-floor-{n}-seed{seed}.json")
    if path.exists():
        return json.loads(path.read_text())
    shards = open_shards(cfg.data)
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(shards), generator=g)[:n] if n <= len(shards) else torch.randint(len(shards), (n,), generator=g)
    pick = pick.sort().values.numpy()
    batches = ((torch.from_numpy(shards.gather("image", idx)), torch.from_numpy(shards.gather("label", idx, np.int64)))
               for idx in np.array_split(pick, max(1, len(pick) // cfg.eval.batch_size)))
    values = compute_metrics(batches, kind, extractor, reference)
    floor = {f"{names['fid']}_floor": values[names["fid"]]}
    if names.get("acc") in values:
        floor[f"{names['acc']}_real"] = values[names["acc"]]
    atomic_write_text(path, json.dumps(floor) + "\n")
    return floor
