"""`gatscale extract-latents SRC DEST`: an ImageNet-layout image folder -> sharded latents + uint8 images.

Each image is ADM centre-cropped to `--resolution` (`center_crop_arr` of guided-diffusion/DiT/REPA), encoded
by the tokenizer (SD-VAE ft-mse: posterior mean and std, float32 unless `--latent-dtype float16`), and
written with its label and the crop itself in the shard format of shards.py.

The work is split into shards of `--shard-size` images in a fixed order (classes = sorted folder names, files
sorted within each class). A shard is finished only when its folder is renamed into place, so a killed run
is resumed by running the same command again: finished shards are skipped, never rewritten. Jobs of a sweep
take `--shard-range A:B` or `--num-jobs N --job-index I`; with several CUDA devices visible (or a comma list
such as `--device cuda:0,cuda:1`) one process per device takes a part of the job's shards. Whichever job
finds every shard finished writes index.json. Unreadable images are printed, recorded in their shard's
meta.json, index.json and skipped.txt, and counted: num_files = num_images + num_skipped.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from gatscale.core.atomic import atomic_write_text
from gatscale.core.errors import InputError, describe
from .shards import shard_count, shard_done, shard_fields, tokenizer_info, write_index, write_shard
from .vae import build_tokenizer

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LATENT_DTYPES = ("float32", "float16")


class ExtractError(ValueError):
    """Bad input to extract-latents; the message names the argument or path and the value."""


def center_crop_arr(image: Image.Image, image_size: int) -> np.ndarray:
    """ADM centre crop (guided-diffusion, used by DiT/REPA): halve with a BOX filter while the short side is
    >= 2*size, BICUBIC-resize so the short side == size, crop the centre. Returns (size, size, 3) uint8."""
    while min(image.size) >= 2 * image_size:
        image = image.resize(tuple(s // 2 for s in image.size), resample=Image.BOX)
    ratio = image_size / min(image.size)
    image = image.resize(tuple(round(s * ratio) for s in image.size), resample=Image.BICUBIC)
    arr = np.asarray(image.convert("RGB"))
    top, left = (arr.shape[0] - image_size) // 2, (arr.shape[1] - image_size) // 2
    return arr[top:top + image_size, left:left + image_size]


def list_images(src: Path) -> tuple[list[str], list[int], list[str], int]:
    """(relative file paths, labels, class names, number of ignored non-image files) of an image folder
    with one sub-folder per class; class index = position of the folder name in sorted order."""
    if not src.is_dir():
        raise ExtractError(f"SRC = {str(src)!r}: folder not found "
                           "(expected an image folder with one sub-folder per class)")
    class_names = sorted(d.name for d in src.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_names:
        raise ExtractError(f"SRC = {str(src)!r}: no class sub-folders "
                           "(expected SRC/<class>/<image>, the ImageNet layout)")
    files, labels, ignored = [], [], 0
    for label, name in enumerate(class_names):
        for root, dirs, names in os.walk(src / name, followlinks=True):
            dirs.sort()
            for fname in sorted(names):
                if fname.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.relpath(os.path.join(root, fname), src))
                    labels.append(label)
                else:
                    ignored += 1
    if not files:
        raise ExtractError(f"SRC = {str(src)!r}: no image files in its {len(class_names)} class folders "
                           f"(extensions looked for: {', '.join(IMAGE_EXTENSIONS)})")
    return files, labels, class_names, ignored


def parse_shard_range(text: str, num_shards: int) -> range:
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        a = b = None
    if a is None or not 0 <= a < b <= num_shards:
        raise ExtractError(f"--shard-range = {text!r}: expected A:B with 0 <= A < B <= {num_shards} "
                           f"(this extraction has {num_shards} shards)")
    return range(a, b)


def job_shards(num_shards: int, shard_range: str | None, num_jobs: int | None, job_index: int | None) -> range:
    """The shards this job owns: a --shard-range, the I-th of N contiguous parts, or all of them."""
    if shard_range is not None and (num_jobs is not None or job_index is not None):
        raise ExtractError("--shard-range and --num-jobs/--job-index exclude each other; give one of them")
    if shard_range is not None:
        return parse_shard_range(shard_range, num_shards)
    if num_jobs is None and job_index is None:
        return range(num_shards)
    if num_jobs is None or job_index is None or num_jobs < 1 or not 0 <= job_index < num_jobs:
        raise ExtractError(f"--num-jobs = {num_jobs}, --job-index = {job_index}: give both, with N >= 1 and 0 <= I < N")
    return range(job_index * num_shards // num_jobs, (job_index + 1) * num_shards // num_jobs)


def parse_devices(text: str) -> list[str]:
    """'auto': every visible CUDA device, else the CPU; or one device or a comma list ('cuda:0,cuda:1')."""
    if text == "auto":
        n = torch.cuda.device_count()
        return [f"cuda:{i}" for i in range(n)] if n else ["cpu"]
    devices = [d.strip() for d in text.split(",") if d.strip()]
    for d in devices:
        try:
            torch.device(d)
        except RuntimeError:
            raise ExtractError(f"--device = {text!r}: {d!r} is not a device "
                               "(e.g. auto, cpu, cuda, cuda:1, cuda:0,cuda:1)") from None
    return devices or ["cpu"]


class ImageFiles(torch.utils.data.Dataset):
    """files[i] -> (i, centre-cropped (R,R,3) uint8 or None, error message); decoding runs in loader workers."""

    def __init__(self, src: Path, files: list[str], resolution: int):
        self.src, self.files, self.resolution = src, files, resolution

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        try:
            with Image.open(self.src / self.files[i]) as image:
                image.load()
                return i, center_crop_arr(image.convert("RGB"), self.resolution), None
        except Exception as e:  # corrupt, truncated or unreadable: reported and skipped by the caller
            return i, None, f"{type(e).__name__}: {e}"


def extract_shard(plan: dict, k: int, files: list[str], labels: list[int], tokenizer, args, progress) -> None:
    """Decode, crop and encode one shard's images, then write it atomically (shards.write_shard)."""
    src, fields = Path(plan["source"]), plan["fields"]
    loader = torch.utils.data.DataLoader(ImageFiles(src, files, plan["resolution"]), batch_size=args.batch_size,
                                         num_workers=args.num_workers, collate_fn=list)
    arrays = {name: np.empty((len(files), *spec["shape"]), spec["dtype"]) for name, spec in fields.items()}
    kept, skipped = [], []
    for batch in loader:
        for i, _, err in batch:
            if err is not None:
                skipped.append({"path": str(src / files[i]), "error": err})
                progress.write(f"skipped unreadable image {src / files[i]}: {err}")
        good = [(i, arr) for i, arr, _ in batch if arr is not None]
        if good:
            x = torch.from_numpy(np.stack([arr for _, arr in good])).permute(0, 3, 1, 2).contiguous()
            rows = slice(len(kept), len(kept) + len(good))
            arrays["latent"][rows] = tokenizer.encode_moments(x).cpu().numpy()
            arrays["label"][rows] = [labels[i] for i, _ in good]
            if "image" in arrays:
                arrays["image"][rows] = x.numpy()
            kept += [i for i, _ in good]
        progress.update(len(batch))
    arrays = {name: a[:len(kept)] for name, a in arrays.items()}
    write_shard(Path(args.dest), k, arrays, {"count": len(kept), "files": [files[i] for i in kept], "skipped": skipped})


def run_shards(plan: dict, work: dict[int, tuple[list[str], list[int]]], device: str, args, position: int = 0,
               tokenizer=None):
    """Extract the shards in `work` ({k: (files, labels)}) on one device."""
    if tokenizer is None:
        tokenizer = build_tokenizer(plan["tokenizer"]["kind"], plan["tokenizer"]["source"], device=device)
    with tqdm(total=sum(len(f) for f, _ in work.values()), unit="img", position=position,
              desc=f"extract {device}", dynamic_ncols=True, mininterval=1 if sys.stderr.isatty() else 30) as progress:
        for k, (files, labels) in work.items():
            if not shard_done(Path(args.dest), k):
                extract_shard(plan, k, files, labels, tokenizer, args, progress)


def make_plan(args, files: list[str], labels: list[int], class_names: list[str], ignored: int,
              tokenizer) -> dict:
    """The extraction's identity (recorded in DEST/extract.json; a resumed job must match it)."""
    images, tok = not args.no_images, tokenizer_info(tokenizer)
    digest = hashlib.sha1("\n".join(f"{f}\t{label}" for f, label in zip(files, labels)).encode()).hexdigest()
    return {"source": str(Path(args.src).resolve()), "resolution": args.resolution, "shard_size": args.shard_size,
            "num_files": len(files), "files_sha1": digest, "num_ignored_non_images": ignored,
            "num_classes": len(class_names), "class_names": class_names, "crop": "adm-center-crop",
            "tokenizer": tok, "latent_dtype": args.latent_dtype, "images": images,
            "fields": shard_fields(tok, args.resolution, args.latent_dtype, images),
            "num_shards": shard_count(len(files), args.shard_size)}


def check_or_record_plan(dest: Path, plan: dict):
    """First job records the plan; later jobs (resume, other shard ranges) must have the same one."""
    file = dest / "extract.json"
    if file.exists():
        old = json.loads(file.read_text())
        diff = [k for k in plan if old.get(k) != plan[k]]
        if diff:
            k = diff[0]
            raise ExtractError(f"{file}: {k} = {old.get(k)!r} was recorded by an earlier extraction into this folder, "
                               f"now {plan[k]!r} ({', '.join(diff)} differ); resume with the same SRC and arguments "
                               "or use a new DEST")
    else:
        dest.mkdir(parents=True, exist_ok=True)
        atomic_write_text(file, json.dumps(plan, indent=1))


def finish_if_complete(dest: Path, plan: dict) -> dict | None:
    """Write index.json once every shard is finished (any job may do it; the result is the same)."""
    if not all(shard_done(dest, k) for k in range(plan["num_shards"])):
        return None
    for leftover in dest.glob(".shard-*.tmp"):  # from killed runs
        shutil.rmtree(leftover, ignore_errors=True)
    info = {k: v for k, v in plan.items() if k not in ("num_shards", "images")}
    index = write_index(dest, info, plan["num_shards"])
    atomic_write_text(dest / "labels.txt", "".join(f"{i}\t{name}\n" for i, name in enumerate(plan["class_names"])))
    if index["num_images"] + index["num_skipped"] != plan["num_files"]:
        raise RuntimeError(f"{dest}/index.json: {index['num_images']} images + {index['num_skipped']} skipped != "
                           f"{plan['num_files']} files listed; the shards are inconsistent")
    return index


def extract(args) -> dict | None:
    """Run this job's part of an extraction; returns the index when the whole extraction is complete."""
    if args.resolution < 1 or args.shard_size < 1 or args.batch_size < 1 or args.num_workers < 0:
        raise ExtractError(f"--resolution {args.resolution}, --shard-size {args.shard_size}, --batch-size "
                           f"{args.batch_size}, --num-workers {args.num_workers}: sizes must be >= 1 (workers >= 0)")
    src, dest = Path(args.src).expanduser(), Path(args.dest).expanduser()
    files, labels, class_names, ignored = list_images(src)
    devices = parse_devices(args.device)
    mine = job_shards(shard_count(len(files), args.shard_size), args.shard_range, args.num_jobs, args.job_index)
    # loaded here to fail early and to learn its geometry; with several devices each process loads its own
    tokenizer = build_tokenizer(args.tokenizer, args.vae, device=devices[0] if len(devices) == 1 else "cpu")
    if args.resolution % tokenizer.downsample:
        raise ExtractError(f"--resolution = {args.resolution}: must be a multiple of the VAE's downsampling "
                           f"factor {tokenizer.downsample}")
    plan = make_plan(args, files, labels, class_names, ignored, tokenizer)
    check_or_record_plan(dest, plan)
    size = args.shard_size
    pending = [k for k in mine if not shard_done(dest, k)]
    print(f"extract-latents: {len(files)} images, {len(class_names)} classes, {plan['num_shards']} shards; "
          f"this job: shards {mine.start}:{mine.stop}, {len(pending)} to do, on {', '.join(devices)}", flush=True)
    parts = [pending[i::len(devices)] for i in range(len(devices))]
    work = [{k: (files[k * size:(k + 1) * size], labels[k * size:(k + 1) * size]) for k in part} for part in parts]
    if len(devices) == 1:
        run_shards(plan, work[0], devices[0], args, tokenizer=tokenizer)
    else:
        ctx = multiprocessing.get_context("spawn")
        procs = [(d, ctx.Process(target=run_shards, args=(plan, w, d, args, i)))
                 for i, (w, d) in enumerate(zip(work, devices)) if w]
        for _, p in procs:
            p.start()
        for _, p in procs:
            p.join()
        failed = [d for d, p in procs if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"extraction failed on {', '.join(failed)}; finished shards are kept, run the same "
                               "command again to resume")
    return finish_if_complete(dest, plan)


def add_arguments(parser):
    parser.add_argument("src", help="image folder with one sub-folder per class (ImageNet train layout)")
    parser.add_argument("dest", help="output shard folder (resumable: rerun the same command after a kill)")
    parser.add_argument("--vae", default="stabilityai/sd-vae-ft-mse", help="hub id or local folder of the encoder VAE")
    parser.add_argument("--tokenizer", choices=["sd-vae", "pixels"], default="sd-vae")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--shard-size", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=64, help="images per encoder batch")
    parser.add_argument("--latent-dtype", choices=LATENT_DTYPES, default="float32",
                        help="storage dtype of the moments (REPA stores float32; float16 halves the size)")
    parser.add_argument("--shard-range", default=None, help="A:B, the shards this job extracts")
    parser.add_argument("--num-jobs", type=int, default=None, help="split the shards into N jobs ...")
    parser.add_argument("--job-index", type=int, default=None, help="... and run the I-th (0-based)")
    parser.add_argument("--device", default="auto",
                        help="auto (all visible GPUs, else cpu), cpu, cuda:1, cuda:0,cuda:1")
    parser.add_argument("--num-workers", type=int, default=min(8, len(os.sched_getaffinity(0))),
                        help="image decoding workers")
    parser.add_argument("--no-images", action="store_true", help="do not store the uint8 images (no REPA)")


def main(args) -> int:
    try:
        index = extract(args)
    except (ExtractError, FileNotFoundError) as e:  # bad input, reported by gatscale.cli
        raise InputError(describe(e)) from None
    if index is None:
        print("extract-latents: this job's shards are done; index.json is written by the job that finishes last")
    else:
        print(f"extract-latents: {index['num_images']} images in {len(index['shards'])} shards, "
              f"{index['num_skipped']} skipped (see skipped.txt) -> {args.dest}")
    return 0
