"""The embedded digits data set: scikit-learn's `load_digits` (1,797 8x8 images, 10 classes) as
small RGB uint8 images, so CPU runs, tests and the demo need no download.

`gatscale prepare-digits DEST [--resolution 16]` writes it in the shard format of `extract-latents`.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from gatscale.core.atomic import make_readable
from gatscale.core.errors import InputError, describe
from .shards import read_index, shard_count, shard_fields, tokenizer_info, write_index, write_shard
from .vae import PixelTokenizer

DIGITS_CLASS_NAMES = [str(i) for i in range(10)]


def resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) weights of 1-D linear interpolation with half-pixel centres: the triangle filter,
    widened by the scale factor when shrinking (antialiasing), normalised per output pixel. Upsampling gives
    exactly torch's bilinear with align_corners=False."""
    support = max(1.0, size_in / size_out)
    centres = (np.arange(size_out) + 0.5) * size_in / size_out - 0.5
    w = np.clip(1 - np.abs(np.arange(size_in)[None, :] - centres[:, None]) / support, 0, None)
    return w / w.sum(1, keepdims=True)


def load_digits_images(resolution: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as (images uint8 (N,3,R,R), labels int64 (N,)), in scikit-learn's order.

    Values 0..16 are scaled to 0..255 (white strokes on black), the 8x8 image is resized to R x R by
    BILINEAR interpolation (half-pixel centres, as torch's align_corners=False; antialiased when R < 8) and
    replicated to 3 channels. NumPy only: safe to call in forked processes (no torch thread pool).
    """
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"load_digits_images: resolution = {resolution!r}: expected a positive integer (e.g. 16)")
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype(np.float64) * (255.0 / 16.0)  # (N, 8, 8) in 0..255
    m = resize_matrix(8, resolution)
    x = np.einsum("ri,nij,cj->nrc", m, x, m)
    images = np.repeat(np.clip(np.round(x), 0, 255).astype(np.uint8)[:, None], 3, axis=1)
    return images, digits.target.astype(np.int64)


def pixel_moments(images: np.ndarray) -> np.ndarray:
    """The 'pixels' tokenizer's moments (vae.PixelTokenizer) in NumPy: [image/127.5 - 1, 0]."""
    mean = images.astype(np.float32) / np.float32(127.5) - np.float32(1)
    return np.concatenate([mean, np.zeros_like(mean)], axis=1)


def prepare_digits(dest: str | os.PathLike, resolution: int = 16, tokenizer: str = "pixels",
                   shard_size: int = 4096) -> Path:
    """Write the digits set to `dest` in the shard format (see shards.py), unless it is already there.

    Safe when several processes start at once: each writes a private temporary folder next to `dest` and
    renames it into place; the first rename wins and the others discard their copy.
    """
    dest = Path(dest).expanduser()
    if (dest / "index.json").exists():
        return _check_prepared(dest, resolution, tokenizer)
    if tokenizer != "pixels":
        raise ValueError(f"data.tokenizer = {tokenizer!r}: the digits set is only prepared with the 'pixels' tokenizer "
                         "(SD-VAE latents would need real VAE weights); use tokenizer 'pixels', or run "
                         "`gatscale extract-latents` on an image folder")
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"prepare-digits: {dest} exists and is not a digits shard folder (no index.json); "
                              "give an empty or new folder")
    if shard_size < 1:
        raise ValueError(f"prepare-digits: shard_size = {shard_size}: must be >= 1")
    images, labels = load_digits_images(resolution)
    tok = tokenizer_info(PixelTokenizer())  # its geometry; the moments are computed in NumPy (pixel_moments)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        num_shards = shard_count(len(images), shard_size)
        for k in range(num_shards):
            sl = slice(k * shard_size, (k + 1) * shard_size)
            moments = pixel_moments(images[sl])
            write_shard(tmp, k, {"latent": moments, "label": labels[sl], "image": images[sl]},
                        {"count": len(labels[sl]), "first": sl.start, "skipped": []})
        write_index(tmp, {
            "source": "sklearn.datasets.load_digits (8x8, values 0..16 -> 0..255, bilinear resize, gray -> RGB)",
            "resolution": resolution, "num_classes": 10, "class_names": DIGITS_CLASS_NAMES,
            "tokenizer": tok, "fields": shard_fields(tok, resolution), "num_files": len(images)}, num_shards)
        make_readable(tmp)
        try:
            os.rename(tmp, dest)  # also replaces an empty folder the user created
        except OSError:
            if not (dest / "index.json").exists():
                raise FileExistsError(f"prepare-digits: {dest} exists and is not a digits shard folder "
                                      "(no index.json); give an empty or new folder") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _check_prepared(dest, resolution, tokenizer)


def _check_prepared(dest: Path, resolution: int, tokenizer: str) -> Path:
    index = read_index(dest)
    if index["resolution"] != resolution or index["tokenizer"]["kind"] != tokenizer:
        raise ValueError(f"{dest}/index.json: holds digits at resolution {index['resolution']} with tokenizer "
                         f"{index['tokenizer']['kind']!r}, but resolution {resolution} and tokenizer {tokenizer!r} "
                         "were asked for; use another folder (data.path) or delete this one")
    return dest


def add_arguments(parser):
    parser.add_argument("dest", help="output folder (created; must be new or empty)")
    parser.add_argument("--resolution", type=int, default=16, help="image side in pixels (default 16)")
    parser.add_argument("--shard-size", type=int, default=4096, help="images per shard (default 4096)")


def main(args) -> int:
    try:
        path = prepare_digits(args.dest, args.resolution, "pixels", args.shard_size)
    except (ValueError, FileExistsError) as e:  # bad input, reported by gatscale.cli
        raise InputError(describe(e)) from None
    index = read_index(path)
    print(f"wrote {index['num_images']} digits images ({index['num_classes']} classes, "
          f"{args.resolution}x{args.resolution}) to {path}")
    return 0
