"""File helpers of the tracking layer: an exclusive flock, and atomic writes.

`atomic_write` is `gatscale.config.atomic_write_text` again: importing gatscale.config imports torch (through
gatscale.models), which the tracker's sender process does not otherwise need (~2 s and ~300 MB per run).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_LOCK_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def flock(fd: int, operation: int, path) -> bool:
    """fcntl.flock; False (with a warning) on a filesystem without flock (some Lustre/GPFS mounts)."""
    try:
        fcntl.flock(fd, operation)
        return True
    except OSError as e:
        if e.errno not in _LOCK_UNSUPPORTED:
            raise
        log.warning("%s: this filesystem does not support flock (%s); continuing without the lock", path, e)
        return False


@contextlib.contextmanager
def file_lock(path: Path):
    """Exclusive `flock` on `path` (created if missing), held for the `with` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        locked = flock(f.fileno(), fcntl.LOCK_EX, path)
        try:
            yield
        finally:
            if locked:
                with contextlib.suppress(OSError):
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def atomic_write(path: str | os.PathLike, text: str):
    """Write via a temporary file in the same folder, fsync, rename: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
