"""The one file lock: an exclusive flock on a lock file, held by one process for a `with` block.

The kernel releases an flock when its last descriptor closes, so a killed process never leaves a stale lock. The
file's text names the holder (`pid N on HOST`) for the message a waiting process shows. flock is advisory and
reliable on a local disk; on NFS it depends on the server's lock support. Used for a run folder's `run.lock`
(train/status.py: `RunLock`, non-blocking after a short wait), `.tracking.lock` and `mlflow.db.lock` (blocking).
"""
import fcntl
import os
import time
from pathlib import Path


class FileLock:
    """wait_s: None blocks until the lock is free; a number of seconds retries that long, then raises `busy`."""

    def __init__(self, path: str | os.PathLike, wait_s: float | None = None):
        self.path, self.wait_s, self.fd = Path(path), wait_s, None

    def busy(self, holder: str) -> Exception:
        """The error raised when the lock stays held for wait_s."""
        return BlockingIOError(f"{self.path}: locked by {holder}")

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = None if self.wait_s is None else time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                holder = self.path.read_text().strip() or "another process"
                os.close(self.fd)
                raise self.busy(holder) from None
            except BaseException:
                os.close(self.fd)
                raise
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"pid {os.getpid()} on {os.uname().nodename}".encode())
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing releases the flock
