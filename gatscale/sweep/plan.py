"""What a launch does with each run of a spec: skip, start, resume, retry, give up or refuse.

Decided from the run folder first (status.json, the trainer's lock, sweep.json), then the scheduler (a job the
sweep submitted that is still queued or running) and the tracker (a run whose folder has no status):

    finished, diverged            skip (never relaunched)
    running (lock held), queued   skip (someone is on it; also a run the tracker calls running or
                                  terminal while this folder has no status: it lives elsewhere)
    new, pending                  start
    not-started                   start (the last launch could not start it on its machine: sweep.json says why)
    preempted, interrupted        resume: the trainer continues from its last checkpoint
    failed                        retry while failures < max_attempts, then give up (reported)
    conflict                      refuse: the folder holds another config under this name

`sweep.json` in each run folder keeps the study, the name, the config hash, the failures counted so far
(one id per failure: `status@<time>` from status.json or `exit<code>@<time>`) and the jobs submitted.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write_text
from ..config import ConfigError, config_hash, diff, dump_config, load_config
from ..train.status import LOCK_FILE, TERMINAL, read_status, run_in_progress
from .spec import Run, Spec

RECORD_FILE = "sweep.json"
LAUNCH_ACTIONS = ("start", "resume", "retry")


@dataclass
class Planned:
    run: Run
    state: str            # new pending finished diverged running queued preempted interrupted failed conflict
    action: str           # start resume retry skip give-up refuse
    detail: str = ""
    status: dict | None = None

    @property
    def launch(self) -> bool:
        return self.action in LAUNCH_ACTIONS


# ---------------------------------------------------------------------------------------------
# The run folder's sweep record

def read_record(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / RECORD_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def update_record(run_dir: Path, **changes) -> dict:
    record = read_record(run_dir)
    record.update(changes)
    atomic_write_text(Path(run_dir) / RECORD_FILE, json.dumps(record, indent=1))
    return record


def failure_ids(run_dir: Path, status: dict | None) -> set[str]:
    """Failures recorded so far plus the one status.json shows now (if it shows one)."""
    ids = set(read_record(run_dir).get("failures", []))
    if status and status.get("status") == "failed":
        ids.add(f"status@{status.get('updated')}")
    return ids


def note_failure(run_dir: Path, failure_id: str) -> int:
    """Record one failure (idempotent per id); returns the number of failures of the run."""
    ids = failure_ids(run_dir, None) | {failure_id}
    update_record(run_dir, failures=sorted(ids))
    return len(ids)


def identity_error(run: Run) -> str | None:
    """Why the run folder cannot be this run (another config under the same name), or None."""
    held = read_record(run.run_dir).get("config_hash")
    saved = run.run_dir / "config.yaml"
    if held == run.config_hash or (held is None and not saved.is_file()):
        return None
    old = None
    if saved.is_file():
        try:
            old = load_config(saved)
        except ConfigError as e:
            return f"{saved}: unreadable run config ({e}); move the folder away to start this run afresh"
        held = held or config_hash(old)
        if held == run.config_hash:
            return None
    changed = ""
    if old is not None:  # the keys a sweep sets per run (name, folder, tracker) are no news
        keys = diff(old, run.config, ignore=("name", "run_dir", "tracking"))
        changed = " Differences (folder -> spec): " + "; ".join(keys[:8]) + "."
    return (f"{run.run_dir}: this folder holds run {run.name!r} with config hash {held}, but the spec now gives "
            f"hash {run.config_hash} for this name: a result-relevant key changed.{changed} Rename the study (spec key "
            f"'name') or move the folder away to start the run over; the sweep never mixes two configs in one folder.")


# ---------------------------------------------------------------------------------------------
# Other sources: the tracker and the scheduler

def tracker_states(spec: Spec, read_only: bool = False) -> dict[str, str]:
    """{config hash: gatscale.status} of the study's training runs in the tracker ({} if none or unreachable).
    read_only: never create or migrate a store (dry run): only ask one that exists and is ready."""
    cfg = spec.tracking
    if cfg.backend == "none":
        return {}
    from ..tracking.store import resolve_uri, sqlite_path
    db = sqlite_path(resolve_uri(cfg.uri))
    if db is not None and (not db.is_file() or (read_only and not db.with_name(db.name + ".ready").is_file())):
        return {}
    try:
        from ..tracking import find_runs
        runs = find_runs(cfg)
    except Exception as e:  # noqa: BLE001 - the folders still decide; say why the tracker was not asked
        print(f"gatscale sweep: warning: tracker {cfg.uri} not consulted ({type(e).__name__}: {e})", file=sys.stderr)
        return {}
    runs = runs[(runs["kind"] != "sweep") & runs["config_hash"].notna()]
    return dict(zip(runs["config_hash"], runs["status"]))


def scheduler_states(spec: Spec) -> dict[str, str]:
    """{job id: scheduler state} of the still-active jobs the sweep submitted for this study."""
    jobs = [j for r in spec.runs if (j := last_job(r.run_dir))]
    if not jobs:
        return {}
    from .backends.submitit_backend import active_jobs
    return active_jobs(jobs)


def last_job(run_dir: Path) -> dict | None:
    jobs = read_record(run_dir).get("jobs") or []
    return jobs[-1] if jobs else None


# ---------------------------------------------------------------------------------------------
# The plan

def plan_run(run: Run, max_attempts: int, tracked: dict[str, str], active: dict[str, str]) -> Planned:
    if (why := identity_error(run)) is not None:
        return Planned(run, "conflict", "refuse", why)
    status = read_status(run.run_dir)
    state = status["status"] if status else None
    step = f"step {status['step']}/{status['iterations']}" if status else ""
    if state in TERMINAL:
        return Planned(run, state, "skip", step, status)
    if run_in_progress(run.run_dir):
        holder = (run.run_dir / LOCK_FILE).read_text().strip()
        return Planned(run, "running", "skip", f"{step}, {holder}".strip(", "), status)
    job = last_job(run.run_dir)
    if job and job.get("job_id") in active:
        return Planned(run, "queued", "skip", f"job {job['job_id']} {active[job['job_id']]}", status)
    if state == "preempted":
        return Planned(run, "preempted", "resume", step, status)
    if state == "running":
        return Planned(run, "interrupted", "resume", f"{step}; its process is gone (killed or node lost)", status)
    if state is None and tracked.get(run.config_hash) in (*TERMINAL, "running"):
        return Planned(run, tracked[run.config_hash], "skip", "per the tracker (the run folder has no status)")
    failures = len(failure_ids(run.run_dir, status))
    reason = (status or {}).get("reason") or ""
    last = f"; last: {reason[:120]}" if reason else ""
    if failures >= max_attempts:
        return Planned(run, "failed", "give-up", f"failed {failures} times (max_attempts {max_attempts}){last}", status)
    if state == "failed":
        return Planned(run, "failed", "retry", f"attempt {failures + 1} of {max_attempts}{last}", status)
    if why := read_record(run.run_dir).get("not_started"):
        return Planned(run, "not-started", "start", why)
    if run.run_dir.exists():
        return Planned(run, "pending", "start", "launched before, never started training"
                       + (f" ({failures} failed attempt(s))" if failures else ""))
    return Planned(run, "new", "start")


def plan(spec: Spec, read_only: bool = False, active: dict[str, str] | None = None) -> list[Planned]:
    """What to do with each run. `active`: scheduler_states(spec) when the caller already asked the scheduler."""
    tracked = tracker_states(spec, read_only)
    active = scheduler_states(spec) if active is None else active
    return [plan_run(r, spec.max_attempts, tracked, active) for r in spec.runs]


def prepare(p: Planned, spec: Spec, parent_run_id: str | None, tracking_uri: str):
    """Before launching: the folder, the resolved config (what `gatscale train` reads) and the sweep record."""
    run = p.run
    run.config.tracking.parent_run_id = parent_run_id
    run.config.tracking.uri = tracking_uri
    run.run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(run.config, run.run_dir / "config.yaml")
    ids = failure_ids(run.run_dir, p.status)
    update_record(run.run_dir, study=spec.name, name=run.name, config_hash=run.config_hash, failures=sorted(ids),
                  prepared=time.time(), not_started=None)


def note_not_started(run: Run, why: str):
    """The backend could not start the run here (e.g. 'needs 1 GPU; this machine has 0'): say so in sweep.json."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    update_record(run.run_dir, study=run.config.tracking.experiment, name=run.name, config_hash=run.config_hash,
                  not_started=why)
