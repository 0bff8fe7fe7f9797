"""Read a gatscale experiment back into pandas frames: from the run folders where they are reachable, else MLflow.

- `load_runs`: one row per training run: its params (the flattened RunConfig, parsed back from strings),
  its tags, and typed columns the figures use (model, size, patch, width, mng, repa, lr_g, status, ...),
  plus the per-step constants the trainer logs as params (images_per_step, flops_per_step, dataset_images).
  The runs are found in MLflow; a run whose folder (tag gatscale.run_dir) holds a metrics.jsonl is read from
  that folder (params, tags, status.json); `load_run_folders` reads folders alone (tracking.backend: none).
- `load_histories`: every logged value of every metric, one row per (run, metric, step) with the run's epoch and
  cumulative training FLOPs at that step, both derived here (and only here) from the per-step constants. A step
  logged twice (by a killed attempt and by its resume) counts once: the later value; what a killed attempt logged
  after the step its successor continued from (a rewind record, metrics_log.py) is dropped. From the run folder's
  metrics.jsonl when reachable; else MlflowClient.get_metric_history, cached per run under `cache_dir`, keyed by
  the run's last update, so finished runs are fetched once.
- `load_lpips`: the `eval/lpips_contribution.csv` of every run that has one (run folder, else MLflow artifact).
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore", message="IProgress not found")  # mlflow's tqdm.auto in a notebook without ipywidgets
from mlflow import MlflowClient  # noqa: E402

from gatscale.core.atomic import atomic_open  # noqa: E402
from gatscale.core.config import ConfigError, RunConfig, TrackingConfig, config_from_dict, effective_lr  # noqa: E402
from gatscale.core.sizes import GAT_SIZES, parse_model_name, size_letter  # noqa: E402
from gatscale.tracking.base import STATUS_OF_MLFLOW  # noqa: E402
from gatscale.tracking.metrics_log import METRICS_FILE, MetricsLog, metric_histories  # noqa: E402
from gatscale.tracking.runs import search_runs  # noqa: E402
from gatscale.tracking.store import sqlite_path  # noqa: E402

DEFAULT_TRACKING_URI = TrackingConfig().uri
DEFAULT_CACHE_DIR = Path(os.environ.get("GATSCALE_CACHE", Path.home() / ".cache" / "gatscale" / "histories"))
LPIPS_ARTIFACT = "eval/lpips_contribution.csv"


class MissingData(LookupError):
    """What a figure or a loader needs is not in the tracker; the message says what to run."""


# ---------------------------------------------------------------------------------------------
# Runs

def load_runs(experiment: str, tracking_uri: str = DEFAULT_TRACKING_URI,
              parent_run_id: str | None = None) -> pd.DataFrame:
    """Training runs of an experiment (or the children of one sweep's parent run) as a frame."""
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = ", ".join(sorted(e.name for e in client.search_experiments())) or "none"
        raise MissingData(f"no MLflow experiment {experiment!r} at {tracking_uri}; experiments there: {names}")
    found = search_runs(client, exp.experiment_id, {"mlflow.parentRunId": parent_run_id} if parent_run_id else {})
    parents = {r.data.tags.get("mlflow.parentRunId") for r in found}
    rows = [_mlflow_row(r) for r in found if r.info.run_id not in parents and "model.generator.size" in r.data.params]
    if not rows:
        where = f"under parent run {parent_run_id}" if parent_run_id else f"in experiment {experiment!r}"
        raise MissingData(f"no training runs {where} at {tracking_uri} (a training run logs the param "
                          f"'model.generator.size'); run `gatscale sweep SPEC` or `gatscale train CONFIG` first")
    return _in_size_order(pd.DataFrame(rows))


def load_run_folders(run_dirs) -> pd.DataFrame:
    """Training runs read from their folders alone (no MLflow needed: e.g. tracking.backend none); the run id is
    the MLflow one when the folder has one (tracking.json), else the folder's path."""
    rows = []
    for run_dir in map(Path, run_dirs):
        if not (run_dir / METRICS_FILE).is_file():
            raise MissingData(f"{run_dir}: no {METRICS_FILE}; give run folders written by `gatscale train`")
        params, tags = folder_params_and_tags(run_dir)
        run_id = MetricsLog(run_dir).load_state()["run_id"] or str(run_dir.resolve())
        rows.append(_run_row(run_id, params, {**tags, "gatscale.run_dir": str(run_dir.resolve())},
                             _folder_status(run_dir), pd.NaT, fingerprint="", folder=run_dir.resolve()))
    if not rows:
        raise MissingData("no run folders given")
    return _in_size_order(pd.DataFrame(rows))


def _in_size_order(runs: pd.DataFrame) -> pd.DataFrame:
    order = {s: i for i, s in enumerate(GAT_SIZES)}
    runs["_order"] = runs["size"].map(lambda s: order.get(s, len(order)))
    return runs.sort_values(["_order", "patch", "name"]).drop(columns="_order").reset_index(drop=True)


def run_folder(tags: dict) -> Path | None:
    """The run's folder (tag gatscale.run_dir) if it is reachable from here and holds its metrics.jsonl."""
    folder = tags.get("gatscale.run_dir")
    return Path(folder) if isinstance(folder, str) and (Path(folder) / METRICS_FILE).is_file() else None


def folder_params_and_tags(run_dir: Path) -> tuple[dict, dict]:
    """The params and tags a run folder's metrics.jsonl holds (as MLflow would: strings; later tags win)."""
    params, tags = {}, {}
    for _, record in MetricsLog(run_dir).read(chunk=None):
        params.update(record.get("params", {}))
        tags.update(record.get("tags", {}))
    return params, tags


def _folder_status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "status.json").read_text())["status"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _mlflow_row(run) -> dict:
    params, tags = dict(run.data.params), dict(run.data.tags)
    status = None
    folder = run_folder(tags)
    if folder is not None:  # the run folder is the record: what MLflow mirrors of it, and what it did not get yet
        more_params, more_tags = folder_params_and_tags(folder)
        params, tags, status = {**params, **more_params}, {**tags, **more_tags}, _folder_status(folder)
    latest = run.data.to_proto().metrics
    status = status or tags.get("gatscale.status") or STATUS_OF_MLFLOW.get(run.info.status, run.info.status.lower())
    # Changes whenever a metric, the status or the end time changes: the history cache key.
    fingerprint = (f"{status}|{run.info.status}|{run.info.end_time}|{len(latest)}|"
                   f"{max((m.step for m in latest), default=-1)}|{max((m.timestamp for m in latest), default=-1)}")
    return _run_row(run.info.run_id, params, tags, status, pd.to_datetime(run.info.start_time, unit="ms"),
                    fingerprint, folder, run.info.run_name)


def _run_row(run_id: str, raw_params: dict, tags: dict, status: str | None, start_time, fingerprint: str,
             folder: Path | None, run_name: str | None = None) -> dict:
    params = {k: parse_param(v) for k, v in raw_params.items()}
    g = params.get("model.generator.size")
    d = params.get("model.discriminator.size", g)
    size, patch = split_model_name(g)
    width = model_width(g, params.get("model.generator.hidden_size"))
    width_d = model_width(d, params.get("model.discriminator.hidden_size"))
    cfg = run_config(params) if params.get("lr_g") is None or params.get("lr_d") is None else None
    images_per_step = _float(params.get("images_per_step"), _float(params.get("train.batch_size")))
    row = {
        "run_id": run_id,
        "name": tags.get("gatscale.name") or run_name,
        "status": status or tags.get("gatscale.status"),
        "parent_run_id": tags.get("mlflow.parentRunId"),
        "model": model_label(g, params, "generator"), "size": size, "patch": patch, "width": width,
        "model_d": model_label(d, params, "discriminator"), "width_d": width_d,
        "mng": str(params.get("method.mng", "exp")),
        "repa": bool(params.get("method.repa", True)),
        "width_aware_lr": bool(params.get("optim.width_aware_lr", True)),
        "lr_g": _float(params.get("lr_g"), effective_lr(cfg, "generator") if cfg else np.nan),
        "lr_d": _float(params.get("lr_d"), effective_lr(cfg, "discriminator") if cfg else np.nan),
        "seed": params.get("train.seed"),
        "batch_size": params.get("train.batch_size"),
        "gflops_g": _float(params.get("gflops_g")),
        "gflops_d": _float(params.get("gflops_d")),
        # per-step constants (params): epoch = step * epochs_per_step, training FLOPs = step * flops_per_step
        "epochs_per_step": images_per_step / _float(params.get("dataset_images")),
        "flops_per_step": _float(params.get("flops_per_step")),
        "diverged_step": _float(tags.get("gatscale.diverged_step")),
        "divergence_reason": tags.get("gatscale.divergence_reason", ""),
        "stand_in": tags.get("gatscale.stand_in", ""),
        "folder": str(folder) if folder is not None else None,  # the run folder, when reachable (run_folder)
        "start_time": start_time,
        "fingerprint": fingerprint,
    }
    return {**params, **{k: v for k, v in tags.items() if k.startswith("gatscale.")}, **row}


def run_config(params: dict) -> RunConfig | None:
    """The RunConfig a run's params flatten (None if they do not make a valid one, e.g. a run logged by hand)."""
    sections = {f.name for f in RunConfig.__dataclass_fields__.values()}
    nested: dict = {}
    for key, value in params.items():
        if key.split(".")[0] not in sections or value is None:  # None: also '' (parse_param); keep the default
            continue
        if isinstance(value, str) and value[:1] in "[{":
            with contextlib.suppress(ValueError, SyntaxError):
                value = ast.literal_eval(value)
        *path, last = key.split(".")
        node = nested
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    try:
        return config_from_dict(nested)
    except (ConfigError, TypeError, AttributeError):
        return None


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
    try:
        return size_letter(name), parse_model_name(str(name))["patch_size"]
    except ValueError:
        return str(name), np.nan


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


def _float(value, default=np.nan):
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


# ---------------------------------------------------------------------------------------------
# Metric histories

HISTORY_COLUMNS = ["run_id", "name", "metric", "step", "epoch", "train_flops", "value"]
CACHE_COLUMNS = ["run_id", "metric", "step", "value"]  # what _fetch_histories returns


def load_histories(runs: pd.DataFrame, tracking_uri: str = DEFAULT_TRACKING_URI, metrics=None,
                   cache_dir=DEFAULT_CACHE_DIR, refresh: bool = False) -> pd.DataFrame:
    """Full histories of `metrics` (None: all) of each run in `runs`, long format (HISTORY_COLUMNS), one value per
    (run, metric, step): the one logged last. epoch and train_flops (cumulative training FLOPs) at each step come
    from the run's per-step constants (nan where it did not log them).

    A run whose folder is reachable (column `folder`) is read from its metrics.jsonl. The others come from MLflow,
    cached as one parquet file per run keyed by its fingerprint (status, end time, latest metric step and
    timestamp): an unchanged run is read from disk, a finished one is never fetched again. `cache_dir=None` or
    `refresh=True` fetch everything.
    """
    client = None
    frames = []
    for run in runs.itertuples():
        if isinstance(getattr(run, "folder", None), str):
            frame = folder_history(Path(run.folder), run.run_id)
        else:
            frame = None if refresh else _read_cache(cache_dir, tracking_uri, run)
            if frame is None:
                client = client or _client(tracking_uri)
                frame = _fetch_histories(client, run.run_id)
                _write_cache(cache_dir, tracking_uri, run, frame)
        frame.insert(1, "name", run.name)
        frame["epoch"] = frame["step"] * getattr(run, "epochs_per_step", np.nan)
        frame["train_flops"] = frame["step"] * getattr(run, "flops_per_step", np.nan)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=HISTORY_COLUMNS)
    if metrics is not None:
        out = out[out["metric"].isin(list(metrics))]
    return out[HISTORY_COLUMNS].reset_index(drop=True)


def folder_history(run_dir: Path, run_id: str) -> pd.DataFrame:
    """A run folder's metrics.jsonl as (run_id, metric, step, value): its curves as `metric_histories` reads them
    (the last value logged per (metric, step), without the steps a rewind record supersedes)."""
    rows = [(run_id, name, step, value) for name, curve in metric_histories(run_dir).items()
            for step, value in curve.items()]
    return _last_per_step(pd.DataFrame(rows, columns=CACHE_COLUMNS))


def _fetch_histories(client, run_id: str) -> pd.DataFrame:
    names = sorted(client.get_run(run_id).data.metrics)
    rows = [(run_id, name, m.step, m.timestamp, m.value) for name in names
            for m in client.get_metric_history(run_id, name)]
    frame = pd.DataFrame(rows, columns=["run_id", "metric", "step", "t", "value"]).sort_values("t", kind="stable")
    return _last_per_step(frame[CACHE_COLUMNS])


def _last_per_step(frame: pd.DataFrame) -> pd.DataFrame:
    """One value per (metric, step), the last in log order (a resumed run logs again what its killed attempt did)."""
    frame = frame.astype({"step": "int64", "value": "float64"}).drop_duplicates(["metric", "step"], keep="last")
    return frame.sort_values(["metric", "step"], kind="stable").reset_index(drop=True)


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
    """Per-block LPIPS contribution tables (`eval/lpips_contribution.csv`) of the runs that have one: from the run
    folder where it is reachable, else the run's MLflow artifact."""
    local = runs["folder"].notna() if "folder" in runs else pd.Series(False, index=runs.index)
    frames = [_lpips_table(run, Path(run.folder) / LPIPS_ARTIFACT) for run in runs[local].itertuples()
              if (Path(run.folder) / LPIPS_ARTIFACT).is_file()]
    if (~local).any():
        with no_progress_bar():
            frames += _download_lpips(_client(tracking_uri), runs[~local])
    if not frames:
        return pd.DataFrame(columns=["run_id", "name", "block", "contribution"])
    return pd.concat(frames, ignore_index=True)


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
            frames.append(_lpips_table(run, client.download_artifacts(run.run_id, LPIPS_ARTIFACT, tmp)))
    return frames


def _lpips_table(run, path) -> pd.DataFrame:
    table = pd.read_csv(path)
    missing = {"block", "contribution"} - set(table.columns)
    if missing:
        raise ValueError(f"run {run.name} ({run.run_id}): {LPIPS_ARTIFACT} lacks column(s) "
                         f"{', '.join(sorted(missing))}; expected block, contribution, normalized, "
                         f"backbone, num_samples")
    table.insert(0, "run_id", run.run_id)
    table.insert(1, "name", run.name)
    return table


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
