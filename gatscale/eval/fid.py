"""FID, IS and precision/recall of generated samples, through torch-fidelity; FD's standard error and FD_inf.

Features come from torch-fidelity's feature extractors: `inception-v3-compat` (the TF-Inception
port behind FID; weights file from `eval.inception_weights` or the torch hub cache, never
downloaded) or our offline `gatscale-digits` CNN; with `eval.fd_dinov2`, also DINOv2 (dinov2_features.py).
The metric functions are torch-fidelity's own (`fid_statistics_to_metric`, `isc_features_to_metric`,
`prc_features_to_metric`); the real side is a cached reference `.npz` (see `reference.py`), so real features
are never recomputed.

Names follow the extractor: Inception gives `fid`, `is`, `precision`, `recall`; the digits CNN gives
`fd_digits`, `is_digits`, `precision_digits`, `recall_digits` (never `fid`), and, when the batches carry
their conditioning labels, `acc_digits`: the share of samples the CNN assigns to their class, and
`diversity_digits` (see `class_diversity`); DINOv2 gives `fd_dinov2`. Every Fréchet distance comes with
`<name>_se`, its bootstrap standard error over the generated features (frechet.py), and on request
`<name>_inf`, its extrapolation to infinitely many samples (Chong & Forsyth 2020). `recipe` says how each
was computed. `real_data_floor` is the same Fréchet distance for real images (`fd_digits_floor`): no
generator can be expected to beat it with that many samples.
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

from . import digits_features, frechet
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
METRICS = ("fid", "is", "prc", "diversity")
PRC_NEIGHBORHOOD = 3  # k of the k-NN balls of precision/recall (Kynkaanniemi et al. 2019; torch-fidelity's default)


def metric_names(kind: str) -> dict[str, str]:
    """Names under which each number is reported; `fid` is only ever Inception's. A Fréchet distance's standard
    error and infinite-sample value are its name + `_se` / `_inf` (`fid_se`, `fd_digits_inf`); `gatscale eval`
    appends its protocol suffix after them (`fid_se_50k_psi0.3`)."""
    s = EXTRACTORS[kind].suffix
    fd = "fid" if kind == "inception" else f"fd{s}"
    return {"fid": fd, "fid_se": f"{fd}_se", "fid_inf": f"{fd}_inf", "is": f"is{s}", "is_std": f"is_std{s}",
            "precision": f"precision{s}", "recall": f"recall{s}",
            **({"acc": "acc_digits", "diversity": "diversity_digits"} if kind == "digits" else {})}


def in_training_metrics(eval_cfg) -> tuple[str, ...]:
    """What the trainer's Eval stage computes: FD (with its SE); on the digits extractor also precision/recall and
    the per-class diversity, cheap at the demo's few hundred samples."""
    return ("fid", "prc", "diversity") if eval_cfg.feature_extractor == "digits" else ("fid",)


def in_training_recipe(cfg) -> dict:
    """The trainer's evaluation protocol (the keys of `gatscale eval`'s gatscale.eval<suffix> tags) and recipe."""
    decoder = cfg.eval.fid_decoder if cfg.data.tokenizer == "sd-vae" else None
    return {"truncation_psi": cfg.eval.truncation_psi, "which": "ema", "precision": cfg.eval.precision,
            "decoder": decoder, **recipe(cfg.eval, cfg.eval.fid_samples, in_training_metrics(cfg.eval))}


def recipe(eval_cfg, num_samples: int, metrics, fd_inf: bool = False) -> dict:
    """How each metric of one evaluation was computed, for the `gatscale.eval<suffix>` tag and
    eval/metrics-<step>.json: sample count, extractor, the standard error's method, FD_inf's fit."""
    out = {"num_samples": num_samples, "feature_extractor": eval_cfg.feature_extractor}
    if "fid" in metrics:
        out["fd_se"] = ({"method": "bootstrap over the generated features (reference fixed)",
                         "resamples": eval_cfg.se_resamples, "seed": 0} if eval_cfg.se_resamples else None)
        if fd_inf:
            out["fd_inf"] = {"method": "Chong & Forsyth 2020: FD_N = FD_inf + k/N, least squares in 1/N",
                             "counts": frechet.inf_counts(num_samples), "subsets": "random, without replacement"}
    if "prc" in metrics:
        out["prc"] = {"k": PRC_NEIGHBORHOOD, "real": "the reference's feature subset"}
    if "diversity" in metrics and eval_cfg.feature_extractor == "digits":
        out["diversity"] = "mean over classes (digits CNN's predicted class) of the mean pairwise feature " \
                           "distance of the samples, over the same for the reference's real images"
    if eval_cfg.fd_dinov2:
        from .dinov2_features import describe
        out["fd_dinov2"] = describe(eval_cfg.dinov2)
    return out


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
    if eval_cfg.fd_dinov2:
        from .dinov2_features import check_available
        check_available(eval_cfg.dinov2)


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


def get_reference(cfg, extractor, device="cpu", kind: str | None = None) -> dict:
    """Reference statistics for cfg.data in the feature space of `kind` (default cfg.eval.feature_extractor; or
    'dinov2', whose file is always our own cache, never eval.reference_stats): read from the cached `.npz` (or
    an ADM file at eval.reference_stats), else computed from the real images with `gatscale.data.iterate_images`
    and cached."""
    kind = kind or cfg.eval.feature_extractor
    if kind == "dinov2":
        cache_id, layer, dim = extractor.cache_id, extractor.fid_layer, extractor.dim
        path = default_reference_path(cfg, cache_id, use_reference_stats=False)
    else:
        spec = EXTRACTORS[kind]
        cache_id, layer, dim = spec.cache_id, spec.fid_layer, spec.dim
        path = default_reference_path(cfg, cache_id)
    key = (str(path.resolve()), cache_id)
    if key in _REFERENCES:
        return _REFERENCES[key]
    if not path.exists():
        from gatscale.data import iterate_images

        stats = compute_reference((images for images, _ in iterate_images(cfg.data, cfg.eval.batch_size)),
                                  lambda images: extract_features(extractor, images)[layer], dim)
        save_reference(path, stats, cache_id, layer,
                       source=f"data.source={cfg.data.source} data.path={cfg.data.path} "
                              f"data.resolution={cfg.data.resolution}")
    _REFERENCES[key] = load_reference(path, cache_id, dim)
    return _REFERENCES[key]


def extra_extractors(cfg, device="cpu") -> dict:
    """{'dinov2': (extractor, reference)} when eval.fd_dinov2, else {}: feature spaces that add only an FD."""
    if not cfg.eval.fd_dinov2:
        return {}
    from .dinov2_features import get_dinov2

    extractor = get_dinov2(cfg.eval.dinov2, device)
    return {"dinov2": (extractor, get_reference(cfg, extractor, device, kind="dinov2"))}


def _frechet_reference(reference: dict, device) -> frechet.Reference:
    """The reference's float64 mu, sigma and sigma^1/2 on `device`, computed once per reference and device."""
    key = f"_frechet_{device}"
    if key not in reference:
        reference[key] = frechet.Reference(reference["mu"], reference["sigma"], device)
    return reference[key]


def frechet_metrics(features: torch.Tensor, reference: dict, name: str, se_resamples: int, fd_inf: bool = False,
                    fits: dict | None = None) -> dict[str, float]:
    """{name: FD (torch-fidelity's), name_se: its bootstrap SE, name_inf: FD_inf (when fd_inf)}; FD_inf's fit
    (counts, values, slope, intercept SE) goes into `fits` when given."""
    stats = fid_features_to_statistics(features.double().cpu())
    out = {name: fid_statistics_to_metric(stats, reference, verbose=False)[KEY_METRIC_FID]}
    if se_resamples:
        out[f"{name}_se"] = frechet.bootstrap_se(features, _frechet_reference(reference, features.device), se_resamples)
    if fd_inf:
        out[f"{name}_inf"], fit = frechet.fd_infinity(features, _frechet_reference(reference, features.device))
        if fits is not None:
            fits[f"{name}_inf"] = fit
    return out


def class_diversity(feats: torch.Tensor, classes: torch.Tensor, real_spread: dict[int, float]) -> float:
    """Per-class diversity: for each class c (as the digits CNN predicts it) with >= 2 samples, the mean pairwise
    L2 distance between the samples' features, over the same for the real images of class c (`real_spread`);
    the mean over those classes. ~1 for real images (any sample count: the mean pairwise distance is unbiased);
    near 0 for a generator that draws the right class but always the same few images of it (mode collapse
    within classes, which acc_digits and FD alone do not single out)."""
    ratios = [torch.pdist(feats[classes == c].double()).mean().item() / real_spread[c]
              for c in real_spread if int((classes == c).sum()) >= 2 and real_spread[c] > 0]
    return float(np.mean(ratios)) if ratios else float("nan")


def _real_class_spread(reference: dict, extractor) -> dict[int, float]:
    """Mean pairwise feature distance of the reference's real images per predicted class (computed once)."""
    if "_class_spread" not in reference:
        real = reference["features"].float()
        classes = digits_features.classify_features(extractor, real)
        reference["_class_spread"] = {int(c): torch.pdist(real[classes == c].double()).mean().item()
                                      for c in classes.unique() if int((classes == c).sum()) >= 2}
    return reference["_class_spread"]


def compute_metrics(image_batches, kind: str, extractor, reference: dict, metrics=("fid",), extra: dict | None = None,
                    se_resamples: int = frechet.SE_RESAMPLES, fd_inf: bool = False, fits: dict | None = None
                    ) -> dict[str, float]:
    """Metrics of the generated uint8 batches against `reference` (mu, sigma[, features]).

    metrics: any of 'fid' (Fréchet distance, with its bootstrap SE over `se_resamples` resamples (0: none) and,
    if fd_inf, FD_inf), 'is' (Inception Score: mean and std over 10 splits), 'prc' (precision/recall, k = 3,
    needs reference features), 'diversity' (digits only: `class_diversity`). Batches of (images, labels) also
    give `acc_digits` on the digits extractor (its classes are the data's). extra: {name: (extractor,
    reference)} of further feature spaces (`extra_extractors`), each adding `fd_<name>` and its SE/FD_inf.
    Returns {reported name: value}.
    """
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"metrics = {sorted(unknown)}: unknown; valid: {', '.join(METRICS)}")
    extra = extra or {}
    spec, names = EXTRACTORS[kind], metric_names(kind)
    # the IS layer (class logits) only when a metric reads it: IS, or acc_digits / diversity on the digits CNN
    chunks: dict[str, list] = {spec.fid_layer: [], **({spec.is_layer: []} if "is" in metrics or "acc" in names else {})}
    extra_chunks: dict[str, list] = {name: [] for name in extra}
    labels = []
    for batch in image_batches:
        images, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
        feats = extract_features(extractor, images)
        for layer, c in chunks.items():
            c.append(feats[layer])
        for name, (other, _) in extra.items():
            extra_chunks[name].append(extract_features(other, images)[other.fid_layer])
        labels.append(y)
    feats = {layer: torch.cat(c) for layer, c in chunks.items()}
    device = next(extractor.parameters()).device
    out = {}
    if kind == "digits" and labels and all(y is not None for y in labels):
        out[names["acc"]] = (feats[spec.is_layer].argmax(1) == torch.cat(labels).cpu()).double().mean().item()
    if "fid" in metrics:
        out.update(frechet_metrics(feats[spec.fid_layer].to(device), reference, names["fid"],
                                   se_resamples, fd_inf, fits))
    for name, (other, other_ref) in extra.items():
        out.update(frechet_metrics(torch.cat(extra_chunks[name]).to(device), other_ref, f"fd_{name}", se_resamples,
                                   fd_inf, fits))
    if "is" in metrics:
        isc = isc_features_to_metric(feats[spec.is_layer], splits=10, shuffle=True, rng_seed=2020)
        out[names["is"]], out[names["is_std"]] = isc[KEY_METRIC_ISC_MEAN], isc[KEY_METRIC_ISC_STD]
    if ("prc" in metrics or "diversity" in metrics and kind == "digits") and reference.get("features") is None:
        raise ValueError(f"{reference.get('path')}: precision/recall and diversity need real features, and these "
                         f"reference statistics hold only mu/sigma (an ADM file?); compute our own reference instead")
    if "prc" in metrics:
        prc = prc_features_to_metric(feats[spec.fid_layer].to(device), reference["features"].to(device),
                                     prc_neighborhood=PRC_NEIGHBORHOOD, prc_batch_size=10000, save_cpu_ram=True,
                                     verbose=False)
        out[names["precision"]], out[names["recall"]] = prc[KEY_METRIC_PRECISION], prc[KEY_METRIC_RECALL]
    if "diversity" in metrics and kind == "digits":
        classes = feats[spec.is_layer].argmax(1)
        spread = _real_class_spread(reference, extractor)
        out[names["diversity"]] = class_diversity(feats[spec.fid_layer], classes, spread)
    return out


def evaluate_generator(G, cfg, tokenizer, device, num_samples: int | None = None, metrics=None) -> dict[str, float]:
    """The trainer's in-training hook: e.g. {'fid': ..., 'fid_se': ...} (Inception) or {'fd_digits': ...,
    'fd_digits_se': ..., 'precision_digits': ..., ...} (digits CNN; `in_training_metrics` unless `metrics`).

    Uses cfg.eval (fid_samples, feature_extractor, inception_weights, reference_stats, truncation_psi,
    batch_size, precision, se_resamples, fd_dinov2); the same z and labels (seed cfg.train.seed) at every call,
    so successive values differ only through G. Extractors and references stay cached in-process.
    """
    extractor = get_extractor(cfg.eval.feature_extractor, cfg.eval.inception_weights, device)
    reference = get_reference(cfg, extractor, device)
    extra = extra_extractors(cfg, device)
    batches = generate_images(G, tokenizer, num_samples or cfg.eval.fid_samples, cfg.eval.batch_size,
                              cfg.eval.truncation_psi, seed=cfg.train.seed, device=device, precision=cfg.eval.precision)
    return compute_metrics(batches, cfg.eval.feature_extractor, extractor, reference,
                           metrics or in_training_metrics(cfg.eval), extra, cfg.eval.se_resamples)


FLOOR_VERSION = 2  # bump when the floor's metrics change (a new cache file)


def real_data_floor(cfg, device="cpu", num_samples: int | None = None, seed: int = 0) -> dict[str, float]:
    """What a perfect generator would score: the in-training metrics of `num_samples` (default eval.fid_samples)
    real images against the reference, e.g. {'fd_digits_floor': ..., 'fd_digits_floor_se': ...,
    'acc_digits_real': ..., 'precision_digits_real': ..., 'recall_digits_real': ..., 'diversity_digits_real': ...}.

    The images are a seeded random subset of the data set (drawn with replacement when num_samples exceeds it),
    with their labels. Cached beside the reference statistics, one small JSON per sample count and seed.
    """
    import json

    from gatscale.core.atomic import atomic_write_text
    from gatscale.data import open_shards

    n = num_samples or cfg.eval.fid_samples
    kind, names = cfg.eval.feature_extractor, metric_names(cfg.eval.feature_extractor)
    extractor = get_extractor(kind, cfg.eval.inception_weights, device)
    reference = get_reference(cfg, extractor, device)
    ref = Path(reference["path"])
    path = ref.with_name(f"{ref.stem}-floor-{n}-seed{seed}-v{FLOOR_VERSION}.json")
    if path.exists():
        return json.loads(path.read_text())
    shards = open_shards(cfg.data)
    g = torch.Generator().manual_seed(seed)
    if n <= len(shards):
        pick = torch.randperm(len(shards), generator=g)[:n]
    else:
        pick = torch.randint(len(shards), (n,), generator=g)
    pick = pick.sort().values.numpy()
    batches = ((torch.from_numpy(shards.gather("image", idx)), torch.from_numpy(shards.gather("label", idx, np.int64)))
               for idx in np.array_split(pick, max(1, len(pick) // cfg.eval.batch_size)))
    metrics = in_training_metrics(cfg.eval) if reference.get("features") is not None else ("fid",)
    values = compute_metrics(batches, kind, extractor, reference, metrics, se_resamples=cfg.eval.se_resamples)
    fd = names["fid"]
    floor = {f"{fd}_floor{k[len(fd):]}": v for k, v in values.items() if k in (fd, f"{fd}_se")}
    floor.update({f"{k}_real": v for k, v in values.items() if not k.startswith(fd)})
    atomic_write_text(path, json.dumps(floor) + "\n")
    return floor
