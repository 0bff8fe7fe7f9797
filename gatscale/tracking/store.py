"""The tracking store: where runs live, created safely once, and the study's experiment in it.

The embedded default is a SQLite file (`sqlite:///mlflow.db`). MLflow creates and migrates its tables on first
use without a lock, and processes doing that at once on a fresh file break each other's migration ("duplicate
column name", "table ... already exists"). `ensure_store` therefore creates/migrates the DB under an exclusive
`fcntl.flock` on a sibling lock file (`mlflow.db.lock`); the sweep calls it once before launching runs, every
tracker calls it too (idempotent). A shared server (`uri: http://host:port`) owns its store: nothing to create.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import quote

from gatscale.core.atomic import atomic_write_text
from gatscale.core.lock import FileLock

log = logging.getLogger(__name__)

_ensured: set[str] = set()


class TrackingError(RuntimeError):
    """The tracking configuration cannot work as given; the message names the key, value and a fix."""


def resolve_uri(uri: str, root: str | Path | None = None) -> str:
    """Make a local store absolute: a relative SQLite file (`sqlite:///mlflow.db`), `file:` folder or plain folder
    is taken from `root` (a sweep spec's project root, gatscale/sweep/spec.py `project_root`), else from the cwd,
    which backends change. A server URI, or an absolute path, is returned as it is."""
    base = os.path.abspath(root if root is not None else os.getcwd())
    if uri.startswith("sqlite:///"):
        path, _, query = uri[len("sqlite:///"):].partition("?")
        if path and path != ":memory:":
            uri = "sqlite:///" + os.path.abspath(os.path.join(base, path)) + (f"?{query}" if query else "")
    elif uri.startswith("file:"):
        path = uri[len("file:"):]
        if not path.startswith("//"):  # file:mlruns, file:./mlruns; file:///abs and file://host/... are whole
            uri = Path(os.path.abspath(os.path.join(base, path))).as_uri()
    elif "://" not in uri:
        uri = os.path.abspath(os.path.join(base, uri))  # a plain folder: MLflow's file store
    return uri


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].partition("?")[0]
    return Path(path) if path and path != ":memory:" else None


def ensure_store(uri: str) -> str:
    """Create (or migrate to this MLflow's schema) the store at `uri` exactly once; returns the absolute URI.

    A `<db>.ready` file records the MLflow version that last created/migrated the DB: when it matches, opening
    the store only reads the schema, which is safe without the lock, so runs starting together do not queue."""
    uri = resolve_uri(uri)
    if uri in _ensured:
        return uri
    db = sqlite_path(uri)
    if db is not None:
        ready = db.with_name(db.name + ".ready")
        if not _is_ready(db, ready):
            with FileLock(db.with_name(db.name + ".lock")):
                if not _is_ready(db, ready):  # another process may have done it while we waited
                    _create_or_migrate_sqlite(uri, db)
                    atomic_write_text(ready, _mlflow_version())
    elif "://" not in uri:
        Path(uri).mkdir(parents=True, exist_ok=True)
    _ensured.add(uri)
    return uri


def _mlflow_version() -> str:
    import mlflow
    return mlflow.__version__


def _is_ready(db: Path, ready: Path) -> bool:
    try:
        return db.stat().st_size > 0 and ready.read_text() == _mlflow_version()
    except FileNotFoundError:
        return False


def _create_or_migrate_sqlite(uri: str, db: Path):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.store.db import utils as db_utils

    db.parent.mkdir(parents=True, exist_ok=True)
    try:  # MLflow creates the tables of a fresh file when it first opens it (and keeps the store cached)
        MlflowClient(uri).search_experiments(max_results=1)
    except MlflowException as e:
        if "out-of-date database schema" not in str(e):
            raise
        log.warning("%s: migrating the MLflow database to the schema of MLflow %s (%s)", db, _mlflow_version(), e)
        db_utils._upgrade_db(db_utils.create_sqlalchemy_engine_with_retry(uri))
        MlflowClient(uri).search_experiments(max_results=1)


def artifact_root(db: Path) -> Path:
    """Artifacts of a SQLite store live beside the DB (MLflow's own default, ./mlruns, follows the cwd)."""
    return db.resolve().parent / "mlruns"


# MLflow 3's UI opens an experiment on its GenAI overview (traces, tokens) unless this experiment tag says it is
# classic model training; the UI reads it (its `ExperimentKind` values), the server only stores it.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(client, uri: str, name: str) -> str:
    """Find or create the experiment `name` (one per study), marked as model training (EXPERIMENT_KIND);
    safe when many runs start at once."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        db = sqlite_path(uri)
        location = str(artifact_root(db) / quote(name, safe="")) if db is not None else None
        try:
            return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
        except MlflowException as e:
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            exp = client.get_experiment_by_name(name)
    if exp.lifecycle_stage != "deleted" and any(exp.tags.get(k) is None for k in EXPERIMENT_KIND):
        for key, value in EXPERIMENT_KIND.items():  # an experiment made by hand (mlflow experiments create)
            client.set_experiment_tag(exp.experiment_id, key, value)
    if exp.lifecycle_stage == "deleted":
        raise TrackingError(
            f"tracking.experiment = {name!r}: this experiment is deleted in {uri}; restore it with "
            f"`MLFLOW_TRACKING_URI={uri} mlflow experiments restore --experiment-id {exp.experiment_id}` "
            f"or choose another tracking.experiment")
    return exp.experiment_id


def configure_http_client():
    """The tracker retries with its own backoff and must not stall: MLflow's HTTP client otherwise retries
    7 times over ~4 minutes and waits up to 120 s per request. User settings win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def client_for(uri: str):
    from mlflow import MlflowClient
    configure_http_client()  # an unreachable server is an error in seconds, not after 4 minutes of retries
    return MlflowClient(tracking_uri=ensure_store(uri))
