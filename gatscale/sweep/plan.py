"""What a launch does with each run of a spec: skip, start, resume, retry, give up or refuse.

A pure decision over what is already known: each run folder read once (`read_folder`: status.json, the
trainer's lock, sweep.json, and config.yaml when its identity is in doubt), the scheduler's active jobs (a job
the sweep submitted that is still queued or running; backends/watcher.py) and the tracker's states (a run whose
folder has no status; status.tracker_states). Nothing here writes a file or asks a scheduler or a tracker:

    finished, diverged            skip (never relaunched)
    running (lock held), queued   skip (someone is on it; also a run the tracker calls running or
                                  terminal while this folder has no status: it lives elsewhere)
    new, pending                  start
    not-started                   start (the last launch could not start it on its machine: sweep.json says why)
    needs-attention               hold: the trainer refused to go on (status.json `attention`: a checkpoint was
                                  written but none is usable); shown with its line, never relaunched
    preempted, interrupted        resume: the trainer continues from its last checkpoint (status.json
                                  checkpoint_step; from step 0 when none was written yet)
    failed                        retry while failures < max_attempts, then give up (reported)
    conflict                      refuse: the folder holds another config under this name

The failures counted (sweep.json's plus the one status.json shows now) travel with the plan, and the launch
(backends.prepare) records them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from gatscale.core.config import ConfigError, RunConfig, config_hash, diff, load_config
from ..train.status import LOCK_FILE, TERMINAL, read_status, run_in_progress
from .record import failures, last_job, read_record
from .spec import Run, Spec

LAUNCH_ACTIONS = ("start", "resume", "retry")
STOP_ACTIONS = ("give-up", "hold", "refuse")  # the run cannot go on without a person


@dataclass
class Folder:
    """One run folder as the plan sees it, read once."""
    exists: bool
    status: dict | None                  # status.json
    lock_holder: str | None              # the lock file's text while a live trainer holds it, else None
    record: dict                         # sweep.json ({} when none)
    has_config: bool                     # config.yaml exists
    config: RunConfig | None = None      # config.yaml, read only when sweep.json does not vouch for its hash
    config_error: str = ""               # why config.yaml could not be read (then config is None)

    @property
    def last_job(self) -> dict | None:
        return last_job(self.record)


def read_folder(run: Run) -> Folder:
    run_dir = run.run_dir
    record = read_record(run_dir)
    saved = run_dir / "config.yaml"
    folder = Folder(exists=run_dir.exists(), status=read_status(run_dir), lock_holder=None, record=record,
                    has_config=saved.is_file())
    if run_in_progress(run_dir):
        folder.lock_holder = (run_dir / LOCK_FILE).read_text().strip()
    if folder.has_config and record.get("config_hash") != run.config_hash:
        try:
            folder.config = load_config(saved)
        except ConfigError as e:
            folder.config_error = str(e)
    return folder


@dataclass
class Planned:
    run: Run
    state: str            # new pending finished diverged running queued needs-attention preempted interrupted failed
                          # conflict
    action: str           # start resume retry skip give-up hold refuse
    detail: str = ""
    status: dict | None = None
    failures: list[str] = field(default_factory=list)  # failure ids so far, the current status.json's included

    @property
    def launch(self) -> bool:
        return self.action in LAUNCH_ACTIONS


def identity_error(run: Run, folder: Folder) -> str | None:
    """Why the run folder cannot be this run (another config under the same name), or None."""
    held = folder.record.get("config_hash")
    saved = run.run_dir / "config.yaml"
    if held == run.config_hash or (held is None and not folder.has_config):
        return None
    if folder.config_error:
        return f"{saved}: unreadable run config ({folder.config_error}); move the folder away to start this run afresh"
    old = folder.config
    changed = ""
    if old is not None:
        held = held or config_hash(old)
        if held == run.config_hash:
            return None
        # the keys a sweep sets per run (name, folder, tracker) are no news
        keys = diff(old, run.config, ignore=("name", "run_dir", "tracking"))
        changed = " Differences (folder -> spec): " + "; ".join(keys[:8]) + "."
    return (f"{run.run_dir}: this folder holds run {run.name!r} with config hash {held}, but the spec now gives "
            f"hash {run.config_hash} for this name: a result-relevant key changed.{changed} Rename the study (spec key "
            f"'name') or move the folder away to start the run over; the sweep never mixes two configs in one folder.")


def plan_run(run: Run, folder: Folder, max_attempts: int, tracked: dict[str, str], active: dict[str, str]) -> Planned:
    """tracked: {config hash: tracker status}; active: {job id: scheduler state} of the still-active jobs."""
    if (why := identity_error(run, folder)) is not None:
        return Planned(run, "conflict", "refuse", why)
    status = folder.status
    state = status["status"] if status else None
    step = f"step {status['step']}/{status['iterations']}" if status else ""
    failed = failures(folder.record, status)
    if state in TERMINAL:
        return Planned(run, state, "skip", step, status, failed)
    if folder.lock_holder is not None:
        return Planned(run, "running", "skip", f"{step}, {folder.lock_holder}".strip(", "), status, failed)
    job = folder.last_job
    if job and job.get("job_id") in active:
        return Planned(run, "queued", "skip", f"job {job['job_id']} {active[job['job_id']]}", status, failed)
    if status and status.get("attention"):
        return Planned(run, "needs-attention", "hold", status["attention"], status, failed)
    if state == "preempted":
        return Planned(run, "preempted", "resume", f"{step}{_resumes_from(status)}", status, failed)
    if state == "running":
        return Planned(run, "interrupted", "resume", f"{step}; its process is gone (killed or node lost)"
                       f"{_resumes_from(status)}", status, failed)
    if state is None and tracked.get(run.config_hash) in (*TERMINAL, "running"):
        return Planned(run, tracked[run.config_hash], "skip", "per the tracker (the run folder has no status)",
                       failures=failed)
    reason = (status or {}).get("reason") or ""
    last = f"; last: {reason[:120]}" if reason else ""
    if len(failed) >= max_attempts:
        return Planned(run, "failed", "give-up", f"failed {len(failed)} times (max_attempts {max_attempts}){last}",
                       status, failed)
    if state == "failed":
        return Planned(run, "failed", "retry", f"attempt {len(failed) + 1} of {max_attempts}{last}", status, failed)
    if why := folder.record.get("not_started"):
        return Planned(run, "not-started", "start", why, failures=failed)
    if folder.exists:
        return Planned(run, "pending", "start", "launched before, never started training"
                       + (f" ({len(failed)} failed attempt(s))" if failed else ""), failures=failed)
    return Planned(run, "new", "start", failures=failed)


def _resumes_from(status: dict) -> str:
    """Where a resume continues: the last checkpoint written, not the last step reached."""
    saved = status.get("checkpoint_step") or 0
    if saved == status.get("step"):
        return ""  # nothing lost
    return f"; resumes from its checkpoint of step {saved}" if saved else "; no checkpoint yet: starts from step 0"


def plan(spec: Spec, tracked: dict[str, str] | None = None, active: dict[str, str] | None = None,
         folders: list[Folder] | None = None) -> list[Planned]:
    """What to do with each run of the spec. `folders`: read_folder of each run when the caller already read them."""
    folders = folders if folders is not None else [read_folder(r) for r in spec.runs]
    return [plan_run(r, f, spec.max_attempts, tracked or {}, active or {}) for r, f in zip(spec.runs, folders)]
