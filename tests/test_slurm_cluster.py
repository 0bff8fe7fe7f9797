"""Through the real local SLURM cluster (slurm/testing/local-cluster.sh up): sbatch, sacct, submitit
arrays, time limits, requeue with checkpoints, and the Ray-on-SLURM template.

SLURM reuses job ids once its state is wiped, so every test submits from a fresh tmp_path folder.
"""
import os
import sys
import time

import pytest
import submitit

from gatscale.sweep.profile import executor_kwargs, load_profile, submitit_parameters
from slurm_fixtures import REPO, Countdown, run, sacct_state, sbatch, scontrol_field, square, wait_final, wait_for

pytestmark = pytest.mark.slurm


def local_executor(folder, model="GAT-S/2", **overrides):
    profile = load_profile("local-test")
    executor = submitit.AutoExecutor(folder, **executor_kwargs(profile))
    executor.update_parameters(**{**submitit_parameters(profile, model), **overrides})
    return executor


def test_sbatch_job_completes_and_sacct_reports_completed(slurm_cluster, tmp_path):
    job_id = sbatch("--partition=debug", f"--output={tmp_path}/%j.out", "--wrap", "echo hello from $SLURM_JOB_ID")
    assert wait_final(job_id, timeout=60) == "COMPLETED"
    assert (tmp_path / f"{job_id}.out").read_text().strip() == f"hello from {job_id}"


def test_submitit_array_completes_and_states_come_from_the_scheduler(slurm_cluster, tmp_path):
    executor = local_executor(tmp_path / "submitit")
    assert executor.cluster == "slurm"
    jobs = executor.map_array(square, [2, 3])
    assert [job.result() for job in jobs] == [4, 9]
    assert len({job.job_id.split("_")[0] for job in jobs}) == 1  # one array, two tasks
    wait_for(lambda: all(job.state == "COMPLETED" for job in jobs), 30,
             f"submitit reads COMPLETED from sacct (states: {[j.state for j in jobs]})")
    assert all(sacct_state(job.job_id) == "COMPLETED" for job in jobs)


@pytest.mark.slow  # slurmctld checks time limits every 30 s
def test_job_past_its_time_limit_ends_timeout(slurm_cluster, tmp_path):
    job_id = sbatch("--time=1", f"--output={tmp_path}/%j.out", "--wrap", "sleep 300")
    wait_for(lambda: sacct_state(job_id) == "RUNNING", 30, f"job {job_id} starts")
    # The time limit's granularity is a minute; moving the end time forward makes the limit hit now.
    run("scontrol", "update", f"JobId={job_id}", "EndTime=now+1")
    assert wait_final(job_id, timeout=60) == "TIMEOUT"
    assert submitit.SlurmJob(tmp_path, job_id).state == "TIMEOUT"


def _submit_countdown(tmp_path, steps):
    # timeout_min=60: a signal long before the limit reads as a preemption to submitit, which then
    # requeues without spending one of the profile's max_requeue time-outs.
    executor = local_executor(tmp_path / "submitit", timeout_min=60)
    started = tmp_path / "started"
    job = executor.submit(Countdown(), str(started), steps)
    wait_for(started.exists, 60, f"job {job.job_id} starts running")
    return job, started


def test_signalled_checkpointable_job_requeues_and_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    job, started = _submit_countdown(tmp_path, steps=60)
    time.sleep(1)  # let it count a few ticks
    # What SLURM sends before a time limit or a preemption (--signal=USR2@...): submitit checkpoints
    # the Countdown and calls `scontrol requeue` itself.
    run("scancel", "--signal=USR2", job.job_id)
    ticks_before_signal, restarts = job.result()
    assert restarts == 1
    assert 0 < ticks_before_signal < 60
    assert scontrol_field(job.job_id, "Restarts") == "1"


@pytest.mark.slow
def test_plain_scontrol_requeue_restarts_from_the_submitted_state(slurm_cluster, tmp_path):
    """An admin's `scontrol requeue` sends SIGTERM (which submitit ignores), not USR2: no checkpoint is
    taken and the job reruns from what was submitted. Only state on disk survives this, so runs must
    resume from their own checkpoint files."""
    job, started = _submit_countdown(tmp_path, steps=60)
    run("scontrol", "requeue", job.job_id)
    ticks_at_start, restarts = job.result()
    assert (ticks_at_start, restarts) == (0, 1)


@pytest.mark.slow
def test_ray_on_slurm_template_runs_ray_tasks_inside_one_allocation(slurm_cluster, tmp_path):
    command = ("python -c 'import ray; ray.init(address=\"auto\"); "
               "square = ray.remote(lambda x: x * x); "
               "print(\"RAY RESULT\", ray.get([square.remote(2), square.remote(3)]))'")
    env = {**os.environ, "GATSCALE_VENV": sys.prefix, "GATSCALE_RAY_COMMAND": command}
    job_id = sbatch("--cpus-per-task=2", f"--output={tmp_path}/%j.out", str(REPO / "slurm" / "ray-on-slurm.sbatch"),
                    env=env)
    state = wait_final(job_id, timeout=150)
    log = (tmp_path / f"{job_id}.out").read_text()
    assert state == "COMPLETED", log[-3000:]
    assert "RAY RESULT [4, 9]" in log
    steps = run("sacct", "-n", "-P", "-j", job_id, "-o", "JobID").split()
    assert f"{job_id}.1" in steps  # the head ran as a step of this allocation
