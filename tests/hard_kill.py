"""`python tests/hard_kill.py POINT STEP ARGS...`: `gatscale ARGS...`, SIGKILLed by itself at one exact point, as an
OOM kill or a node failure would (no handler runs, nothing is flushed that was not written):

    log STEP     just after the metrics of step STEP are appended to metrics.jsonl (before status.json says STEP)
    write STEP   halfway through writing checkpoint STEP, inside its atomic write (the temporary file holds a part)

Only this test helper patches anything; the trainer runs its own code up to the kill.
"""
import contextlib
import os
import signal
import sys

from gatscale.cli import main
from gatscale.tracking.base import FolderTracker
from gatscale.train import checkpoint

POINT, STEP, ARGS = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
WRITE_BEFORE_KILL = 4096  # bytes of the checkpoint that reach its temporary file


def kill_now():
    os.kill(os.getpid(), signal.SIGKILL)


class KilledHalfway:
    """A file that lets WRITE_BEFORE_KILL bytes through, then the process dies mid-write."""

    def __init__(self, f):
        self.f, self.written = f, 0

    def write(self, data):
        if self.written + len(data) > WRITE_BEFORE_KILL:
            self.f.write(bytes(data)[:WRITE_BEFORE_KILL - self.written])
            self.f.flush()
            kill_now()
        self.written += len(data)
        return self.f.write(data)

    def flush(self):
        self.f.flush()


if POINT == "log":
    logged = FolderTracker.log_metrics

    def log_metrics(self, metrics, step):
        logged(self, metrics, step)
        if step == STEP:
            kill_now()
    FolderTracker.log_metrics = log_metrics
elif POINT == "write":
    real_open = checkpoint.atomic_open

    @contextlib.contextmanager
    def atomic_open(path, mode="wb"):
        with real_open(path, mode) as f:
            yield KilledHalfway(f) if checkpoint.checkpoint_step(path) == STEP else f
    checkpoint.atomic_open = atomic_open
else:
    sys.exit(f"hard_kill.py: POINT must be log or write, not {POINT!r}")

sys.exit(main(ARGS))
