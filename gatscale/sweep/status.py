"""`gatscale status SPEC.yaml [--watch [SECONDS]]`: every run of a study: state, step, last losses and FID, ETA,
host and job. `--watch` refreshes it until every run has ended (Ctrl-C stops watching, not the runs): the table
redrawn on a terminal, one summary line per refresh otherwise.

Read only: the run folders (status.json, the trainer's lock, sweep.json), the scheduler for jobs the sweep
submitted (squeue), and the tracker for runs whose folder has no status.
"""
from __future__ import annotations

import sys
import time
from collections import Counter

from ..errors import InputError
from ..train.status import TERMINAL
from .plan import last_job, plan
from .progress import progress_row, summary_line
from .spec import load_spec


def add_arguments(parser):
    parser.add_argument("spec", help="sweep spec YAML (sweeps/*.yaml)")
    parser.add_argument("--runs-dir", help="folder holding <study>/<run> (default: the spec's runs_dir, else runs)")
    parser.add_argument("--watch", type=float, nargs="?", const=10.0, metavar="SECONDS",
                        help="refresh every SECONDS (default 10) until every run has ended")


def format_table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in headers]] + [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths)] + lines[1:])


def _num(metrics: dict, key: str, fmt: str = ".3g") -> str:
    v = metrics.get(key)
    return "" if v is None else format(v, fmt)


def main(args) -> int:
    spec = load_spec(args.spec, args.runs_dir)  # a ConfigError is reported by gatscale.cli
    if spec.probe is not None:  # an LR probe: its trials so far and the next ones
        from .probe import trials_spec
        spec = trials_spec(spec)
    if args.watch is None:
        print(snapshot(spec)[0])
        return 0
    if args.watch <= 0:
        raise InputError(f"gatscale status: --watch {args.watch}: must be > 0 seconds")
    tty = sys.stdout.isatty()
    try:
        while True:
            text, planned = snapshot(spec)
            if tty:
                print("\033[H\033[J" + text, flush=True)  # the table redrawn from the top of the screen
            else:
                print(summary_line([progress_row(p.run.name, p.status or {}, p.run.config.train.iterations, p.state)
                                    for p in planned]), flush=True)
            if all(p.state in TERMINAL for p in planned):
                return 0
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def snapshot(spec) -> tuple[str, list]:
    """(the printed status of every run, the plan it came from)."""
    last = {r.name: last_job(r.run_dir) for r in spec.runs}
    jobs = [j for j in last.values() if j]
    active, scheduler, errors = {}, {}, {}
    if jobs:  # ask the scheduler once: squeue for the plan's active jobs, then sacct for the ended ones
        from .backends.submitit_backend import active_jobs, job_error, job_states
        active = active_jobs(jobs)
        scheduler = job_states(jobs, active)
        errors = {name: e for name, j in last.items() if j and (e := job_error(j))}
    planned = plan(spec, read_only=True, active=active)
    rows = []
    for p in planned:
        s = p.status or {}
        m = s.get("metrics") or {}
        _, _, step, rate, eta, fid = progress_row(p.run.name, s, p.run.config.train.iterations, p.state)
        job = last[p.run.name] or {}
        job_id = job.get("job_id") or s.get("job_id") or ""
        job_cell = f"{job_id} {scheduler.get(job_id, '')}".strip()
        state = p.state if p.action not in ("give-up", "refuse") else f"{p.state} ({p.action})"
        detail = "" if p.state == "finished" else p.detail
        if p.state == "not-started":  # 'needs 1 GPU; this machine has 0' -> 'not started (needs 1 GPU)'
            needs, _, detail = p.detail.partition("; ")
            state = f"not started ({needs})"
        if p.state not in ("finished", "running", "queued") and p.run.name in errors:
            detail = f"{detail}; job: {errors[p.run.name]}".lstrip("; ")  # e.g. not requeued: out of time-outs
        rows.append([p.run.name, state, step, _num(m, "loss/d"), _num(m, "loss/g"), fid, rate, eta,
                     s.get("host", ""), job_cell, detail])
    text = "\n".join([
        f"study {spec.name}: {len(rows)} runs in {spec.study_dir}",
        format_table(["run", "state", "step", "loss/d", "loss/g", "FID", "img/s", "ETA", "host", "job", "detail"], rows),
        "  ".join(f"{k}: {v}" for k, v in sorted(Counter(p.state for p in planned).items()))])
    return text, planned
