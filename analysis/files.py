"""Atomic file writes for figures and caches (binary; text goes through gatscale.config.atomic_write_text)."""
import os
import tempfile
from pathlib import Path


def atomic_save(path, write):
    """Call write(binary file) on a temporary file in the same folder, fsync, rename: no reader sees a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
