"""Throughput of `build_train_loader` on a synthetic shard set of ImageNet-256 shapes.

    python benchmarks/data_loader.py [--num-images 20000] [--batch-size 256] [--num-workers 2] [--dir DIR]

Writes (once, into --dir) random SD-VAE moments (8x32x32) and uint8 images (3x256x256) in the shard format,
then reports samples/s with and without the raw images. Goal: >= 20,000 latents/s without images.
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from gatscale.core.config import DataConfig
from gatscale.data import build_train_loader
from gatscale.data.shards import read_index, shard_count, shard_fields, write_index, write_shard


def make_synthetic_shards(dest: Path, num_images: int, shard_size: int = 4096, latent_dtype: str = "float32"):
    if (dest / "index.json").exists() and read_index(dest)["num_images"] == num_images:
        return
    rng = np.random.default_rng(0)
    num_shards = shard_count(num_images, shard_size)
    for k in range(num_shards):
        n = min(shard_size, num_images - k * shard_size)
        write_shard(dest, k, {"latent": rng.standard_normal((n, 8, 32, 32), dtype=np.float32).astype(latent_dtype),
                              "label": rng.integers(0, 1000, n),
                              "image": rng.integers(0, 256, (n, 3, 256, 256), dtype=np.uint8)},
                    {"count": n, "skipped": []})
    tok = {"kind": "sd-vae", "source": None, "channels": 4, "downsample": 8}
    write_index(dest, {"source": "synthetic (benchmarks/data_loader.py)", "resolution": 256, "num_classes": 1000,
                       "class_names": [str(i) for i in range(1000)], "num_files": num_images,
                       "tokenizer": tok, "fields": shard_fields(tok, 256, latent_dtype)}, num_shards)


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU time (user + system) of this process and its live children (the loader's workers)."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def measure(cfg: DataConfig, batch_size: int, seconds: float) -> tuple[float, float]:
    """(samples/s of wall time, samples per CPU-second of main process + workers). The second figure does
    not depend on what else runs on the machine: on an idle machine, wall rate ~ CPU rate * usable cores."""
    loader = build_train_loader(cfg, batch_size, rank=0, world_size=1, seed=0)
    for _ in range(2 * max(cfg.num_workers, 1)):  # worker start-up and prefetch fill
        next(loader)
    proc = psutil.Process()
    n, t0, c0 = 0, time.perf_counter(), cpu_seconds(proc)
    while time.perf_counter() - t0 < seconds:
        batch = next(loader)
        n += len(batch["label"])
    c1 = cpu_seconds(proc)
    return n / (time.perf_counter() - t0), n / max(c1 - c0, 1e-9)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-images", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--latent-dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--dir", default=None, help="where to keep the synthetic shards (default: a temp folder)")
    args = p.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="gatscale-bench-"))
    t = time.perf_counter()
    make_synthetic_shards(root, args.num_images, latent_dtype=args.latent_dtype)
    print(f"synthetic shards: {args.num_images} images in {root} ({time.perf_counter() - t:.1f} s)")
    results = {}
    for load_images in (False, True):
        cfg = DataConfig(source="shards", path=str(root), tokenizer="sd-vae", resolution=256, num_classes=1000,
                         load_images=load_images, num_workers=args.num_workers)
        rate, per_cpu_s = measure(cfg, args.batch_size, args.seconds)
        results["with_images" if load_images else "latents_only"] = {"samples_per_s": round(rate),
                                                                     "samples_per_cpu_s": round(per_cpu_s)}
        print(f"load_images={load_images}: {rate:,.0f} samples/s, {per_cpu_s:,.0f} samples per CPU-second "
              f"(batch {args.batch_size}, {args.num_workers} workers, load average {os.getloadavg()[0]:.1f})")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
