"""Evaluation: FID/IS/precision-recall (fid.py), per-block LPIPS contribution and feature PCA (Fig. 4b)."""
import os
from pathlib import Path


def atomic_write_bytes(path, data: bytes):
    """Binary twin of `gatscale.config.atomic_write_text`: temp file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
