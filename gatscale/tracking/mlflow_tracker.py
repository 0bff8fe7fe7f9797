"""The MLflow tracker: what the trainer (rank 0) reports to.

`log_metrics` appends one line to the run folder's buffer (tracking-buffer.jsonl) and returns; a background
thread sends the buffer with `MlflowClient.log_batch` every second and marks what the store accepted
(buffer.py, sync.py). If the store is unreachable training goes on: the thread retries with backoff, and what
`finish` could not deliver in `finish_timeout` seconds stays in the buffer for `gatscale sync RUN_DIR`.
A requeued run finds its run id in tracking.json and continues the same MLflow run.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from .base import STATUSES
from .buffer import RunBuffer
from .labels import clean_params, clean_tags, run_tags, valid_name
from .store import client_for, configure_http_client, resolve_uri
from .sync import check_run, deliver
from .system_metrics import SystemMetricsSampler

log = logging.getLogger(__name__)

# gatscale status -> MLflow run status (the UI's run state); the gatscale.status tag keeps the exact one
MLFLOW_STATUS = {"running": "RUNNING", "finished": "FINISHED", "diverged": "FAILED", "failed": "FAILED",
                 "preempted": "KILLED"}


def now_ms() -> int:
    return int(time.time() * 1000)


class MlflowTracker:
    def __init__(self, cfg, flush_interval: float = 1.0, finish_timeout: float = 30.0, max_backoff: float = 60.0,
                 system_metrics_interval: float = 10.0):
        """cfg: TrackingConfig. flush_interval: seconds between deliveries; finish_timeout: how long finish()
        waits for the store before leaving the rest to `gatscale sync`; max_backoff: longest retry wait."""
        self.cfg = cfg
        self.flush_interval, self.finish_timeout, self.max_backoff = flush_interval, finish_timeout, max_backoff
        self.system_metrics_interval = system_metrics_interval
        self.run_id: str | None = None
        self.buffer: RunBuffer | None = None
        self.last_step = 0
        self._client = None
        self._wake, self._stop = threading.Event(), threading.Event()
        self._deadline = float("inf")
        self._thread = self._sampler = None
        self._outage_since = None
        self._finished = False
        configure_http_client()

    # -- the trainer's calls -------------------------------------------------------------------------
    def start(self, run_dir, name: str, params: dict, tags: dict):
        run_dir = Path(run_dir).resolve()
        self.uri = resolve_uri(self.cfg.uri)
        self.buffer = RunBuffer(run_dir)
        with self.buffer.delivery_lock():
            state = self.buffer.load_state()
            if state.get("uri") not in (None, self.uri):
                log.warning("%s: tracker run %s was recorded in %s, tracking.uri is now %s; continuing it there",
                            self.buffer.state_path, state["run_id"], state["uri"], self.uri)
            resumed = state["run_id"] is not None
            state.update(uri=self.uri, experiment=self.cfg.experiment, name=name,
                         parent_run_id=self.cfg.parent_run_id)
            self.buffer.empty_if_delivered(state)
            self.buffer.save_state(state)
        started = now_ms()
        self.buffer.append({"t": started, "tags": clean_tags(
            {**run_tags(name, run_dir), **tags, "gatscale.status": "running"})})
        self.buffer.append({"params": clean_params(params)})
        if resumed:
            self.buffer.append({"t": started, "status": "RUNNING"})
        try:  # deliver now, so the run id is known from the start; else the thread keeps trying
            check_run(self._get_client(), self.buffer)
            self.run_id, _ = deliver(self._get_client(), self.buffer)
        except Exception as e:
            self._report_outage(e)
        self._thread = threading.Thread(target=self._send_loop, name="gatscale-tracker", daemon=True)
        self._thread.start()
        if self.cfg.system_metrics:
            self._sampler = SystemMetricsSampler(lambda m: self.log_metrics(m, self.last_step),
                                                 self.system_metrics_interval)
            self._sampler.start()

    def log_metrics(self, metrics: dict, step: int):
        self.buffer.append({"t": now_ms(), "step": int(step),
                            "metrics": {valid_name(k): float(v) for k, v in metrics.items()}})
        self.last_step = step

    def log_artifact(self, path, artifact_path: str | None = None):
        self.buffer.append({"artifact": str(Path(path).resolve()), "artifact_path": artifact_path})

    def set_tags(self, tags: dict):
        self.buffer.append({"t": now_ms(), "tags": clean_tags(tags)})

    def finish(self, status: str):
        """Safe from a signal handler; returns within ~finish_timeout even when the store is down."""
        if status not in STATUSES:
            raise ValueError(f"finish(status={status!r}): expected one of {', '.join(STATUSES)}")
        if self._finished or self.buffer is None:
            return
        self._finished = True
        if self._sampler is not None:
            self._sampler.stop()
        self.buffer.append({"t": now_ms(), "tags": {"gatscale.status": status}})
        if status != "running":
            self.buffer.append({"t": now_ms(), "status": MLFLOW_STATUS[status]})
        self._deadline = time.monotonic() + self.finish_timeout
        self._stop.set()
        self._wake.set()
        self._thread.join(self.finish_timeout + 5)
        self.buffer.close()
        left = self.buffer.size() - self.buffer.load_state()["delivered"]
        if left:
            log.warning("tracking: %d bytes of metrics/tags are not in the store %s yet; they are kept in %s: "
                        "run `gatscale sync %s` when the store is reachable", left, self.uri,
                        self.buffer.path, self.buffer.run_dir)

    # -- the background thread -------------------------------------------------------------------------
    def _get_client(self):
        if self._client is None:
            self._client = client_for(self.uri)
        return self._client

    def _send_loop(self):
        delay = self.flush_interval
        while True:
            stopping = self._stop.is_set()
            if not stopping:
                self._wake.wait(delay)  # finish() wakes it at once
                self._wake.clear()
                stopping = self._stop.is_set()
            try:
                self.run_id, left = deliver(self._get_client(), self.buffer, self._deadline if stopping else None)
            except Exception as e:
                self._report_outage(e)
                delay, left = min(delay * 2, self.max_backoff), None
            else:
                self._report_recovery()
                delay = self.flush_interval
            if stopping:
                if left == 0:
                    with self.buffer.delivery_lock():
                        self.buffer.empty_if_delivered(self.buffer.load_state())
                    return
                if time.monotonic() + 0.5 > self._deadline:
                    return
                if left is None:
                    time.sleep(0.5)  # left > 0 without an error: artifacts re-queued for another pass

    def _report_outage(self, error: Exception):
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning("tracking: the store %s did not accept the metrics (%s: %.300s); training continues, "
                        "metrics are kept in %s and sent when it is back", self.uri, type(error).__name__,
                        error, self.buffer.path)

    def _report_recovery(self):
        if self._outage_since is not None:
            log.warning("tracking: the store %s is back after %.0f s; buffered metrics delivered",
                        self.uri, time.monotonic() - self._outage_since)
            self._outage_since = None
