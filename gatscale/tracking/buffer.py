"""A run folder's tracking buffer: every record is appended to `tracking-buffer.jsonl` before it is sent.

One JSON object per line, in the order the trainer logged them:
    {"t": ms, "step": s, "metrics": {name: value}}      {"t": ms, "tags": {name: value}}
    {"params": {name: value}}                           {"artifact": path, "artifact_path": p, "attempt": n}
    {"t": ms, "status": "FINISHED" | "FAILED" | "KILLED" | "RUNNING"}   (the MLflow run status)

`tracking.json` (written atomically) holds the tracker run id, the store URI and `delivered`: the byte offset up
to which the store has accepted the buffer. Delivery (sync.py) sends what lies after it and moves it forward
after each accepted batch, so a replay never sends a record twice (and the SQL stores also drop an identical
(key, step, timestamp, value)). Durability: each append is one write() call, so a killed or preempted process
loses nothing; the buffer is fsync'ed before a batch is sent, so `delivered` never points past what is on disk,
and when the whole buffer is delivered it is emptied. Delivery holds `.tracking.lock` (flock), so the live
tracker and `gatscale sync` never send the same record; several writers (a trainer and `gatscale eval`) may append
to one buffer at once.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from pathlib import Path

from ..atomic import atomic_write_text
from .files import file_lock, flock

log = logging.getLogger(__name__)

BUFFER_FILE = "tracking-buffer.jsonl"
STATE_FILE = "tracking.json"
LOCK_FILE = ".tracking.lock"
READ_CHUNK = 4 << 20  # bytes read per delivery pass


_encode = json.JSONEncoder(separators=(",", ":")).encode


def now_ms() -> int:
    return int(time.time() * 1000)


class RunBuffer:
    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / BUFFER_FILE
        self.state_path = self.run_dir / STATE_FILE
        self._lock = threading.RLock()  # reentrant: finish() may run in a signal handler that interrupted append()
        self._fd, self._appending, self._can_lock = None, False, True
        self.last_step = 0  # of the last metrics logged or delivered (system metrics are logged at it)

    # -- writing (the trainer's thread) --------------------------------------------------------------
    def append(self, record: dict):
        data = (_encode(record) + "\n").encode()
        with self._lock:
            if self._fd is None:
                self._open()
            self._appending = True  # see close()
            if self._can_lock:  # other writers may append too; only emptying the buffer excludes them
                self._can_lock = flock(self._fd, fcntl.LOCK_SH, self.path)
            while data:  # one write() of the whole line (O_APPEND): lines of concurrent writers never mix
                data = data[os.write(self._fd, data):]
            if self._can_lock:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
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

    # -- state ---------------------------------------------------------------------------------------
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
        if state["delivered"] > self.size():
            state["delivered"] = 0  # the buffer was emptied after full delivery before this file was updated
        return state

    def save_state(self, state: dict):
        atomic_write_text(self.state_path, json.dumps(state, indent=1, sort_keys=True) + "\n")

    def delivery_lock(self):
        return file_lock(self.run_dir / LOCK_FILE)

    # -- reading (delivery, under delivery_lock) -----------------------------------------------------
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, offset: int, end: int | None = None) -> list[tuple[int, dict]]:
        """Complete records after byte `offset` (up to `end`), each with the offset just past it. Lines that are
        not JSON objects are skipped with a warning; a last line still being written is left for later."""
        records = []
        if not self.path.exists():
            return records
        with open(self.path, "rb") as f:
            os.fsync(f.fileno())  # what we are about to send is on disk before `delivered` can pass it
            f.seek(offset)
            data = f.read(min(READ_CHUNK, (end if end is not None else 1 << 62) - offset))
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

    def empty_if_delivered(self, state: dict):
        """Truncate a fully delivered buffer (under delivery_lock). Appends hold a shared flock on the buffer file,
        this an exclusive one, so no record can land between the size check and the truncation."""
        if not state["delivered"] or not self.path.exists():
            return
        with self._lock, open(self.path, "r+b") as f:
            if not flock(f.fileno(), fcntl.LOCK_EX, self.path):
                return  # without locks another writer could append unseen: keep the delivered lines
            if state["delivered"] == os.fstat(f.fileno()).st_size:
                f.truncate(0)
                state["delivered"] = 0
                self.save_state(state)
