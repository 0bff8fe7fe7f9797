"""`gatscale status SPEC.yaml [--watch [SECONDS]]`: every run of a study: state, step, last losses and FID, ETA,
host and job. `--watch` refreshes it until every run has ended (Ctrl-C stops watching, not the runs): the table
redrawn on a terminal, one summary line per refresh otherwise.

Read only: the run folders (status.json, the trainer's lock, sweep.json; each read once per refresh), the
scheduler for jobs the sweep submitted (backends/watcher.py: squeue, sacct), and the tracker for runs whose
folder has no status (`tracker_states`, which `gatscale sweep` asks too).
"""
from __future__ import annotations

import sys
import time
from collections import Counter

from gatscale.core.errors import InputError
from ..tracking.store import resolve_uri, sqlite_path
from ..train.status import TERMINAL
from .backends.submitit_backend import job_error
from .backends.watcher import JobWatcher
from .plan import STOP_ACTIONS, plan, read_folder
from .progress import format_table, progress_row, summary_line
from .spec import Spec, add_set_argument, load_spec


def add_arguments(parser):
    parser.add_argument("spec", help="sweep spec YAML (sweeps/*.yaml)")
    parser.add_argument("--runs-dir", help="folder holding <study>/<run> (default: the spec's runs_dir, else runs)")
    add_set_argument(parser)
    parser.add_argument("--watch", type=float, nargs="?", const=10.0, metavar="SECONDS",
                        help="refresh every SECONDS (default 10) until every run has ended")


def tracker_states(spec: Spec, read_only: bool = False) -> dict[str, str]:
    """{config hash: gatscale.status} of the study's training runs in the tracker ({} if none or unreachable).
    read_only: never create or migrate a store (dry run): only ask one that exists and is ready."""
    cfg = spec.tracking
    if cfg.backend == "none":
        return {}
    db = sqlite_path(resolve_uri(cfg.uri))
    if db is not None and (not db.is_file() or (read_only and not db.with_name(db.name + ".ready").is_file())):
        return {}
    try:
        from ..tracking import find_runs  # imports MLflow: only when a tracker is asked
        runs = find_runs(cfg)
    except Exception as e:  # noqa: BLE001 - the folders still decide; say why the tracker was not asked
        print(f"gatscale sweep: warning: tracker {cfg.uri} not consulted ({type(e).__name__}: {e})", file=sys.stderr)
        return {}
    runs = runs[(runs["kind"] != "sweep") & runs["config_hash"].notna()]
    return dict(zip(runs["config_hash"], runs["status"]))


def _num(metrics: dict, key: str, fmt: str = ".3g") -> str:
    v = metrics.get(key)
    return "" if v is None else format(v, fmt)


def main(args) -> int:
    spec = load_spec(args.spec, args.runs_dir, overrides=args.overrides)  # a ConfigError is reported by gatscale.cli
    if spec.probe is not None:  # an LR probe: its trials so far and the next ones
        from .probe import trials_spec
        spec = trials_spec(spec)
    if args.watch is None:
        print(snapshot(spec)[0])
        return 0
    if args.watch <= 0:
        raise InputError(f"gatscale status: --watch {args.watch}: must be > 0 seconds")
    tty, watcher = sys.stdout.isatty(), JobWatcher()
    try:
        while True:
            text, planned = snapshot(spec, watcher)
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


def snapshot(spec: Spec, watcher: JobWatcher | None = None) -> tuple[str, list]:
    """(the printed status of every run, the plan it came from); one line when the study has no folder yet and the
    tracker knows none of its runs (rather than every run as `new`)."""
    watcher = watcher or JobWatcher()
    folders = [read_folder(r) for r in spec.runs]
    last = {r.name: f.last_job for r, f in zip(spec.runs, folders)}
    jobs = [j for j in last.values() if j]
    active, scheduler = watcher.active(jobs), watcher.states(jobs)  # one squeue (and one sacct) for all jobs
    errors = {name: e for name, j in last.items() if j and (e := job_error(j))}
    tracked = tracker_states(spec, read_only=True)
    planned = plan(spec, tracked, active, folders)
    if not spec.study_dir.is_dir() and not tracked:
        command = "probe-lr" if spec.probe is not None else "sweep"
        return (f"study {spec.name}: {len(spec.runs)} runs in {spec.study_dir}: no such folder yet (nothing has run "
                f"there; `gatscale {command} {spec.path}` starts them, --runs-dir names another runs folder)"), planned
    rows = []
    for p in planned:
        s = p.status or {}
        m = s.get("metrics") or {}
        _, _, step, rate, eta, fid = progress_row(p.run.name, s, p.run.config.train.iterations, p.state)
        job = last[p.run.name] or {}
        job_id = job.get("job_id") or s.get("job_id") or ""
        job_cell = f"{job_id} {scheduler.get(job_id, '')}".strip()
        state = p.state if p.action not in STOP_ACTIONS else f"{p.state} ({p.action})"
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
        format_table(["run", "state", "step", "loss/d", "loss/g", "FID", "img/s", "ETA", "host", "job", "detail"],
                     rows),
        "  ".join(f"{k}: {v}" for k, v in sorted(Counter(p.state for p in planned).items()))])
    return text, planned
