"""Where a notebook finds its study: the sweep spec's experiment and tracking store, without environment variables.

A Jupyter kernel runs in the notebook's own folder (analysis/notebooks/). The spec and the figures folder are
found from the repository root: the nearest folder at or above the working directory that holds the spec. The
spec's relative `sqlite:///mlflow.db` is taken from its project root, as every gatscale command takes it
(gatscale/sweep/spec.py `project_root`); a TRACKING_URI given here, from the repository root.
"""
from __future__ import annotations

from pathlib import Path

from gatscale.sweep.spec import project_root
from gatscale.tracking.store import resolve_uri, sqlite_path
from .load import MissingData


def find_root(spec: str | Path, start: str | Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: the working directory) that holds `spec`."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / spec).is_file():
            return folder
    raise MissingData(f"sweep spec {spec}: not found in {start} or any folder above it; set SPEC in the "
                      f"notebook's first cell to the spec's path (e.g. /path/to/gatscale/sweeps/demo.yaml)")


def find_study(spec: str | Path = "sweeps/demo.yaml", experiment: str | None = None,
               tracking_uri: str | None = None, out: str | Path = "figures") -> tuple[str, str, Path]:
    """(experiment, tracking URI, figures folder) of the study that `spec` describes, as `gatscale sweep` wrote
    it: the spec's name is the experiment, its runs' tracking.uri the store. `experiment` / `tracking_uri`,
    when given, win over the spec's."""
    from .cli import read_spec

    root = find_root(spec) if not Path(spec).is_absolute() else project_root(spec)
    spec_experiment, spec_uri = read_spec(root / spec)
    uri = resolve_uri(tracking_uri, root) if tracking_uri else spec_uri
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise MissingData(f"no tracking store at {db}: run the study first (`make demo`, or `gatscale sweep {spec}` "
                          f"in {root}), or set TRACKING_URI in the notebook's first cell to where it was written "
                          f"(e.g. sqlite:////abs/path/mlflow.db or http://host:5000)")
    return experiment or spec_experiment, uri, root / out
