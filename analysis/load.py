"""Read a gatscale experiment back from MLflow into pandas frames (the tracker is analysis's only input).

- `load_runs`: one row per training run: its params (the flattened RunConfig, parsed back from strings),
  its tags, and typed columns the figures use (model, size, patch, width, mng, repa, lr_g, status, ...).
- `load_histories`: every logged value of every metric (MlflowClient.get_metric_history), one row per
  (run, metric, step), with the run's fractional epoch at that step. Cached per run under `cache_dir`,
  keyed by the run's last update, so finished runs are fetched once.
- `load_lpips`: the `eval/lpips_contribution.csv` artifact of every run that has one.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore", message="IProgress not found")  # mlflow's tqdm.auto in a notebook without ipywidgets
from mlflow import MlflowClient  # noqa: E402

from gatscale.atomic import atomic_open  # noqa: E402
from gatscale.sizes import GAT_SIZES, parse_model_name  # noqa: E402
from gatscale.tracking.runs import _search  # noqa: E402  (the paging loop over search_runs; no public equivalent)
from gatscale.tracking.store import sqlite_path  # noqa: E402

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_CACHE_DIR = Path(os.environ.get("GATSCALE_CACHE", Path.home() / ".cache" / "gatscale" / "histories"))
MLFLOW_STATUS = {"RUNNING": "running", "SCHEDULED": "running", "FINISHED": "finished", "FAILED": "failed",
                 "KILLED": "failed"}
LPIPS_ARTIFACT = "eval/lpips_contribution.csv"


class MissingData(LookupError):
    """What a figure or a loader needs is not in the tracker; the message says what to run."""


# ---------------------------------------------------------------------------------------------
# Runs

def load_runs(experiment: str, tracking_uri: str = DEFAULT_TRACKING_URI, parent_run_id: str | None = None) -> pd.DataFrame:
    """Training runs of an experiment (or the children of one sweep's parent run) as a frame."""
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = ", ".join(sorted(e.name for e in client.search_experiments())) or "none"
        raise MissingData(f"no MLflow experiment {experiment!r} at {tracking_uri}; experiments there: {names}")
    found = _search(client, exp.experiment_id, {"mlflow.parentRunId": parent_run_id} if parent_run_id else {})
    parents = {r.data.tags.get("mlflow.parentRunId") for r in found}
    rows = [_run_row(r) for r in found if r.info.run_id not in parents and "model.generator.size" in r.data.params]
    if not rows:
        where = f"under parent run {parent_run_id}" if parent_run_id else f"in experiment {experiment!r}"
        raise MissingData(f"no training runs {where} at {tracking_uri} (a training run logs the param "
                          f"'model.generator.size'); run `gatscale sweep SPEC` or `gatscale train CONFIG` first")
    runs = pd.DataFrame(rows)
    order = {s: i for i, s in enumerate(GAT_SIZES)}
    runs["_order"] = runs["size"].map(lambda s: order.get(s, len(order)))
    return runs.sort_values(["_order", "patch", "name"]).drop(columns="_order").reset_index(drop=True)


def _run_row(run) -> dict:
    params = {k: parse_param(v) for k, v in run.data.params.items()}
    tags = dict(run.data.tags)
    g, d = params.get("model.generator.size"), params.get("model.discriminator.size", params.get("model.generator.size"))
    size, patch = split_model_name(g)
    width = model_width(g, params.get("model.generator.hidden_size"))
    width_d = model_width(d, params.get("model.discriminator.hidden_size"))
    width_aware = bool(params.get("optim.width_aware_lr", True))
    status = tags.get("gatscale.status") or MLFLOW_STATUS.get(run.info.status, run.info.status.lower())
    latest = run.data.to_proto().metrics
    row = {
        "run_id": run.info.run_id,
        "name": tags.get("gatscale.name") or run.info.run_name,
        "status": status,
        "parent_run_id": tags.get("mlflow.parentRunId"),
        "model": model_label(g, params, "generator"), "size": size, "patch": patch, "width": width,
        "model_d": model_label(d, params, "discriminator"), "width_d": width_d,
        "mng": str(params.get("method.mng", "exp")),
        "repa": bool(params.get("method.repa", True)),
        "width_aware_lr": width_aware,
        "lr_g": _float(params.get("lr_g"), _width_aware_lr(params, width, width_aware)),
        "lr_d": _float(params.get("lr_d"), _width_aware_lr(params, width_d, width_aware)),
        "seed": params.get("train.seed"),
        "batch_size": params.get("train.batch_size"),
        "gflops_g": _float(params.get("gflops_g")),
        "gflops_d": _float(params.get("gflops_d")),
        "diverged_step": _float(tags.get("gatscale.diverged_step")),
        "divergence_reason": tags.get("gatscale.divergence_reason", ""),
        "stand_in": tags.get("gatscale.stand_in", ""),
        "start_time": pd.to_datetime(run.info.start_time, unit="ms"),
        # Changes whenever a metric, the status or the end time changes: the history cache key.
        "fingerprint": f"{status}|{run.info.status}|{run.info.end_time}|{len(latest)}|"
                       f"{max((m.step for m in latest), default=-1)}|{max((m.timestamp for m in latest), default=-1)}",
    }
    return {**params, **{k: v for k, v in tags.items() if k.startswith("gatscale.")}, **row}


def parse_param(text: str):
    """MLflow stores params as str(value): turn 'None', 'True', '2e-4', '12' back into Python values."""
    if text in ("None", "null", ""):
        return None
    if text in ("True", "true", "False", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def split_model_name(name) -> tuple[str, float]:
    """'GAT-XL/2' -> ('XL', 2); anything else -> (name, nan)."""
    m = re.fullmatch(r"GAT-(\w+)/(\d+)", str(name))
    return (m.group(1), int(m.group(2))) if m else (str(name), np.nan)


def model_label(name, params: dict, net: str) -> str:
    """The paper's size name, plus the overrides a shrunk run logged: 'GAT-S/2 (d=4, C=32)'."""
    overrides = [f"{short}={params[f'model.{net}.{key}']}" for key, short in (("depth", "d"), ("hidden_size", "C"))
                 if params.get(f"model.{net}.{key}") is not None]
    return f"{name} ({', '.join(overrides)})" if overrides else str(name)


def model_width(name, hidden_size=None):
    """The width C of a network: the override when logged, else the paper's size table."""
    if hidden_size is not None:
        return int(hidden_size)
    try:
        return parse_model_name(str(name))["hidden_size"]
    except ValueError:
        return np.nan


def _width_aware_lr(params, width, width_aware):
    """Paper Eq. 4, for runs that did not log lr_g / lr_d: lr * C_base / C_model."""
    lr = _float(params.get("optim.lr"))
    if not width_aware:
        return lr
    return lr * _float(params.get("optim.base_width"), 768.0) / width


def _float(value, default=np.nan):
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


# ---------------------------------------------------------------------------------------------
# Metric histories

HISTORY_COLUMNS = ["run_id", "name", "metric", "step", "epoch", "value"]
CACHE_COLUMNS = ["run_id", "metric", "step", "value", "epoch"]  # what _fetch_histories returns


def load_histories(runs: pd.DataFrame, tracking_uri: str = DEFAULT_TRACKING_URI, metrics=None,
                   cache_dir=DEFAULT_CACHE_DIR, refresh: bool = False) -> pd.DataFrame:
    """Full histories of `metrics` (None: all) of each run in `runs`, long format (HISTORY_COLUMNS).

    A run's histories are cached as one parquet file keyed by its fingerprint (status, end time, latest
    metric step and timestamp): an unchanged run is read from disk, a finished one is never fetched
    again. `cache_dir=None` or `refresh=True` fetch everything.
    """
    client = None
    frames = []
    for run in runs.itertuples():
        frame = None if refresh else _read_cache(cache_dir, tracking_uri, run)
        if frame is None:
            client = client or _client(tracking_uri)
            frame = _fetch_histories(client, run.run_id)
            _write_cache(cache_dir, tracking_uri, run, frame)
        frame.insert(1, "name", run.name)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=HISTORY_COLUMNS)
    if metrics is not None:
        out = out[out["metric"].isin(list(metrics))]
    return out[HISTORY_COLUMNS].reset_index(drop=True)


def _fetch_histories(client, run_id: str) -> pd.DataFrame:
    names = sorted(client.get_run(run_id).data.metrics)
    rows = [(run_id, name, m.step, m.value) for name in names for m in client.get_metric_history(run_id, name)]
    frame = pd.DataFrame(rows, columns=["run_id", "metric", "step", "value"])
    frame = frame.astype({"step": "int64", "value": "float64"}).sort_values(["metric", "step"], kind="stable")
    epochs = frame[frame["metric"] == "epoch"].drop_duplicates("step", keep="last")
    if len(epochs):  # the epoch at any logged step, interpolated between the steps where it was logged
        frame["epoch"] = np.interp(frame["step"], epochs["step"], epochs["value"], left=np.nan, right=np.nan)
    else:
        frame["epoch"] = np.nan
    return frame.reset_index(drop=True)


def _cache_path(cache_dir, tracking_uri, run) -> Path:
    """<cache>/<store>/<run id>-<fingerprint digest>.parquet: a changed run gets a new file name (parquet holds
    only typed columns: a cache anyone can write can corrupt a figure, never run code in the reader)."""
    store = hashlib.sha1(tracking_uri.encode()).hexdigest()[:12]
    digest = hashlib.sha1(run.fingerprint.encode()).hexdigest()[:12]
    return Path(cache_dir) / store / f"{run.run_id}-{digest}.parquet"


def _read_cache(cache_dir, tracking_uri, run):
    if cache_dir is None:
        return None
    try:
        frame = pd.read_parquet(_cache_path(cache_dir, tracking_uri, run))
    except Exception:  # noqa: BLE001 - absent or unreadable (pyarrow raises its own types): fetch again
        return None
    return frame if list(frame.columns) == CACHE_COLUMNS else None


def _write_cache(cache_dir, tracking_uri, run, frame):
    if cache_dir is None:
        return
    path = _cache_path(cache_dir, tracking_uri, run)
    for stale in path.parent.glob(f"{run.run_id}-*.parquet"):  # the run's entries for older fingerprints
        stale.unlink(missing_ok=True)
    with atomic_open(path) as f:
        frame[CACHE_COLUMNS].to_parquet(f, index=False)


# ---------------------------------------------------------------------------------------------
# Artifacts

def load_lpips(runs: pd.DataFrame, tracking_uri: str = DEFAULT_TRACKING_URI) -> pd.DataFrame:
    """Per-block LPIPS contribution tables (`eval/lpips_contribution.csv`) of the runs that have one."""
    client = _client(tracking_uri)
    with no_progress_bar():
        frames = _download_lpips(client, runs)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id", "name", "block", "contribution"])


@contextlib.contextmanager
def no_progress_bar():
    """No tqdm bar from MLflow per small artifact downloaded."""
    before = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = before


def _download_lpips(client, runs) -> list[pd.DataFrame]:
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs.itertuples():
            listed = {f.path for f in client.list_artifacts(run.run_id, "eval")}
            if LPIPS_ARTIFACT not in listed:
                continue
            local = client.download_artifacts(run.run_id, LPIPS_ARTIFACT, tmp)
            table = pd.read_csv(local)
            missing = {"block", "contribution"} - set(table.columns)
            if missing:
                raise ValueError(f"run {run.name} ({run.run_id}): artifact {LPIPS_ARTIFACT} lacks column(s) "
                                 f"{', '.join(sorted(missing))}; expected block, contribution, normalized, "
                                 f"backbone, num_samples")
            table.insert(0, "run_id", run.run_id)
            table.insert(1, "name", run.name)
            frames.append(table)
    return frames


def load_experiment(experiment: str, tracking_uri: str = DEFAULT_TRACKING_URI, parent_run_id: str | None = None,
                    cache_dir=DEFAULT_CACHE_DIR, refresh: bool = False):
    """(runs, histories) of an experiment: what the notebooks and `gatscale figures` start from."""
    runs = load_runs(experiment, tracking_uri, parent_run_id)
    return runs, load_histories(runs, tracking_uri, cache_dir=cache_dir, refresh=refresh)


def _client(tracking_uri: str) -> MlflowClient:
    """A client for `tracking_uri`; a sqlite path that does not exist is an error (MLflow would create it)."""
    path = sqlite_path(tracking_uri)
    if path is not None and not path.exists():
        raise MissingData(f"tracking store {tracking_uri}: file {path.resolve()} does not exist; "
                          f"give the store where the study was written (gatscale figures --tracking-uri; "
                          f"tracking_uri= in Python; TRACKING_URI in a notebook's first cell), e.g. "
                          f"sqlite:////abs/path/mlflow.db or http://host:5000")
    return MlflowClient(tracking_uri=tracking_uri)
