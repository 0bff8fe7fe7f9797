"""What the sweep asks the tracker: its parent run, and the state of every run already in the study.

One MLflow experiment per study (`tracking.experiment`); a sweep is a parent run (tag gatscale.kind = sweep) and
each training run is nested under it (tag mlflow.parentRunId, from `tracking.parent_run_id`).
"""
from __future__ import annotations

import pandas as pd

from .base import MLFLOW_STATUS
from .labels import clean_params, code_version
from .store import client_for, experiment_id, resolve_uri

COLUMNS = ["run_id", "status", "name", "config_hash", "run_dir", "last_step", "job_id", "kind", "parent_run_id",
           "mlflow_status", "start_time", "end_time"]
_TAG_COLUMNS = {"status": "gatscale.status", "name": "gatscale.name", "config_hash": "gatscale.config_hash",
                "run_dir": "gatscale.run_dir", "job_id": "gatscale.job_id", "kind": "gatscale.kind",
                "parent_run_id": "mlflow.parentRunId"}


def _quote(key: str, value: str) -> str:
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"find_runs filter {key} = {value!r}: a value cannot hold both ' and \" (MLflow search syntax)")


def search_runs(client, exp_id: str, filters: dict[str, str]) -> list:
    """Every run of experiment `exp_id` whose tags equal `filters` ({tag name: value}), oldest first, all pages."""
    query = " and ".join(f"tags.`{k}` = {_quote(k, v)}" for k, v in filters.items())
    runs, token = [], None
    while True:
        page = client.search_runs([exp_id], query, max_results=1000, page_token=token,
                                  order_by=["attributes.start_time ASC"])
        runs += list(page)
        token = page.token
        if not token:
            return runs


def start_sweep_run(cfg, sweep_name: str, spec_hash: str, params: dict) -> str:
    """Find or create the sweep's parent run (cfg: TrackingConfig); re-launching the same sweep reuses it.
    Two launchers racing each create one, then both keep the oldest and the other is deleted."""
    client = client_for(cfg.uri)
    exp = experiment_id(client, resolve_uri(cfg.uri), cfg.experiment)
    identity = {"gatscale.kind": "sweep", "gatscale.sweep": sweep_name, "gatscale.spec_hash": spec_hash}
    found = search_runs(client, exp, identity)
    if found:
        run_id = found[0].info.run_id
        client.set_tag(run_id, "gatscale.status", "running")
        client.update_run(run_id, status="RUNNING")
        return run_id
    from mlflow.entities import Param

    tags = {**identity, "gatscale.name": sweep_name, "gatscale.status": "running", **code_version()}
    mine = client.create_run(exp, run_name=sweep_name, tags=tags).info.run_id
    client.log_batch(mine, params=[Param(k, v) for k, v in clean_params(params).items()])
    oldest = search_runs(client, exp, identity)[0].info.run_id
    if oldest != mine:
        client.delete_run(mine)
    return oldest


def log_sweep_artifacts(cfg, sweep_name: str, spec_hash: str, paths) -> str | None:
    """Log files (e.g. the study's findings table) as artifacts of the sweep's parent run, replacing the earlier
    ones of the same name; None when the study has no parent run yet (nothing was launched through a sweep)."""
    from .store import ensure_store

    uri = ensure_store(cfg.uri)
    client = client_for(uri)
    exp = experiment_id(client, resolve_uri(uri), cfg.experiment)
    found = search_runs(client, exp, {"gatscale.kind": "sweep", "gatscale.sweep": sweep_name,
                                      "gatscale.spec_hash": spec_hash})
    if not found:
        return None
    run_id = found[0].info.run_id
    for path in paths:
        client.log_artifact(run_id, str(path))
    return run_id


def end_sweep_run(cfg, run_id: str, status: str = "finished"):
    """Mark the sweep's parent run done (status as in base.STATUSES)."""
    client = client_for(cfg.uri)
    client.set_tag(run_id, "gatscale.status", status)
    if status != "running":
        client.set_terminated(run_id, status=MLFLOW_STATUS[status])


def find_runs(cfg, filter: dict[str, str] | None = None) -> pd.DataFrame:
    """Runs of the study (cfg: TrackingConfig) whose tags match `filter`, one row each (COLUMNS), oldest first.
    Filter keys are tag names; a short key is a gatscale tag: {'config_hash': 'abc'} means gatscale.config_hash.
    status is the gatscale.status tag (running/finished/diverged/failed/preempted); last_step the last step
    whose metrics the store holds."""
    client = client_for(cfg.uri)
    exp = client.get_experiment_by_name(cfg.experiment)
    if exp is None:
        return pd.DataFrame(columns=COLUMNS)
    filters = {(k if "." in k else _TAG_COLUMNS.get(k, f"gatscale.{k}")): v for k, v in (filter or {}).items()}
    rows = []
    for run in search_runs(client, exp.experiment_id, filters):
        tags = run.data.tags
        row = {col: tags.get(tag) for col, tag in _TAG_COLUMNS.items()}
        last = tags.get("gatscale.last_step")
        row.update(run_id=run.info.run_id, last_step=int(last) if last is not None else None,
                   mlflow_status=run.info.status,
                   start_time=pd.to_datetime(run.info.start_time, unit="ms", utc=True),
                   end_time=pd.to_datetime(run.info.end_time, unit="ms", utc=True) if run.info.end_time else pd.NaT)
        rows.append(row)
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["last_step"] = df["last_step"].astype("Int64")
    return df
