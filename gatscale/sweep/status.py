"""`gatscale status SPEC.yaml`: every run of a study: state, step, last losses and FID, host and job.

Read only: the run folders (status.json, the trainer's lock, sweep.json), the scheduler for jobs the sweep
submitted (squeue), and the tracker for runs whose folder has no status.
"""
from __future__ import annotations

import sys
from collections import Counter

from ..config import ConfigError
from .plan import last_job, plan
from .spec import load_spec


def add_arguments(parser):
    parser.add_argument("spec", help="sweep spec YAML (sweeps/*.yaml)")
    parser.add_argument("--runs-dir", help="folder holding <study>/<run> (default: the spec's runs_dir, else runs)")


def format_table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in headers]] + [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths)] + lines[1:])


def _num(metrics: dict, key: str, fmt: str = ".3g") -> str:
    v = metrics.get(key)
    return "" if v is None else format(v, fmt)


def main(args) -> int:
    try:
        spec = load_spec(args.spec, args.runs_dir)
        if spec.probe is not None:  # an LR probe: its trials so far and the next ones
            from .probe import trials_spec
            spec = trials_spec(spec)
    except ConfigError as e:
        print(f"gatscale status: {e}", file=sys.stderr)
        return 2
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
        step = f"{s['step']}/{s['iterations']}" if s else f"0/{p.run.config.train.iterations}"
        fid_key = next((k for k in ("fid", "fd_digits") if k in m), None)
        fid = f"{m[fid_key]:.4g} {fid_key}" if fid_key else ""
        job = last[p.run.name] or {}
        job_id = job.get("job_id") or s.get("job_id") or ""
        job_cell = f"{job_id} {scheduler.get(job_id, '')}".strip()
        state = p.state if p.action not in ("give-up", "refuse") else f"{p.state} ({p.action})"
        detail = "" if p.state == "finished" else p.detail
        if p.state not in ("finished", "running", "queued") and p.run.name in errors:
            detail = f"{detail}; job: {errors[p.run.name]}".lstrip("; ")  # e.g. not requeued: out of time-outs
        rows.append([p.run.name, state, step, _num(m, "loss/d"), _num(m, "loss/g"), fid,
                     _num(m, "perf/images_per_s", ".4g"), s.get("host", ""), job_cell, detail])
    print(f"study {spec.name}: {len(rows)} runs in {spec.study_dir}")
    print(format_table(["run", "state", "step", "loss/d", "loss/g", "FID", "img/s", "host", "job", "detail"], rows))
    print("  ".join(f"{k}: {v}" for k, v in sorted(Counter(p.state for p in planned).items())))
    return 0
