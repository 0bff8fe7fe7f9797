"""The small status file of a run folder, read by the sweep to decide skip / resume / start."""
import json
import os
import time
from pathlib import Path

from ..config import atomic_write_text

STATUS_FILE = "status.json"
TERMINAL = ("finished", "diverged")  # a sweep never relaunches these

# Process exit codes of `gatscale train`, for backends: finished and diverged are both terminal.
EXIT_OK, EXIT_FAILED, EXIT_PREEMPTED = 0, 1, 75  # 75 = EX_TEMPFAIL: try again (requeue)


def job_id() -> str | None:
    env = os.environ
    if "SLURM_ARRAY_JOB_ID" in env:
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '0')}"
    return env.get("SLURM_JOB_ID") or env.get("GATSCALE_JOB_ID")


def write_status(run_dir: Path, status: str, step: int, iterations: int, reason: str | None = None,
                 metrics: dict | None = None):
    payload = {
        "status": status, "step": step, "iterations": iterations, "reason": reason,
        "metrics": metrics or {}, "updated": time.time(), "job_id": job_id(), "host": os.uname().nodename,
    }
    atomic_write_text(Path(run_dir) / STATUS_FILE, json.dumps(payload, indent=1))


def read_status(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
