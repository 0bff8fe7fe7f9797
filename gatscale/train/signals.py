"""Preemption signals: SIGTERM/SIGUSR2 (SLURM, submitit, a sweep stopping) set a flag the training loop reads.

Torch-free, so that `gatscale train` installs a flag first thing, before the seconds spent importing torch:
a signal that arrives then is not lost (the default action would kill the process with no status written),
and the trainer's own flag takes it over when it installs itself.
"""
import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


class StopFlag:
    """Set by SIGTERM/SIGUSR2; the loop checkpoints and exits at the next step boundary."""

    def __init__(self):
        self.signum = None
        self.previous = {}

    def install(self) -> "StopFlag":
        if threading.current_thread() is not threading.main_thread():
            return self  # e.g. a Ray Tune trial thread: the backend handles preemption
        for sig in STOP_SIGNALS:
            self.previous[sig] = signal.signal(sig, self._handle)
            earlier = getattr(self.previous[sig], "__self__", None)
            if isinstance(earlier, StopFlag) and earlier.signum is not None and self.signum is None:
                self.signum = earlier.signum  # caught by the flag installed before this one
        return self

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        self.signum = signum
