"""The small status file of a run folder, read by the sweep to decide skip / resume / start.

    status, step, iterations   what the run is doing and the last step it recorded (rewritten at every log step and
                               checkpoint; a failure marks the last record `failed`)
    checkpoint_step            the step of the last checkpoint completely written (0: none yet); resume decides
                               from this, never from `step` (trainer.py)
    attention                  set while the run cannot go on without a person (its checkpoints are unusable):
                               the one line saying why; the sweep shows it and does not relaunch the run
    throughput                 what a finished run measured (trainer.throughput_record)
    reason, metrics, updated, job_id, host
"""
import json
import os
import time
from pathlib import Path

from gatscale.core.atomic import atomic_write_text
from gatscale.core.errors import EnvironmentProblem
from gatscale.core.lock import FileLock
from ..tracking.labels import job_id

STATUS_FILE = "status.json"
TERMINAL = ("finished", "diverged")  # a sweep never relaunches these

# Process exit codes of `gatscale train`, for backends: finished and diverged are both terminal.
EXIT_OK, EXIT_FAILED, EXIT_PREEMPTED = 0, 1, 75  # 75 = EX_TEMPFAIL: try again (requeue)
EXIT_LOCKED = 16  # the run folder's lock is held by a live trainer (16 = EBUSY): already running, not a failure


def write_status(run_dir: Path, status: str, step: int, iterations: int, reason: str | None = None,
                 metrics: dict | None = None, checkpoint_step: int = 0, attention: str | None = None,
                 throughput: dict | None = None):
    """throughput: what a finished run measured (trainer.throughput_record), read back by the GPU-hour estimates
    (sweep/throughput.py)."""
    payload = {
        "status": status, "step": step, "iterations": iterations, "checkpoint_step": checkpoint_step,
        "reason": reason, "metrics": metrics or {}, "updated": time.time(), "job_id": job_id(),
        "host": os.uname().nodename,
    }
    if attention:
        payload["attention"] = attention
    if throughput:
        payload["throughput"] = throughput
    atomic_write_text(Path(run_dir) / STATUS_FILE, json.dumps(payload, indent=1))


def read_status(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


LOCK_FILE = "run.lock"


class RunInProgress(EnvironmentProblem, RuntimeError):
    """Another process holds the run folder's lock (the run is being trained right now)."""


class RunLock(FileLock):
    """The run folder's lock, held by the process that trains the run: two trainers never write one folder, and
    `run_in_progress` lets a sweep see a live run. A second trainer waits `wait_s` for it (a sweep's probe holds it
    for a moment), then raises RunInProgress."""

    def __init__(self, run_dir: Path, wait_s: float = 2.0):
        super().__init__(Path(run_dir) / LOCK_FILE, wait_s)

    def busy(self, holder: str) -> Exception:
        return RunInProgress(f"{self.path.parent}: the run is already being trained by {holder}")


def run_in_progress(run_dir: Path) -> bool:
    if not (Path(run_dir) / LOCK_FILE).exists():
        return False
    try:
        with RunLock(run_dir, wait_s=0):
            return False
    except RunInProgress:
        return True
