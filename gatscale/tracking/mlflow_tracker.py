"""The MLflow tracker: the run folder's record (base.FolderTracker), mirrored to an MLflow store.

`log_metrics` appends one line to the run folder's metrics.jsonl and returns (~15 us); a sender process
(sender.py) sends the file with `MlflowClient.log_batch` every second and records in tracking.json how far the
store accepted it (metrics_log.py, sync.py). That is the one delivery mode: outside the training process, since
MLflow's ~0.1-0.3 ms of Python per metric would otherwise hold the GIL the training loop needs. If the store is
unreachable training goes on: the sender retries with backoff, and what `finish` could not deliver in
`finish_timeout` seconds waits in the file for `gatscale sync RUN_DIR`. A requeued run finds its run id in
tracking.json and continues the same MLflow run.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import weakref
from pathlib import Path

from .base import FolderTracker
from .metrics_log import MetricsLog, now_ms
from .store import client_for, configure_http_client, resolve_uri
from .sync import check_run, deliver

log = logging.getLogger(__name__)


class MlflowTracker(FolderTracker):
    sender_check_ms = 30_000  # how often log_metrics checks that the sender process is alive

    def __init__(self, cfg, flush_interval: float = 1.0, finish_timeout: float = 20.0, max_backoff: float = 60.0,
                 system_metrics_interval: float = 10.0):
        """cfg: TrackingConfig. flush_interval: seconds between deliveries; finish_timeout: how long finish()
        lets the sender drain the file before leaving the rest to `gatscale sync`; max_backoff: the longest wait
        between retries."""
        super().__init__()
        self.cfg = cfg
        self.flush_interval, self.finish_timeout, self.max_backoff = flush_interval, finish_timeout, max_backoff
        self.system_metrics_interval = system_metrics_interval if cfg.system_metrics else 0.0
        self.uri = resolve_uri(cfg.uri)
        self._run_id = None
        self._proc = None
        self._next_check, self._restarts = 0, 0
        configure_http_client()

    @property
    def run_id(self) -> str | None:
        """The MLflow run id; None until the store has been reached once."""
        if self._run_id is None and self.log is not None:
            self._run_id = self.log.load_state()["run_id"]
        return self._run_id

    # -- the trainer's calls -------------------------------------------------------------------------
    def start(self, run_dir, name: str, params: dict, tags: dict):
        run_dir = Path(run_dir).resolve()
        record = MetricsLog(run_dir)
        with record.delivery_lock():
            state = record.load_state()
            if state.get("uri") not in (None, self.uri):
                log.warning("%s: tracker run %s was recorded in %s, tracking.uri is now %s; continuing it there",
                            record.state_path, state["run_id"], state["uri"], self.uri)
            resumed = state["run_id"] is not None
            run_name = self.cfg.run_name or name  # the sweep's short name for the runs table, else the run's
            state.update(uri=self.uri, experiment=self.cfg.experiment, name=run_name,
                         parent_run_id=self.cfg.parent_run_id)
            record.save_state(state)
        super().start(run_dir, name, params, {**tags, "mlflow.runName": run_name})
        if resumed:
            self.log.append({"t": now_ms(), "status": "RUNNING"})
        try:  # create or reopen the run now, so its id is known from the start; else the sender keeps trying
            client = client_for(self.uri)
            check_run(client, self.log)
            self._run_id, _ = deliver(client, self.log, deadline=time.monotonic() + 10)
        except Exception as e:
            log.warning("tracking: the store %s is not reachable (%s: %.300s); training continues, metrics are "
                        "kept in %s and sent when it is back", self.uri, type(e).__name__, e, self.log.path)
        self._start_sender()

    def log_metrics(self, metrics: dict, step: int):
        super().log_metrics(metrics, step)
        t = now_ms()
        if self._proc is not None and t >= self._next_check:  # >=: sender_check_ms = 0 checks at every call
            self._check_sender(t)

    def finish(self, status: str):
        """Safe from a signal handler; returns within about finish_timeout even when the store is down."""
        if not super().finish(status):
            return
        self._proc.stdin.close()  # EOF: the sender drains the file and exits
        try:
            self._proc.wait(self.finish_timeout + 5)
        except subprocess.TimeoutExpired:
            pass  # it gives up by itself at its own deadline
        self._run_id = None  # re-read: the sender may have created the run
        left = self.log.size() - self.log.load_state()["delivered"]
        if left:
            log.warning("tracking: %d bytes of metrics/tags are not in the store %s yet; they are kept in %s: "
                        "run `gatscale sync %s` when the store is reachable", left, self.uri,
                        self.log.path, self.log.run_dir)

    # -- the sender process ------------------------------------------------------------------------------
    def _check_sender(self, t: int):
        """A sender that died (killed, out of memory) is restarted, up to 3 times."""
        self._next_check = t + self.sender_check_ms
        if self._proc.poll() is not None and self._restarts < 3:
            self._restarts += 1
            log.warning("tracking: the sender process exited (code %s); restarting it", self._proc.returncode)
            self._proc.stdin.close()
            self._start_sender()

    def _start_sender(self):
        cmd = [sys.executable, "-m", "gatscale.tracking.sender", str(self.log.run_dir),
               "--flush-interval", str(self.flush_interval), "--finish-timeout", str(self.finish_timeout),
               "--max-backoff", str(self.max_backoff), "--system-metrics", str(self.system_metrics_interval)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        # Processes forked from the trainer (data loader workers) must not keep the pipe open: the sender's EOF
        # has to mean "the trainer finished or died".
        if not self._restarts:
            os.register_at_fork(after_in_child=_close_pipe_in_child(weakref.ref(self)))


def _close_pipe_in_child(tracker_ref):
    def close():
        tracker = tracker_ref()
        if tracker is not None and tracker._proc is not None and not tracker._proc.stdin.closed:
            tracker._proc.stdin.close()
    return close
