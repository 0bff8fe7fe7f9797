"""submitit backend: one SLURM job array per resource class (runs of one size share GPUs and wall time).

Jobs go to a fresh folder per launch, `<study>/.submitit/<timestamp>/` (SLURM reuses job ids after a state
wipe; old logs stay). The cluster settings come from a profile (`slurm/profiles/*.yaml`): `submitit_parameters`
gives the update_parameters of each run's resources, `--profile`/spec `profile` picks it. `submitit.AutoExecutor`
picks SLURM when `sbatch` exists; `submitit_cluster='local'` (LocalExecutor) and `'debug'` run on this machine.
The submitted jobs are recorded in each run's sweep.json; their scheduler states come from watcher.py.

The job (`TrainJob`, a `Checkpointable`) trains in-process: `tasks_per_node` = GPUs per node, one rank per
task, the trainer joins the process group from submitit's environment (gatscale/train/distributed.py).

Preemption and time limits. submitit's job process handles SIGUSR2 by pickling the job and requeueing it
(`scontrol requeue`), and ignores SIGTERM; the trainer, started after, installs its own SIGUSR2/SIGTERM
handlers, which win. So:
  1. SLURM sends USR2 `signal_delay_s` before the limit (or at preemption when the site sends USR2): the
     trainer sets a flag, checkpoints at the next step boundary, returns `preempted`.
  2. TrainJob sees that the signal was USR2 and calls submitit's saved handler itself: it checkpoints the job
     (same arguments), requeues it (at most `max_requeue` timeouts) and exits. The requeued job starts
     TrainJob again, and the trainer resumes from its checkpoint in the run folder.
  3. SIGTERM (scancel, or preemption that cancels): the trainer checkpoints and stops; no requeue. The run is
     `preempted` and the next `gatscale sweep` resumes it.
The job's result is {'name', 'status', 'step', 'reason'}: finished and diverged are normal results (a
diverged run must not be retried), and so is `running` (the run's lock was held by another live trainer: the
job did nothing); a failure raises, so the job ends FAILED.
"""
from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import submitit

from ..profile import executor_kwargs, submitit_parameters
from ..record import add_job
from ..spec import Run
from . import Options, Outcome, outcome_of, print_outcomes


class TrainJob(submitit.helpers.Checkpointable):
    """`gatscale train CONFIG --run-dir RUN_DIR` as a submitit job (every rank calls it)."""

    def __call__(self, config_path: str, run_dir: str) -> dict:
        from gatscale.core.config import load_config
        from ...tracking import build_tracker
        from ...train.status import RunInProgress
        from ...train.trainer import train

        submitit_usr2 = signal.getsignal(signal.SIGUSR2)  # submitit's checkpoint-and-requeue handler
        cfg = load_config(config_path)
        try:
            result = train(cfg, run_dir, tracker=build_tracker(cfg.tracking))
        except RunInProgress as e:  # another process trains this run now: a normal result, not a failure
            return {"name": cfg.name, "status": "running", "step": None, "reason": str(e)}
        if result.status == "preempted" and result.signum == signal.SIGUSR2 and callable(submitit_usr2):
            submitit_usr2(signal.SIGUSR2, None)  # requeues and exits on rank 0; returns on the others
        return {"name": cfg.name, "status": result.status, "step": result.step, "reason": result.reason}


def _resources(run: Run, options: Options) -> dict:
    """update_parameters kwargs of one run: its size row (the profile's, with the spec's overrides) as parameters."""
    if options.profile is None:
        return dict(timeout_min=run.resources.time_min or 60, nodes=run.resources.nodes or 1,
                    tasks_per_node=max(run.gpus, 1), gpus_per_node=run.gpus or None, cpus_per_task=1)
    return submitit_parameters(options.profile, run.model, run.resources)


def cannot_start(runs: list[Run], options: Options) -> dict[str, str]:
    """Every run when SLURM is asked for (`submitit_cluster='slurm'`) on a machine without sbatch; else none."""
    if options.submitit_cluster == "slurm" and not shutil.which("sbatch"):
        return {r.name: "needs SLURM; this machine has no sbatch (--cluster local runs the jobs here)" for r in runs}
    return {}


def launch(runs: list[Run], options: Options) -> list[Outcome]:
    folder = options.study_dir / ".submitit" / time.strftime("%Y%m%d-%H%M%S")
    folder = Path(f"{folder}-{time.time_ns() % 10**6:06d}")
    executor = submitit.AutoExecutor(folder=folder, cluster=options.submitit_cluster,
                                     **(executor_kwargs(options.profile) if options.profile else {}))
    classes: dict[str, tuple[dict, list[Run]]] = {}  # one job array per resource class
    for run in runs:
        kwargs = _resources(run, options)
        classes.setdefault(json.dumps(kwargs, sort_keys=True, default=str), (kwargs, []))[1].append(run)
    jobs = []
    for kwargs, members in classes.values():
        executor.update_parameters(name=options.study_dir.name, **kwargs)
        with executor.batch():
            submitted = [executor.submit(TrainJob(), str(r.run_dir / "config.yaml"), str(r.run_dir)) for r in members]
        for run, job in zip(members, submitted):
            entry = {"backend": "submitit", "cluster": executor.cluster, "job_id": str(job.job_id),
                     "folder": str(folder), "submitted": time.time()}
            jobs.append((run, job, entry))
            add_job(run.run_dir, entry)
        print(f"  submitted {len(members)} run(s) as {executor.cluster} job(s) "
              f"{', '.join(str(j.job_id) for _, j, _ in jobs[-len(members):])}", flush=True)
    if not options.submitit_wait:
        return [Outcome(r.name, "submitted", job_id=str(j.job_id), detail=f"logs in {folder}") for r, j, _ in jobs]
    outcomes = []
    for run, job, entry in jobs:
        try:
            job.result()
            outcomes.append(outcome_of(run))
        except Exception as e:  # noqa: BLE001 - the job failed: its run folder says how far it got
            outcome = outcome_of(run)
            message = job_error(entry) or str(e).strip().splitlines()[0][:200]  # e.g. 'Job 12 was cancelled'
            if outcome.state == "preempted":  # checkpointed, but not requeued (e.g. out of time-outs)
                outcome.detail = f"{outcome.detail}; job {job.job_id}: {message}"
            outcome.detail = outcome.detail or message
            outcomes.append(outcome)
        outcomes[-1].job_id = str(job.job_id)
    print_outcomes(outcomes)
    return outcomes


def job_error(job: dict) -> str | None:
    """The last line of the error a submitit job ended with, e.g. 'UncompletedJobError: Job not requeued because:
    timed-out too many times.', read from the folder recorded for that job (SLURM may reuse a job id in another
    launch's folder); None while it has no result, after a success, or for another backend's job."""
    if job.get("backend") != "submitit" or not job.get("folder") or not job.get("job_id"):
        return None
    path = submitit.core.utils.JobPaths(job["folder"], job_id=job["job_id"], task_id=0).result_pickle
    try:
        kind, value = submitit.core.utils.pickle_load(path)
    except Exception:  # noqa: BLE001 - no result (yet), or one being written: nothing to report
        return None
    lines = str(value).strip().splitlines()
    return lines[-1][:200] if kind == "error" and lines else None
