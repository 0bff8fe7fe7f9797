"""Ray backend: the runs as Ray Tune trials, one `gatscale train` process per trial.

Each trial asks for the run's resources: its GPUs (0: a CPU-only trial) and CPUs (the profile's
cpus_per_gpu per GPU, else 1). Ray places the trials and sets CUDA_VISIBLE_DEVICES; at most --max-parallel
run at once. Ray is the one started here (`ray.init(num_cpus=<CPUs>)`) unless --ray-address / RAY_ADDRESS
names a cluster ('auto', 'ray://head:10001', 'head:6379'; see slurm/ray-on-slurm.sbatch).

Resume and retries use the trainer's own checkpoints, not Tune's: a trial whose run fails or is preempted
raises, Tune retries it (FailureConfig, max_attempts - 1 times) and the retried trial relaunches
`gatscale train` on the same run folder, which resumes. A run that has failed max_attempts times is not
launched again, nor one that another process trains right now (its lock is held: the trainer exits
EXIT_LOCKED, the trial reports `running`, never a failure). The trainer process gets SIGTERM if its trial dies
(PR_SET_PDEATHSIG): it checkpoints.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time

from ..record import failures, read_record
from ..spec import Run
from . import Options, Outcome, child_env, count_failure, outcome_of, print_outcomes, skip_reason, train_command

PR_SET_PDEATHSIG = 1


def _child_setup():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # Linux: SIGTERM to the trainer when the trial's thread dies
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except (OSError, AttributeError):
        pass


def cannot_start(runs: list[Run], options: Options) -> dict[str, str]:
    """None: Ray places each trial where its resources are, and only the running Ray knows what it has."""
    return {}


def launch(runs: list[Run], options: Options) -> list[Outcome]:
    import ray
    from ray import tune

    by_name = {r.name: r for r in runs}
    cwd, max_attempts = str(options.cwd), options.max_attempts
    cpus_per_gpu = options.profile.cpus_per_gpu if options.profile else 1

    def trial(config):
        run = by_name[config["run"]]
        if len(failures(read_record(run.run_dir))) >= max_attempts:
            tune.report({"state": "failed", "step": -1})
            return
        if (skipped := skip_reason(run)) is not None:  # trained by another process now, or ended meanwhile
            tune.report({"state": skipped.state, "step": skipped.step or 0})
            return
        started = time.time()
        with open(run.run_dir / "stdout.txt", "a") as out:
            env = child_env(cpus_per_gpu * max(run.gpus, 1))
            env["GATSCALE_JOB_ID"] = f"ray-{tune.get_context().get_trial_id()}"  # the tracker's gatscale.job_id tag
            proc = subprocess.Popen(train_command(run), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                    env=env, preexec_fn=_child_setup)
            returncode = proc.wait()
        outcome = outcome_of(run, returncode)
        if outcome.state == "failed":
            count_failure(run, returncode, started)
        if outcome.state in ("failed", "preempted"):
            raise RuntimeError(f"{run.name}: {outcome.state} at step {outcome.step}: {outcome.detail}")
        tune.report({"state": outcome.state, "step": outcome.step or 0})

    def resources(config):
        run = by_name[config["run"]]
        return {"cpu": cpus_per_gpu * max(run.gpus, 1), "gpu": run.gpus}

    address = options.ray_address or os.environ.get("RAY_ADDRESS")
    owns_ray = not ray.is_initialized()
    if owns_ray:
        if address:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    print(f"gatscale sweep: {len(runs)} run(s) as Ray Tune trials on {ray.cluster_resources()}", flush=True)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trial, resources),
            param_space={"run": tune.grid_search(list(by_name))},
            tune_config=tune.TuneConfig(max_concurrent_trials=options.max_parallel),
            run_config=tune.RunConfig(name=time.strftime("%Y%m%d-%H%M%S"),
                                      storage_path=str((options.study_dir / ".ray").resolve()),
                                      failure_config=tune.FailureConfig(max_failures=max_attempts - 1), verbose=0))
        tuner.fit()
    finally:
        if owns_ray:
            ray.shutdown()
    outcomes = [outcome_of(r) for r in runs]
    print_outcomes(outcomes)
    return outcomes
