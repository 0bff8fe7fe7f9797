"""A run folder's record of what it logged: `metrics.jsonl`, appended to and never truncated.

One JSON object per line, in the order they were logged (by the trainer, then by `gatscale eval`/`analyze`):
    {"t": ms, "step": s, "metrics": {name: value}}      {"t": ms, "tags": {name: value}}
    {"params": {name: value}}                           {"artifact": path, "artifact_path": p, "attempt": n}
    {"t": ms, "status": "FINISHED" | "FAILED" | "KILLED" | "RUNNING"}   (the MLflow run status)
    {"t": ms, "rewind": s}                              (the run continues from step s: see below)

Every tracker writes it on rank 0, also with `tracking.backend: none`; analysis reads it when it can reach the
folder. A run that continues from an earlier step than it had reached (resumed from its last checkpoint, or from
step 0 when it was killed before its first) logs again the steps it lost. The trainer appends a rewind record
first: the metric records above it of steps after s are superseded, so a curve never joins two attempts' segments.
`metric_histories` is the one reader of the curves (analysis and the sweep's findings): it drops the superseded
records and keeps the last value per (metric, step) of the rest. The MLflow mirror (sync.py) cannot
delete a logged point: a rewind to step 0 replaces the tracker run (the lost attempt's run is deleted, restorable
from MLflow's trash, and the records after the rewind go to a new run); after a rewind to s > 0 the store keeps
both values of a re-logged step, the later one last (a resumed run is bitwise the uninterrupted one).

The MLflow tracker mirrors the file to the store. `tracking.json` (written atomically) holds the MLflow run id, the
store URI and `delivered`: the byte offset up to which the store has accepted the file. Delivery (sync.py) sends
what lies after it and moves it forward after each accepted batch, so a replay never sends a record twice (and the
SQL stores also drop an identical (key, step, timestamp, value)). Durability: each append is one write() call
(O_APPEND), so a killed process loses nothing and lines of concurrent writers (a trainer and `gatscale eval`) never
mix; the file is fsync'ed before a batch is sent, so `delivered` never points past what is on disk. Delivery holds
`.tracking.lock` (flock), so the live sender and `gatscale sync` never send the same record.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from gatscale.core.atomic import atomic_write_text
from gatscale.core.lock import FileLock

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
STATE_FILE = "tracking.json"
LOCK_FILE = ".tracking.lock"
READ_CHUNK = 4 << 20  # bytes read per delivery pass

# The in-training Frechet distance, under the name its feature extractor gives it (docs/design.md, "Metric names"):
# Inception's FID or the digits extractor's FD. A run logs one of them; whoever reads "the FD" reads these.
FD_METRICS = ("fid", "fd_digits")


_encode = json.JSONEncoder(separators=(",", ":")).encode


def now_ms() -> int:
    return int(time.time() * 1000)


def rewind(run_dir: str | os.PathLike, step: int):
    """Mark the metric records logged so far of steps after `step` as superseded (an attempt whose state was lost)."""
    record = MetricsLog(run_dir)
    record.append({"t": now_ms(), "rewind": int(step)})
    record.close()


class MetricsLog:
    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        self.state_path = self.run_dir / STATE_FILE
        self._lock = threading.RLock()  # reentrant: finish() may run in a signal handler that interrupted append()
        self._fd, self._appending = None, False
        self.last_step = 0  # of the last metrics logged or delivered (system metrics are logged at it)

    # -- writing -------------------------------------------------------------------------------------
    def append(self, record: dict):
        data = (_encode(record) + "\n").encode()
        with self._lock:
            if self._fd is None:
                self._open()
            self._appending = True  # see close()
            while data:  # one write() of the whole line (O_APPEND): lines of concurrent writers never mix
                data = data[os.write(self._fd, data):]
            self._appending = False

    def _open(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            os.write(self._fd, b"\n")  # a crash cut the last record short: keep it from swallowing the next one

    def close(self):
        """Flush to disk and close; a close from a signal handler that interrupted append() only flushes."""
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
                if not self._appending:
                    os.close(self._fd)
                    self._fd = None

    # -- tracking.json: the MLflow run id and the delivered offset -----------------------------------
    def load_state(self) -> dict:
        try:
            state = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            state = {}
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.state_path}: not valid JSON ({e}); it should hold the tracker run id "
                             f"written by gatscale.tracking (delete it to start a new tracker run)") from None
        state.setdefault("run_id", None)
        state.setdefault("delivered", 0)
        state["delivered"] = min(state["delivered"], self.size())  # the file was replaced by hand: nothing to skip
        return state

    def save_state(self, state: dict):
        atomic_write_text(self.state_path, json.dumps(state, indent=1, sort_keys=True) + "\n")

    def delivery_lock(self):
        return FileLock(self.run_dir / LOCK_FILE)

    # -- reading -------------------------------------------------------------------------------------
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, offset: int = 0, end: int | None = None, chunk: int | None = READ_CHUNK) -> list[tuple[int, dict]]:
        """Complete records after byte `offset` (up to `end`; at most `chunk` bytes, None: all), each with the
        offset just past it. Lines that are not JSON objects are skipped with a warning; a last line still being
        written is left for later."""
        records = []
        if not self.path.exists():
            return records
        with open(self.path, "rb") as f:
            os.fsync(f.fileno())  # what we are about to send is on disk before `delivered` can pass it
            f.seek(offset)
            limit = min(end if end is not None else 1 << 62, offset + (chunk or 1 << 62)) - offset
            data = f.read(limit if limit < 1 << 61 else -1)
        pos = offset
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            pos += len(line)
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                if line.strip():
                    log.warning("%s: skipping a damaged line at byte %d: %r", self.path, pos - len(line), line[:200])
                record = {}
            records.append((pos, record))
        return records


def metric_histories(run_dir: str | os.PathLike, metrics=None) -> dict[str, dict[int, float]]:
    """The curves a run folder's metrics.jsonl holds, {metric: {step: value}} in step order, as the run's last
    attempt sees them: a rewind record drops what was logged before it of steps after its step, and a step logged
    twice counts once, the later value. metrics: only these names (None: all). A last line still being written (or
    torn by a kill) is not read; a damaged line is skipped with a warning (`MetricsLog.read`)."""
    curves: dict[str, dict[int, float]] = {}
    for _, record in MetricsLog(run_dir).read(chunk=None):
        if "rewind" in record:
            for curve in curves.values():
                for step in [s for s in curve if s > record["rewind"]]:
                    del curve[step]
        elif "metrics" in record and "step" in record:
            for name, value in record["metrics"].items():
                if metrics is None or name in metrics:
                    curves.setdefault(name, {})[int(record["step"])] = float(value)
    return {name: dict(sorted(curve.items())) for name, curve in curves.items()}
