"""Deliver a run folder's metrics.jsonl to the MLflow store, and `gatscale sync RUN_DIR`.

The tracker's sender (sender.py) calls `deliver` every second; `gatscale sync` calls it after the run when the
store was unreachable (server down, node offline) or `finish` ran out of time. Both send what lies after the
`delivered` offset in tracking.json, in order, and move the offset after each accepted batch (metrics_log.py).
A rewind to step 0 (a run that starts over: none of its state was saved) replaces the tracker run: the old one is
tagged, ended and deleted (MLflow keeps it in its trash), and what follows goes to a new run, so the UI never shows
the lost attempt's steps and the new ones as one curve.

    gatscale sync runs/gat-b2-lr2e-4            # to the store recorded in runs/.../tracking.json
    gatscale sync runs/* --uri http://login1:5000   # the same store, now at another address
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from gatscale.core.errors import InputError, describe
from .labels import valid_name
from .metrics_log import METRICS_FILE, STATE_FILE, MetricsLog, now_ms
from .store import client_for, configure_http_client, experiment_id

log = logging.getLogger(__name__)

MAX_METRICS, MAX_TAGS, MAX_BYTES = 1000, 100, 400_000  # per log_batch: MLflow's limits (1 MB request)
ARTIFACT_ATTEMPTS = 3
PERMANENT_ERRORS = ("INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE")


def is_permanent(error: Exception) -> bool:
    """The store rejects a value: retrying cannot change that. Anything else (down, busy, locked) is retried."""
    return getattr(error, "error_code", None) in PERMANENT_ERRORS


class MalformedRecord(ValueError):
    error_code = "INVALID_PARAMETER_VALUE"  # handled like a value the store rejects


def check_run(client, mlog: MetricsLog) -> dict:
    """Forget a recorded run id the store no longer has (deleted, or another store): a new run is created."""
    from mlflow.exceptions import MlflowException

    with mlog.delivery_lock():
        state = mlog.load_state()
        if state["run_id"]:
            try:
                gone = client.get_run(state["run_id"]).info.lifecycle_stage == "deleted"
            except MlflowException as e:
                if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                gone = True
            if gone:
                log.warning("%s: tracker run %s is deleted or missing in %s; records not yet delivered go to a "
                            "new run", mlog.state_path, state["run_id"], state["uri"])
                state["run_id"] = None
                mlog.save_state(state)
    return state


def deliver(client, mlog: MetricsLog, deadline: float | None = None) -> tuple[str | None, int]:
    """Send the records after `delivered` (those present when called). Returns (run id, bytes left).
    Raises when the store fails: the caller retries later; nothing is lost or sent twice."""
    with mlog.delivery_lock():
        state = mlog.load_state()
        end = mlog.size()
        while state["delivered"] < end:
            records = mlog.read(state["delivered"], end)
            if not records:
                break  # only a record still being written
            for group in _groups(records):
                if _kind(group[0][1]) == "rewind":
                    if group[0][1]["rewind"] == 0 and state["run_id"] is not None:
                        _supersede(client, state["run_id"])
                        state["run_id"] = None  # the records after it go to a new run
                else:
                    if state["run_id"] is None:
                        state["run_id"] = _create_run(client, state)
                        mlog.save_state(state)
                    _send(client, mlog, state["run_id"], [r for _, r in group])
                state["delivered"] = group[-1][0]
                mlog.save_state(state)
                if deadline is not None and time.monotonic() > deadline:
                    return state["run_id"], mlog.size() - state["delivered"]
        return state["run_id"], mlog.size() - state["delivered"]


def _create_run(client, state: dict) -> str:
    tags = {"mlflow.parentRunId": state["parent_run_id"]} if state.get("parent_run_id") else None
    exp = experiment_id(client, state["uri"], state["experiment"])
    return client.create_run(exp, run_name=state.get("name"), tags=tags).info.run_id


def _supersede(client, run_id: str):
    """End and delete the tracker run of an attempt that left no checkpoint (its run folder keeps its records)."""
    if client.get_run(run_id).info.lifecycle_stage == "deleted":
        return  # done before a kill kept `delivered` from moving past the rewind
    client.set_tag(run_id, "gatscale.superseded", "the run started over from step 0: no checkpoint had been written")
    client.set_terminated(run_id, status="KILLED")
    client.delete_run(run_id)


def _kind(record: dict) -> str | None:
    return next((k for k in ("metrics", "tags", "params", "artifact", "status", "rewind") if k in record), None)


def _groups(records):
    """Consecutive metric/tag records share one log_batch within MLflow's limits; the others go alone."""
    group, n_metrics, tag_keys, n_bytes = [], 0, set(), 0
    for end, record in records:
        kind = _kind(record)
        if kind in ("metrics", "tags"):
            metrics, tags = record.get("metrics", {}), record.get("tags", {})
            size = sum(len(k) + len(str(v)) for k, v in tags.items()) + 40 * len(metrics)
            if group and (n_metrics + len(metrics) > MAX_METRICS or len(tag_keys | tags.keys()) > MAX_TAGS - 1
                          or n_bytes + size > MAX_BYTES):
                yield group
                group, n_metrics, tag_keys, n_bytes = [], 0, set(), 0
            group.append((end, record))
            n_metrics, tag_keys, n_bytes = n_metrics + len(metrics), tag_keys | tags.keys(), n_bytes + size
        else:
            if group:
                yield group
                group, n_metrics, tag_keys, n_bytes = [], 0, set(), 0
            yield [(end, record)]
    if group:
        yield group


def _send(client, mlog: MetricsLog, run_id: str, records: list[dict]):
    from mlflow.entities import RunTag

    kind = _kind(records[0])
    if kind in ("metrics", "tags"):
        try:
            metrics, tags = _entities(mlog, records)
            client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
        except Exception as e:
            if not is_permanent(e):
                raise
            if len(records) > 1:  # find the bad record, keep the rest
                for r in records:
                    _send(client, mlog, run_id, [r])
            else:
                log.error("tracking: a record was not accepted; skipped (%s): %.300s", e, records[0])
    elif kind == "params":
        _send_params(client, run_id, records[0]["params"])
    elif kind == "artifact":
        _send_artifact(client, mlog, run_id, records[0])
    elif kind == "status":
        r = records[0]
        if r["status"] == "RUNNING":
            client.update_run(run_id, status="RUNNING")
        else:
            client.set_terminated(run_id, status=r["status"], end_time=r["t"])


def _entities(mlog: MetricsLog, records: list[dict]):
    from mlflow.entities import Metric

    metrics, tags = [], {}
    try:
        for r in records:
            if "metrics" in r:
                metrics += [Metric(k, float(v), int(r["t"]), int(r["step"])) for k, v in r["metrics"].items()]
                tags["gatscale.last_step"] = str(r["step"])
                mlog.last_step = max(mlog.last_step, int(r["step"]))  # not back to a system sample's own step
            tags.update({k: str(v) for k, v in r.get("tags", {}).items()})  # later records win, as sent one by one
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MalformedRecord(f"malformed record ({type(e).__name__}: {e})") from None
    return metrics, tags


def _send_params(client, run_id: str, params: dict):
    """MLflow params are write-once: a requeued run re-sends only the new ones and warns about changed ones."""
    from mlflow.entities import Param

    existing = client.get_run(run_id).data.params
    changed = sorted(k for k, v in params.items() if k in existing and existing[k] != v)
    if changed:
        log.warning("tracking: params %s differ from those run %s was started with; MLflow keeps the first values",
                    ", ".join(changed), run_id)
    new = [Param(k, v) for k, v in params.items() if k not in existing]
    if new:
        client.log_batch(run_id, params=new)


def _send_artifact(client, mlog: MetricsLog, run_id: str, record: dict):
    """An upload that fails while the store answers is re-queued at the end of metrics.jsonl (up to
    ARTIFACT_ATTEMPTS), so it never blocks the metrics; a store that does not answer stops delivery."""
    path = Path(record["artifact"])
    try:
        client.log_artifact(run_id, str(path), record.get("artifact_path"))
        return
    except Exception as e:
        if not path.exists():
            log.warning("tracking: artifact %s no longer exists; not uploaded", path)
            return
        client.get_run(run_id)  # raises if the store is down: then the whole delivery is retried later
        attempt = record.get("attempt", 0) + 1
        if attempt < ARTIFACT_ATTEMPTS:
            log.warning("tracking: uploading artifact %s failed (%s); will retry", path, e)
            mlog.append({**record, "attempt": attempt})
        else:
            log.error("tracking: uploading artifact %s failed %d times (%s); giving up", path, attempt, e)


def sync_run_dir(run_dir: str | Path, uri: str | None = None, timeout: float | None = None) -> int:
    """Replay what the store has not accepted of one run folder's metrics.jsonl; returns the bytes still
    undelivered (0: all there)."""
    mlog = MetricsLog(run_dir)
    if not mlog.state_path.exists():
        raise FileNotFoundError(f"{mlog.state_path}: not found; RUN_DIR must be a run folder written by the "
                                f"MLflow tracker (it holds {STATE_FILE} and {METRICS_FILE})")
    if uri:
        with mlog.delivery_lock():
            state = mlog.load_state()
            state["uri"] = uri
            mlog.save_state(state)
    state = mlog.load_state()
    client = client_for(state["uri"])
    check_run(client, mlog)
    deadline = None if timeout is None else time.monotonic() + timeout
    for _ in range(ARTIFACT_ATTEMPTS + 1):  # each pass also retries the artifacts the one before re-queued
        _, left = deliver(client, mlog, deadline)
        if left == 0 or (deadline is not None and time.monotonic() > deadline):
            break
    return left


def log_after_run(run_dir: str | Path, metrics: dict | None = None, step: int | None = None,
                  artifact: str | Path | None = None, artifact_path: str | None = None, timeout: float = 20.0,
                  tags: dict | None = None, send: bool = True) -> int:
    """Add results computed after training (an evaluation, an analysis) to the run's record: appended to its
    metrics.jsonl like the trainer's, then (send, and the run has an MLflow run: tracking.json) delivered to its
    tracker run without reopening it: no status record, so its status, start and end time (its duration in the
    UI) stay as they were. What the store does not take within `timeout` s stays for `gatscale sync`. Returns the
    bytes still undelivered."""
    record = MetricsLog(run_dir)
    if metrics and step is not None:
        record.append({"t": now_ms(), "step": int(step),
                       "metrics": {valid_name(k): float(v) for k, v in metrics.items()}})
    if tags:
        record.append({"t": now_ms(), "tags": {k: str(v) for k, v in tags.items()}})
    if artifact is not None:
        record.append({"artifact": str(Path(artifact).resolve()), "artifact_path": artifact_path})
    record.close()
    if not send or not record.state_path.exists():
        return 0
    configure_http_client()
    return sync_run_dir(run_dir, timeout=timeout)


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folder(s) holding tracking.json")
    parser.add_argument("--uri", help="the tracking store's URI now, if it moved (default: the one recorded "
                                      "in tracking.json)")
    parser.add_argument("--timeout", type=float, default=None, help="give up after this many seconds per run")


def main(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    configure_http_client()
    failed, missing = 0, []
    for run_dir in args.run_dirs:
        try:
            left = sync_run_dir(run_dir, args.uri, args.timeout)
        except FileNotFoundError as e:  # a folder that is not a tracked run: said once the others are synced
            missing.append(describe(e))
            continue
        except Exception as e:
            print(f"{run_dir}: the tracking store did not accept the records ({type(e).__name__}: {e}); "
                  f"nothing was lost, run `gatscale sync {run_dir}` again later", file=sys.stderr)
            failed += 1
            continue
        state = MetricsLog(run_dir).load_state()
        if left:
            print(f"{run_dir}: {left} bytes of {METRICS_FILE} still undelivered (time out); run again")
            failed += 1
        else:
            print(f"{run_dir}: up to date in run {state['run_id']} at {state['uri']}")
    if missing:
        raise InputError("; ".join(missing))
    return 1 if failed else 0
