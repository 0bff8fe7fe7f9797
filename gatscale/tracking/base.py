"""The logger interface between the trainer and a tracker (MLflow or none).

The trainer calls, on rank 0 only:
    start(run_dir, name, params, tags)   create the tracker run, or continue the one whose id is
                                         stored in run_dir (a requeued run keeps its history)
    log_metrics({name: float}, step)     never blocks training; never loses a metric
    log_artifact(path, artifact_path)    a file (sample grid PNG, config, tables)
    set_tags({name: str})
    finish(status)                       status in STATUSES; flushes everything
"""
from pathlib import Path
from typing import Protocol

STATUSES = ("running", "finished", "diverged", "failed", "preempted")


class Tracker(Protocol):
    run_id: str | None

    def start(self, run_dir: Path, name: str, params: dict, tags: dict) -> None: ...
    def log_metrics(self, metrics: dict, step: int) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: dict) -> None: ...
    def finish(self, status: str) -> None: ...


class NullTracker:
    """Keeps the trainer usable without MLflow."""
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
