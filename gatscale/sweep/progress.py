"""Live progress of a sweep's runs, read from their run folders: the trainer rewrites status.json at every log step
(state, step, images/s, step time, the latest FID). Shown by the local backend while it trains and by
`gatscale status SPEC --watch` for runs trained elsewhere (SLURM, Ray).

On a terminal the table is redrawn in place; otherwise (a log file, CI) one summary line per interval.
`format_table` is the one plain-text table printer of the sweep commands (the plan, `gatscale status`, the probe).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..tracking.metrics_log import FD_METRICS
from ..train.status import read_status

HEADERS = ["run", "state", "step", "img/s", "ETA", "FID"]


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def run_progress(name: str, run_dir: Path, iterations: int, state: str | None = None) -> list[str]:
    """One row of HEADERS for a run: `state` when given (the launcher knows it), else its status.json's."""
    return progress_row(name, read_status(run_dir) or {}, iterations, state)


def progress_row(name: str, status: dict, iterations: int, state: str | None = None) -> list[str]:
    """run_progress from a status.json already read; its own iteration count wins (epochs resolved)."""
    m = status.get("metrics") or {}
    step, iterations = status.get("step", 0), status.get("iterations") or iterations
    state = state or status.get("status") or "queued"
    eta = (iterations - step) * m["perf/step_ms"] / 1e3 if state == "running" and "perf/step_ms" in m else None
    fid = next((f"{m[k]:.4g} {k}" for k in FD_METRICS if k in m), "")
    rate = f"{m['perf/images_per_s']:.4g}" if "perf/images_per_s" in m else ""
    return [name, state, f"{step}/{iterations}", rate, format_eta(eta), fid]


def format_table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in headers]] + [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths)] + lines[1:])


def summary_line(rows: list[list[str]]) -> str:
    """'12:00:05 1 finished, 5 queued, 2 running | B2 120/250 ETA 0m40s 12.3 fd_digits | ...'"""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r[1]] = counts.get(r[1], 0) + 1
    running = [f"{r[0]} {r[2]}" + (f" {r[3]} img/s" if r[3] else "") + (f" ETA {r[4]}" if r[4] else "")
               + (f" {r[5]}" if r[5] else "") for r in rows if r[1] == "running"]
    return " | ".join([time.strftime("%H:%M:%S ") + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))] + running)


class LiveProgress:
    """Redraws a table in place on a terminal (messages print above it), or writes one summary line every
    `interval` seconds (default: 1 s on a terminal, 30 s otherwise)."""

    def __init__(self, stream=None, interval: float | None = None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.interval = interval if interval is not None else (1.0 if self.tty else 30.0)
        self._drawn, self._next = 0, 0.0

    def message(self, text: str):
        self._erase()
        print(text, file=self.stream, flush=True)
        self._next = 0.0  # redraw at the next update

    def update(self, rows, force: bool = False):
        """rows: a function returning the rows (read only when a refresh is due)."""
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.interval
        rows = rows()
        if self.tty:
            self._erase()
            table = format_table(HEADERS, rows)
            print(table, file=self.stream, flush=True)
            self._drawn = table.count("\n") + 1
        else:
            print(summary_line(rows), file=self.stream, flush=True)

    def close(self):
        """Leave the last table on screen."""
        self._drawn = 0

    def _erase(self):
        if self.tty and self._drawn:
            self.stream.write(f"\033[{self._drawn}F\033[J")  # to the table's first line, clear to the end
        self._drawn = 0
