"""The MLflow tracker: what the trainer (rank 0) reports to.

`log_metrics` appends one line to the run folder's buffer (tracking-buffer.jsonl) and returns (~15 us); a sender
(sender.py: a small process by default) sends the buffer with `MlflowClient.log_batch` every second and marks
what the store accepted (buffer.py, sync.py). If the store is unreachable training goes on: the sender retries
with backoff, and what `finish` could not deliver in `finish_timeout` seconds stays in the buffer for
`gatscale sync RUN_DIR`. A requeued run finds its run id in tracking.json and continues the same MLflow run.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

from .base import STATUSES
from .buffer import RunBuffer, now_ms
from .labels import clean_params, clean_tags, run_tags, valid_name
from .sender import send_loop, start_system_metrics
from .store import client_for, configure_http_client, resolve_uri
from .sync import check_run, deliver

log = logging.getLogger(__name__)

# gatscale status -> MLflow run status (the UI's run state); the gatscale.status tag keeps the exact one
MLFLOW_STATUS = {"running": "RUNNING", "finished": "FINISHED", "diverged": "FAILED", "failed": "FAILED",
                 "preempted": "KILLED"}


class MlflowTracker:
    sender_check_ms = 30_000  # how often log_metrics checks that the sender process is alive

    def __init__(self, cfg, sender: str = "process", flush_interval: float = 1.0, finish_timeout: float = 20.0,
                 max_backoff: float = 60.0, system_metrics_interval: float = 10.0):
        """cfg: TrackingConfig. sender: 'process' (default) or 'thread' runs the delivery loop; flush_interval:
        seconds between deliveries; finish_timeout: how long finish() lets the sender drain the buffer before
        leaving the rest to `gatscale sync`; max_backoff: the longest wait between retries."""
        if sender not in ("process", "thread"):
            raise ValueError(f"MlflowTracker(sender={sender!r}): expected 'process' or 'thread'")
        self.cfg, self.sender = cfg, sender
        self.flush_interval, self.finish_timeout, self.max_backoff = flush_interval, finish_timeout, max_backoff
        self.system_metrics_interval = system_metrics_interval if cfg.system_metrics else 0.0
        self.uri = resolve_uri(cfg.uri)
        self.buffer: RunBuffer | None = None
        self._run_id = None
        self._proc = self._thread = self._sampler = None
        self._stop = threading.Event()
        self._finished = False
        self._next_check, self._restarts = 0, 0
        configure_http_client()

    @property
    def run_id(self) -> str | None:
        """The MLflow run id; None until the store has been reached once."""
        if self._run_id is None and self.buffer is not None:
            self._run_id = self.buffer.load_state()["run_id"]
        return self._run_id

    # -- the trainer's calls -------------------------------------------------------------------------
    def start(self, run_dir, name: str, params: dict, tags: dict):
        run_dir = Path(run_dir).resolve()
        self.buffer = RunBuffer(run_dir)
        with self.buffer.delivery_lock():
            state = self.buffer.load_state()
            if state.get("uri") not in (None, self.uri):
                log.warning("%s: tracker run %s was recorded in %s, tracking.uri is now %s; continuing it there",
                            self.buffer.state_path, state["run_id"], state["uri"], self.uri)
            resumed = state["run_id"] is not None
            run_name = self.cfg.run_name or name  # the sweep's short name for the runs table, else the run's
            state.update(uri=self.uri, experiment=self.cfg.experiment, name=run_name,
                         parent_run_id=self.cfg.parent_run_id)
            self.buffer.empty_if_delivered(state)
            self.buffer.save_state(state)
        started = now_ms()
        self.buffer.append({"t": started, "tags": clean_tags(
            {**run_tags(name, run_dir), **tags, "mlflow.runName": run_name, "gatscale.status": "running"})})
        self.buffer.append({"params": clean_params(params)})
        if resumed:
            self.buffer.append({"t": started, "status": "RUNNING"})
        try:  # create or reopen the run now, so its id is known from the start; else the sender keeps trying
            client = client_for(self.uri)
            check_run(client, self.buffer)
            self._run_id, _ = deliver(client, self.buffer, deadline=time.monotonic() + 10)
        except Exception as e:
            log.warning("tracking: the store %s is not reachable (%s: %.300s); training continues, metrics are "
                        "kept in %s and sent when it is back", self.uri, type(e).__name__, e, self.buffer.path)
        if self.sender == "process":
            self._start_process()
        else:
            self._thread = threading.Thread(target=send_loop, name="gatscale-tracker", daemon=True, args=(
                self.buffer, self._stop, self.flush_interval, self.finish_timeout, self.max_backoff))
            self._thread.start()
            if self.system_metrics_interval:
                self._sampler = start_system_metrics(self.buffer, self.system_metrics_interval)

    def _started(self, call: str):
        if self.buffer is None:
            raise RuntimeError(f"MlflowTracker.{call} before start(): the tracker run does not exist yet")

    def log_metrics(self, metrics: dict, step: int):
        self._started("log_metrics")
        t = now_ms()
        values = {valid_name(k): float(v) for k, v in metrics.items()}
        self.buffer.append({"t": t, "step": int(step), "metrics": values})
        self.buffer.last_step = int(step)
        if self._proc is not None and t >= self._next_check:  # >=: sender_check_ms = 0 checks at every call
            self._check_sender(t)

    def log_artifact(self, path, artifact_path: str | None = None):
        self._started("log_artifact")
        self.buffer.append({"artifact": str(Path(path).resolve()), "artifact_path": artifact_path})

    def set_tags(self, tags: dict):
        self._started("set_tags")
        self.buffer.append({"t": now_ms(), "tags": clean_tags(tags)})

    def finish(self, status: str):
        """Safe from a signal handler; returns within about finish_timeout even when the store is down."""
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
        self.buffer.close()  # fsync'ed
        if self._proc is not None:
            self._proc.stdin.close()  # EOF: the sender drains the buffer and exits
            try:
                self._proc.wait(self.finish_timeout + 5)
            except subprocess.TimeoutExpired:
                pass  # it gives up by itself at its own deadline
        else:
            self._stop.set()
            self._thread.join(self.finish_timeout + 5)
        self._run_id = None  # re-read: the sender may have created the run
        left = self.buffer.size() - self.buffer.load_state()["delivered"]
        if left:
            log.warning("tracking: %d bytes of metrics/tags are not in the store %s yet; they are kept in %s: "
                        "run `gatscale sync %s` when the store is reachable", left, self.uri,
                        self.buffer.path, self.buffer.run_dir)

    # -- the sender process ------------------------------------------------------------------------------
    def _check_sender(self, t: int):
        """A sender that died (killed, out of memory) is restarted, up to 3 times."""
        self._next_check = t + self.sender_check_ms
        if self._proc.poll() is not None and self._restarts < 3:
            self._restarts += 1
            log.warning("tracking: the sender process exited (code %s); restarting it", self._proc.returncode)
            self._proc.stdin.close()
            self._start_process()

    def _start_process(self):
        cmd = [sys.executable, "-m", "gatscale.tracking.sender", str(self.buffer.run_dir),
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
