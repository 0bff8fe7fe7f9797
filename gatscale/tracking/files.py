"""flock for the tracking layer: run-folder and store locks, tolerant of filesystems without flock."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
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
