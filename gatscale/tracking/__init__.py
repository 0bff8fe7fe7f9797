"""Trackers: what the trainer reports to. `build_tracker` picks one from the config."""
from .base import NullTracker, Tracker


def build_tracker(cfg) -> Tracker:
    """cfg: TrackingConfig."""
    if cfg.backend == "null":
        return NullTracker()
    from .mlflow_tracker import MlflowTracker
    return MlflowTracker(cfg)


__all__ = ["Tracker", "NullTracker", "build_tracker"]
