"""The shard format shared by `extract-latents`, `prepare-digits` and the train loader.

    DEST/
      index.json              what is there: shards and counts, field dtypes and shapes, class names,
                              tokenizer, source, skipped files (written last, atomically)
      skipped.txt             unreadable source images, one "path<TAB>error" a line
      shard-00000/            one finished shard (a folder renamed into place when complete)
        latent.npy            (n, 2C, h, w) posterior moments [mean, std], float32 (or float16 if recorded)
        label.npy             (n,) int64
        image.npy             (n, 3, R, R) uint8 (absent with --no-images)
        meta.json             count, source files (relative paths), skipped files
      shard-00001/ ...

Every .npy opens with `np.load(path, mmap_mode="r")`. A shard folder is written under a temporary name and
renamed into place only when all its files are fsynced: a folder named `shard-NNNNN` is always complete.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from gatscale.core.atomic import atomic_write_text, fsync_dir, make_readable

FORMAT = "gatscale-shards/1"


def shard_count(num_images: int, shard_size: int) -> int:
    return -(-num_images // shard_size)


def tokenizer_info(tokenizer) -> dict:
    """What index.json records of the tokenizer (vae.Tokenizer) that made the latents."""
    return {"kind": tokenizer.kind, "source": tokenizer.source, "channels": tokenizer.channels,
            "downsample": tokenizer.downsample}


def shard_fields(tokenizer: dict, resolution: int, latent_dtype: str = "float32", images: bool = True) -> dict:
    """index.json's "fields": dtype and per-row shape of latent (moments), label and (unless not `images`) image."""
    size = resolution // tokenizer["downsample"]
    fields = {"latent": {"dtype": latent_dtype, "shape": [2 * tokenizer["channels"], size, size]},
              "label": {"dtype": "int64", "shape": []}}
    if images:
        fields["image"] = {"dtype": "uint8", "shape": [3, resolution, resolution]}
    return fields


def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def shard_done(dest: Path, k: int) -> bool:
    return (Path(dest) / shard_name(k) / "meta.json").exists()


def write_shard(dest: Path, k: int, arrays: dict[str, np.ndarray], meta: dict) -> bool:
    """Write shard k atomically: temp folder in `dest`, every file fsynced, renamed to `shard-NNNNN`.
    Returns False (and discards the copy) if another process finished the same shard first."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=f".{shard_name(k)}.", suffix=".tmp"))
    try:
        for name, arr in arrays.items():
            with open(tmp / f"{name}.npy", "wb") as f:
                np.save(f, np.ascontiguousarray(arr))
                f.flush()
                os.fsync(f.fileno())
        atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=1))
        make_readable(tmp)  # mkdtemp makes it owner-only; the files inside follow the umask
        fsync_dir(tmp)
        try:
            os.rename(tmp, dest / shard_name(k))
        except OSError:
            if shard_done(dest, k):
                return False  # a concurrent job wrote the same shard; both copies are identical in content
            raise
        fsync_dir(dest)
        return True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_shard_meta(dest: Path, k: int) -> dict:
    return json.loads((Path(dest) / shard_name(k) / "meta.json").read_text())


def write_index(dest: Path, info: dict, num_shards: int) -> dict:
    """Collect the finished shards' metadata into index.json and skipped.txt (atomic; safe to redo)."""
    dest = Path(dest)
    shards, skipped = [], []
    for k in range(num_shards):
        meta = read_shard_meta(dest, k)
        shards.append({"name": shard_name(k), "count": meta["count"]})
        skipped += meta.get("skipped", [])
    index = dict(info, format=FORMAT, num_images=sum(s["count"] for s in shards), num_skipped=len(skipped),
                 shards=shards, skipped=skipped)
    atomic_write_text(dest / "skipped.txt", "".join(f"{s['path']}\t{s['error']}\n" for s in skipped))
    atomic_write_text(dest / "index.json", json.dumps(index, indent=1))
    return index


def read_index(path: str | os.PathLike) -> dict:
    """index.json of a shard folder, with a clear error when the folder is not one."""
    path = Path(path)
    file = path / "index.json"
    if not file.exists():
        hint = (" (extraction is unfinished: run the same extract-latents command again to complete it)"
                if any(path.glob("shard-*")) else "")
        raise FileNotFoundError(f"{file}: not found; data.path must be a folder written by `gatscale extract-latents` "
                                f"or `gatscale prepare-digits`{hint}")
    index = json.loads(file.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{file}: format = {index.get('format')!r}: expected {FORMAT!r}")
    return index


class ShardSet:
    """Read side: memory-maps every shard's fields (lazily, per process) and gathers rows by global index."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.index = read_index(self.path)
        self.counts = np.array([s["count"] for s in self.index["shards"]], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        self.fields = self.index["fields"]
        self._arrays: dict[tuple[str, int], np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self):  # memory maps are reopened in each DataLoader worker, not pickled
        return dict(self.__dict__, _arrays={})

    def array(self, field: str, k: int) -> np.ndarray:
        key = (field, k)
        if key not in self._arrays:
            if field not in self.fields:
                raise KeyError(f"{self.path}/index.json: this data set has no field {field!r} "
                               f"(fields: {', '.join(self.fields)})")
            self._arrays[key] = np.load(self.path / self.index["shards"][k]["name"] / f"{field}.npy", mmap_mode="r")
        return self._arrays[key]

    def gather(self, field: str, indices: np.ndarray, dtype=None, out: np.ndarray | None = None) -> np.ndarray:
        """Rows `indices` (global, any order) of `field`, each copied once from its memory map into `out`
        (a gather-then-scatter by fancy indexing copies twice: ~2x slower for 196 KB image rows)."""
        spec = self.fields[field]
        if out is None:
            out = np.empty((len(indices), *spec["shape"]), dtype=dtype or spec["dtype"])
        shard_of = np.searchsorted(self.offsets, indices, side="right") - 1
        for j, (k, i) in enumerate(zip(shard_of.tolist(), (indices - self.offsets[shard_of]).tolist())):
            out[j] = self.array(field, k)[i]
        return out
