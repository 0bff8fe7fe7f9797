"""The logger interface between the trainer and a tracker, and the tracker every run has: its run folder.

The trainer calls, on rank 0 only:
    start(run_dir, name, params, tags)   open the run's record; a requeued run continues it (and, with MLflow,
                                         the tracker run whose id is stored in run_dir)
    log_metrics({name: float}, step)     never blocks training; never loses a metric
    log_artifact(path, artifact_path)    a file (sample grid PNG, config, tables)
    set_tags({name: str})
    finish(status)                       status in STATUSES; flushes everything

`FolderTracker` (tracking.backend: none, and the trainer's default) appends every record to the run folder's
metrics.jsonl (metrics_log.py); `MlflowTracker` does the same and mirrors the file to MLflow.
"""
from pathlib import Path
from typing import Protocol

from .labels import clean_params, clean_tags, run_tags, valid_name
from .metrics_log import MetricsLog, now_ms

STATUSES = ("running", "finished", "diverged", "failed", "preempted")
# gatscale status -> MLflow run status (the UI's run state); the gatscale.status tag keeps the exact one
MLFLOW_STATUS = {"running": "RUNNING", "finished": "FINISHED", "diverged": "FAILED", "failed": "FAILED",
                 "preempted": "KILLED"}
# MLflow run status -> gatscale status, for a run without the gatscale.status tag
STATUS_OF_MLFLOW = {"RUNNING": "running", "SCHEDULED": "running", "FINISHED": "finished", "FAILED": "failed",
                    "KILLED": "failed"}


class Tracker(Protocol):
    run_id: str | None

    def start(self, run_dir: Path, name: str, params: dict, tags: dict) -> None: ...
    def log_metrics(self, metrics: dict, step: int) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: dict) -> None: ...
    def finish(self, status: str) -> None: ...


class NullTracker:
    """What ranks other than 0 report to: nothing."""
    run_id = None

    def start(self, run_dir, name, params, tags):
        pass

    def log_metrics(self, metrics, step):
        pass

    def log_artifact(self, path, artifact_path=None):
        pass

    def set_tags(self, tags):
        pass

    def finish(self, status):
        pass


class FolderTracker:
    """Appends every record to the run folder's metrics.jsonl (~15 us a call); nothing leaves the folder."""
    run_id = None

    def __init__(self):
        self.log: MetricsLog | None = None
        self._finished = False

    def start(self, run_dir, name: str, params: dict, tags: dict):
        run_dir = Path(run_dir).resolve()
        self.log = MetricsLog(run_dir)
        self.log.append({"t": now_ms(), "tags": clean_tags({**run_tags(name, run_dir), **tags,
                                                            "gatscale.status": "running"})})
        self.log.append({"params": clean_params(params)})

    def _started(self, call: str):
        if self.log is None:
            raise RuntimeError(f"{type(self).__name__}.{call} before start(): the run's record is not open yet")

    def log_metrics(self, metrics: dict, step: int):
        self._started("log_metrics")
        values = {valid_name(k): float(v) for k, v in metrics.items()}
        self.log.append({"t": now_ms(), "step": int(step), "metrics": values})
        self.log.last_step = int(step)

    def log_artifact(self, path, artifact_path: str | None = None):
        self._started("log_artifact")
        self.log.append({"artifact": str(Path(path).resolve()), "artifact_path": artifact_path})

    def set_tags(self, tags: dict):
        self._started("set_tags")
        self.log.append({"t": now_ms(), "tags": clean_tags(tags)})

    def finish(self, status: str) -> bool:
        """Safe from a signal handler. Returns False when there was nothing to finish (not started, or done)."""
        if status not in STATUSES:
            raise ValueError(f"finish(status={status!r}): expected one of {', '.join(STATUSES)}")
        if self._finished or self.log is None:
            return False
        self._finished = True
        self.log.append({"t": now_ms(), "tags": {"gatscale.status": status}})
        if status != "running":
            self.log.append({"t": now_ms(), "status": MLFLOW_STATUS[status]})
        self.log.close()  # fsync'ed
        return True
