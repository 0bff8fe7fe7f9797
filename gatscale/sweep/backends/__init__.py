"""Backends: how the runs of a sweep get trained. One interface, one module each (like submitit's executors):

    cannot_start(runs, options) -> {run name: why}   the runs this backend cannot start here ({}: all of them can)
    launch(runs, options) -> list[Outcome]           train them (or submit them) and say what became of each

Every backend module defines both. `runs` are prepared (`prepare`, called by the launching command just before
`launch`): each run folder holds the resolved `config.yaml` and its `sweep.json` (record.py). A backend trains
`gatscale train RUN_DIR/config.yaml --run-dir RUN_DIR` (as a process, a torchrun, a submitit job or a Ray
trial); the trainer resumes from the folder's checkpoint by itself. The Outcome says what became of each
run (finished, diverged, preempted, failed), that another process is training it right now (running: its
lock was held, the trainer exited EXIT_LOCKED; never a failure), or, for a cluster, that it was submitted.

    local     this machine, --max-parallel at a time, each run its own process (torchrun for several GPUs)
    submitit  SLURM job arrays (one per resource class), requeued on timeout/preemption
    ray       Ray Tune trials with per-size resources, retried on failure

The scheduler is asked about submitted jobs in one place: watcher.py (squeue/sacct, one call per poll).
"""
from __future__ import annotations

import importlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from gatscale.core.config import dump_config
from ...train.status import EXIT_LOCKED, EXIT_PREEMPTED, LOCK_FILE, TERMINAL, read_status, run_in_progress
from ..plan import Planned
from ..profile import ClusterProfile
from ..record import note_failure, update_record
from ..spec import Run, Spec

BACKENDS = {"local": ".local", "submitit": ".submitit_backend", "ray": ".ray_backend"}


@dataclass
class Options:
    max_parallel: int | None = None     # runs at once (local, ray); None: as many as CPUs / GPUs allow
    max_attempts: int = 3               # launches of a run that keeps failing
    profile: ClusterProfile | None = None  # submitit: the sbatch settings per size; ray: cpus_per_gpu
    submitit_cluster: str | None = None  # None = auto (SLURM when sbatch exists), 'slurm', 'local', 'debug'
    submitit_wait: bool = False         # wait for the jobs to end instead of returning once submitted
    ray_address: str | None = None      # 'auto', 'ray://host:10001', host:port; None = RAY_ADDRESS or a local Ray
    study_dir: Path = Path("runs")
    cwd: Path = field(default_factory=Path.cwd)


@dataclass
class Outcome:
    name: str
    state: str                          # finished | diverged | preempted | failed | running | submitted | not-started
    step: int | None = None
    job_id: str | None = None
    detail: str = ""


def launch(backend: str, runs: list[Run], options: Options) -> list[Outcome]:
    return _backend(backend).launch(runs, options)


def cannot_start(backend: str, runs: list[Run], options: Options) -> dict[str, str]:
    """{run name: why this backend cannot start it here}, e.g. 'needs 1 GPU; this machine has 0'."""
    return _backend(backend).cannot_start(runs, options)


def _backend(backend: str):
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r}: valid backends: {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[backend], __name__)


# ---------------------------------------------------------------------------------------------
# Before a launch: the run folder, its resolved config and its record

def prepare(p: Planned, spec: Spec, parent_run_id: str | None, tracking_uri: str):
    """The folder, the resolved config (what `gatscale train` reads) and the sweep record, with the plan's failures."""
    run = p.run
    run.config.tracking.parent_run_id = parent_run_id
    run.config.tracking.uri = tracking_uri
    run.run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(run.config, run.run_dir / "config.yaml")
    update_record(run.run_dir, study=spec.name, name=run.name, config_hash=run.config_hash, failures=p.failures,
                  prepared=time.time(), not_started=None)


def note_not_started(run: Run, why: str):
    """The backend could not start the run here (e.g. 'needs 1 GPU; this machine has 0'): say so in sweep.json."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    update_record(run.run_dir, study=run.config.tracking.experiment, name=run.name, config_hash=run.config_hash,
                  not_started=why)


# ---------------------------------------------------------------------------------------------
# Shared by the process-based backends (local, ray)

def train_command(run: Run) -> list[str]:
    """`gatscale train` for one run: a plain process, torchrun for several GPUs, `--device cpu` for none."""
    train = ["-m", "gatscale.cli", "train", str(run.run_dir / "config.yaml"), "--run-dir", str(run.run_dir)]
    if run.gpus > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={run.gpus}", *train]
    return [sys.executable, *train, *(["--device", "cpu"] if run.gpus == 0 else [])]


def child_env(threads: int | None = None, gpu_ids: list[int] | None = None) -> dict:
    env = dict(os.environ)
    if threads and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(threads)
    if gpu_ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpu_ids))
    return env


def outcome_of(run: Run, returncode: int | None = None) -> Outcome:
    """What the run folder says after a process ended; an exit without a terminal status is a failure, unless the
    run's lock is held: another process is training it (torchrun reports a rank's EXIT_LOCKED as 1)."""
    status = read_status(run.run_dir) or {}
    state, step = status.get("status"), status.get("step")
    if returncode == EXIT_LOCKED or (returncode not in (0, EXIT_PREEMPTED) and run_in_progress(run.run_dir)):
        return already_running(run, step)
    if status.get("attention"):  # the trainer refused to go on: not a failure to retry
        return Outcome(run.name, "needs-attention", step, detail=status["attention"])
    if returncode == EXIT_PREEMPTED or state == "preempted":
        return Outcome(run.name, "preempted", step, detail="checkpointed; re-run the sweep to resume")
    if state in TERMINAL and returncode in (0, None):
        return Outcome(run.name, state, step, detail=status.get("reason") or "")
    reason = status.get("reason") if state == "failed" else f"exit code {returncode}, status {state or 'none'}"
    return Outcome(run.name, "failed", step, detail=(reason or "")[:200])


def already_running(run: Run, step: int | None = None) -> Outcome:
    holder = (run.run_dir / LOCK_FILE).read_text().strip() if (run.run_dir / LOCK_FILE).is_file() else ""
    return Outcome(run.name, "running", step, detail=f"trained right now by {holder or 'another process'}; "
                                                    f"not launched again")


def skip_reason(run: Run) -> Outcome | None:
    """Checked again just before a launch (another sweep may have got there since the plan): the run is being
    trained (its lock is held) or has ended (finished, diverged): an Outcome saying so, else None."""
    status = read_status(run.run_dir) or {}
    if run_in_progress(run.run_dir):
        return already_running(run, status.get("step"))
    if status.get("status") in TERMINAL:
        return Outcome(run.name, status["status"], status.get("step"), detail="ended meanwhile; not launched again")
    return None


def print_outcomes(outcomes: list[Outcome]):
    for o in outcomes:
        print(f"  {o.state:<8} {o.name} at step {o.step}" + (f": {o.detail}" if o.detail else ""), flush=True)


def count_failure(run: Run, returncode: int | None, started: float) -> int:
    """Record the failure of the launch made at time `started`: its status.json entry if the trainer wrote one
    since, else the exit code. Returns the run's number of failures."""
    status = read_status(run.run_dir)
    if status and status.get("status") == "failed" and status.get("updated", 0) >= started:
        return note_failure(run.run_dir, f"status@{status.get('updated')}")
    return note_failure(run.run_dir, f"exit{returncode}@{time.time():.3f}")
