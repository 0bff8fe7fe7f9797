"""Atomic file writes: a temporary file in the same folder, fsync, rename, fsync of the folder.

A reader (or a resumed run) never sees a partial file: a kill during the write leaves the previous
version in place. Files get the permissions the umask allows (as `open` would), not mkstemp's 0600,
so lab members sharing a run folder can read configs, checkpoints and figures. Torch-free.
"""
import contextlib
import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


def make_readable(path: str | os.PathLike):
    """Give a temp file or folder (created owner-only) the permissions the umask allows."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_UMASK)


def fsync_dir(folder: str | os.PathLike):
    """Make a rename (or file creation) in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb"):
    """`with atomic_open(path) as f: ...` writes `path` atomically ('w' for text, 'wb' for bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        make_readable(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str):
    with atomic_open(path, "w") as f:
        f.write(text)

