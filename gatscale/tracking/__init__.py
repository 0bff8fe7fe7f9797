"""Trackers: what the trainer reports to. `build_tracker` picks one from the config: `FolderTracker` (backend
none: the run folder's metrics.jsonl only) or `MlflowTracker` (the same file, mirrored to MLflow).

For the sweep (imported on first use, so `import gatscale.tracking` stays free of MLflow):
`ensure_store(uri)`, `start_sweep_run(cfg, sweep_name, spec_hash, params)`, `end_sweep_run(cfg, run_id, status)`,
`log_sweep_artifacts(cfg, sweep_name, spec_hash, paths)` (the findings table on the parent run),
`find_runs(cfg, filter)`, `search_runs(client, experiment_id, tag_filters)`. Replaying a run folder's metrics.jsonl:
`sync_run_dir(run_dir)` or `gatscale sync RUN_DIR`;
results computed after a run (eval, analyze): `log_after_run(run_dir, metrics, step, artifact)`.
"""
import importlib

from .base import MLFLOW_STATUS, STATUS_OF_MLFLOW, STATUSES, FolderTracker, NullTracker, Tracker

_LAZY = {"ensure_store": ".store", "resolve_uri": ".store", "start_sweep_run": ".runs", "end_sweep_run": ".runs",
         "log_sweep_artifacts": ".runs",
         "find_runs": ".runs", "search_runs": ".runs", "sync_run_dir": ".sync", "log_after_run": ".sync",
         "MlflowTracker": ".mlflow_tracker"}


def build_tracker(cfg) -> Tracker:
    """cfg: TrackingConfig."""
    if cfg.backend == "none":
        return FolderTracker()
    from .mlflow_tracker import MlflowTracker
    return MlflowTracker(cfg)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Tracker", "NullTracker", "FolderTracker", "build_tracker", "STATUSES", "MLFLOW_STATUS",
           "STATUS_OF_MLFLOW", *_LAZY]
