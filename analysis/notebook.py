"""Where a notebook finds its study: the sweep spec's experiment and tracking store, without environment variables.

A Jupyter kernel runs in the notebook's own folder (analysis/notebooks/), while `make demo` and `gatscale sweep`
ran in the repository root, where the spec's relative `sqlite:///mlflow.db` became ./mlflow.db. So a relative
path here (the spec, a SQLite store, the figures folder) is taken from the repository root: the nearest folder
at or above the working directory that holds the spec.
"""
from __future__ import annotations

from pathlib import Path

from .load import MissingData
from gatscale.tracking.store import sqlite_path


def find_root(spec: str | Path, start: str | Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: the working directory) that holds `spec`."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / spec).is_file():
            return folder
    raise MissingData(f"sweep spec {spec}: not found in {start} or any folder above it; set SPEC in the "
                      f"notebook's first cell to the spec's path (e.g. /path/to/gatscale/sweeps/demo.yaml)")


def absolute_uri(uri: str, root: Path) -> str:
    """`uri` with a relative SQLite file or store folder taken from `root`."""
    db = sqlite_path(uri)
    if db is not None and not db.is_absolute():
        head, _, query = uri.partition("?")
        return f"sqlite:///{root / db}" + (f"?{query}" if query else "")
    if "://" not in uri and not uri.startswith("file:") and not Path(uri).is_absolute():
        return str(root / uri)
    return uri


def find_study(spec: str | Path = "sweeps/demo.yaml", experiment: str | None = None,
               tracking_uri: str | None = None, out: str | Path = "figures") -> tuple[str, str, Path]:
    """(experiment, tracking URI, figures folder) of the study that `spec` describes, as `gatscale sweep` wrote
    it: the spec's name is the experiment, its runs' tracking.uri the store. `experiment` / `tracking_uri`,
    when given, win over the spec's."""
    from .cli import read_spec

    root = find_root(spec) if not Path(spec).is_absolute() else Path(spec).parent
    spec_experiment, spec_uri = read_spec(root / spec)
    uri = absolute_uri(tracking_uri or spec_uri, root)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise MissingData(f"no tracking store at {db}: run the study first (`make demo`, or `gatscale sweep {spec}` "
                          f"in {root}), or set TRACKING_URI in the notebook's first cell to where it was written "
                          f"(e.g. sqlite:////abs/path/mlflow.db or http://host:5000)")
    return experiment or spec_experiment, uri, root / out
