"""Sweeps through the real local SLURM cluster (slurm/testing/local-cluster.sh up): `gatscale sweep --backend
submitit` as one job array per resource class, `gatscale status` from squeue/sacct, a preempted run that requeues
and resumes bitwise into the same MLflow run, a run past its time limit requeued max_requeue times and then
reported, fresh submitit folders per launch, and a Ray sweep inside one allocation (slurm/ray-on-slurm.sbatch).

Each test uses a fresh study name (its SLURM job name; `study` cancels its jobs at the end) and tmp folders.
The node has 2 CPUs and each job imports torch: the runs are tiny and few.
"""
import os
import pickle
import re
import sys

import pytest
import yaml

from gatscale.cli import main as gatscale_main
from gatscale.core.config import TrackingConfig, load_config
from gatscale.sweep.backends.submitit_backend import job_error
from gatscale.sweep.profile import PROFILES_DIR
from gatscale.sweep.spec import load_spec
from gatscale.train.checkpoint import list_checkpoints, load_checkpoint
from gatscale.train.status import EXIT_PREEMPTED, read_status
from gatscale.train.trainer import train
from slurm_fixtures import (
    REPO,
    job_records,
    log_count,
    run,
    sacct_field,
    sbatch,
    scontrol_field,
    slurm_spec,
    wait_final,
    wait_for,
)
from sweep_fixtures import gatscale, run_starts
from train_fixtures import assert_bitwise_equal

slurm = pytest.mark.slurm


def sweep(spec, *args: str) -> int:
    return gatscale_main(["sweep", str(spec), "--backend", "submitit", "--cluster", "slurm", *args])


def status_table(spec, capsys) -> str:
    capsys.readouterr()
    assert gatscale_main(["status", str(spec)]) == 0
    return capsys.readouterr().out


@slurm
@pytest.mark.slow
def test_sweep_submits_one_array_per_resource_class_and_status_shows_the_scheduler_states(study, tmp_path, capsys):
    spec = slurm_spec(tmp_path, study, train={"iterations": 10},
                      zip={"model.generator.size": ["GAT-S/4", "GAT-S/4", "GAT-B/4"], "train.seed": [0, 1, 0]},
                      per_size={"B": {"resources": {"partition": "long"}}})
    assert sweep(spec) == 0
    runs = load_spec(spec).runs
    jobs = [job_records(r.run_dir)[-1] for r in runs]
    ids = [j["job_id"] for j in jobs]
    table = status_table(spec, capsys)
    assert all(re.search(rf"{ids[i]} +(PENDING|RUNNING)", table) for i in range(3)), table

    # Two resource classes, two submissions from one fresh folder: the two S runs are tasks of one array.
    folder = {j["folder"] for j in jobs}
    assert len(folder) == 1 and len(list(tmp_path.glob("runs/*/.submitit/*/*_submission.sh"))) == 2
    assert ids[0].split("_")[0] == ids[1].split("_")[0] != ids[2].split("_")[0] and "_" in ids[0]
    assert [wait_final(i, timeout=240) for i in ids] == ["COMPLETED"] * 3
    assert [sacct_field(i, "Partition") for i in ids] == ["debug", "debug", "long"]
    assert [read_status(r.run_dir)["status"] for r in runs] == ["finished"] * 3
    table = status_table(spec, capsys)
    assert all(re.search(rf"{i} +COMPLETED", table) for i in ids) and "finished: 3" in table, table


@slurm
@pytest.mark.slow
def test_preempted_run_requeues_and_resumes_into_the_same_mlflow_run_bitwise(study, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # time_min 60: submitit reads an early USR2 as a preemption (a requeue that spends no time-out).
    spec = slurm_spec(tmp_path, study, train={"iterations": 60, "checkpoint_every": 1000},
                      tracking={"backend": "mlflow", "uri": uri}, resources={"time_min": 60})
    assert sweep(spec) == 0
    [r] = load_spec(spec).runs
    job_id = job_records(r.run_dir)[-1]["job_id"]
    wait_for(lambda: log_count(r.run_dir, " step 5/60 "), 120, f"job {job_id} trains")
    run("scancel", "--signal=USR2", job_id)  # what SLURM sends a job at preemption (and before its time limit)

    reference = train(load_config(r.run_dir / "config.yaml"), tmp_path / "reference")  # meanwhile, uninterrupted
    assert reference.status == "finished"
    assert wait_final(job_id, timeout=180) == "COMPLETED"
    assert scontrol_field(job_id, "Restarts") == "1"
    [resumed_at] = re.findall(r"resumed from \S+ \(step (\d+)\)", (r.run_dir / "log.txt").read_text())
    assert 5 <= int(resumed_at) < 60  # from the checkpoint the signal made mid-run
    assert (read_status(r.run_dir)["status"], read_status(r.run_dir)["step"]) == ("finished", 60)
    assert_bitwise_equal(load_checkpoint(list_checkpoints(r.run_dir)[-1]),
                         load_checkpoint(list_checkpoints(tmp_path / "reference")[-1]))

    from mlflow.tracking import MlflowClient

    from gatscale.tracking import find_runs
    tracked = find_runs(TrackingConfig(uri=uri, experiment=study))
    [run_id] = tracked[tracked["kind"] != "sweep"]["run_id"]  # one tracker run across both attempts
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run_id, "loss/d")) == list(range(5, 61, 5))


@slurm
@pytest.mark.slow
def test_run_past_its_time_limit_is_requeued_max_requeue_times_then_reported_and_resumed_later(study, tmp_path, capsys):
    profile = yaml.safe_load((PROFILES_DIR / "local-test.yaml").read_text())
    (tmp_path / "profile.yaml").write_text(yaml.safe_dump({**profile, "max_requeue": 1}))
    spec = slurm_spec(tmp_path, study, train={"iterations": 100000, "checkpoint_every": 100000},
                      profile=tmp_path / "profile.yaml")
    launch = gatscale("sweep", str(spec), "--backend", "submitit", "--cluster", "slurm", "--wait", cwd=tmp_path)
    try:
        [r] = load_spec(spec).runs
        job_id = wait_for(lambda: job_records(r.run_dir) and job_records(r.run_dir)[-1]["job_id"], 60, "submitted")
        for attempt in (1, 2):
            wait_for(lambda: run_starts(r.run_dir) >= attempt, 120, f"attempt {attempt} of job {job_id} trains")
            # Bring the job's time limit to within a minute: at its next time-limit check (every 30 s) slurmctld
            # sends USR2 (signal_delay_s = 30 s before the end); the trainer checkpoints, submitit requeues the job
            # while it has time-outs left.
            run("scontrol", "update", f"JobId={job_id}", "EndTime=now+60")
        out = launch.communicate(timeout=90)[0]
    finally:
        launch.kill()
    assert wait_final(job_id, timeout=30) == "FAILED"  # out of requeues: the job ends
    assert launch.returncode == EXIT_PREEMPTED and "timed-out too many times" in out, out
    assert scontrol_field(job_id, "Restarts") == "1" and log_count(r.run_dir, "resumed from") == 1
    status = read_status(r.run_dir)
    assert status["status"] == "preempted" and list_checkpoints(r.run_dir)[-1].name == f"ckpt-{status['step']:07d}.pt"
    table = status_table(spec, capsys)
    assert re.search(rf"preempted .* {job_id} +FAILED .*timed-out too many times", table), table

    # A later launch resumes it from that checkpoint, from a fresh submitit folder.
    assert sweep(spec) == 0 and "plan: 1 resume" in capsys.readouterr().out
    first, second = job_records(r.run_dir)
    assert first["folder"] != second["folder"] and first["job_id"] == job_id
    assert "timed-out too many times" in job_error(first) and job_error(second) is None
    last = list_checkpoints(r.run_dir)[-1]
    wait_for(lambda: log_count(r.run_dir, f"resumed from {last} (step {status['step']})"), 120,
             f"job {second['job_id']} resumes")


def test_job_errors_are_read_from_the_folder_recorded_for_the_job(tmp_path):
    """SLURM reuses job ids once its state is wiped: the same id in two launches' folders stays two jobs."""
    for launch, result in (("a", ("error", "Traceback ...\nUncompletedJobError: timed-out too many times.")),
                           ("b", ("success", {"status": "finished"}))):
        (tmp_path / launch).mkdir()
        (tmp_path / launch / "7_0_0_result.pkl").write_bytes(pickle.dumps(result))
    job = {"backend": "submitit", "cluster": "slurm", "job_id": "7_0"}
    assert job_error({**job, "folder": str(tmp_path / "a")}) == "UncompletedJobError: timed-out too many times."
    assert job_error({**job, "folder": str(tmp_path / "b")}) is None
    assert job_error({**job, "folder": str(tmp_path / "c")}) is None  # no result yet


@slurm
@pytest.mark.slow
def test_ray_on_slurm_template_runs_a_two_run_sweep_inside_one_allocation(study, tmp_path):
    spec = slurm_spec(tmp_path, study, train={"iterations": 10}, seeds=[0, 1])
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "GATSCALE_RAY_COMMAND")}
    job_id = sbatch(f"--job-name={study}", "--cpus-per-task=2", f"--chdir={tmp_path}", f"--output={tmp_path}/%j.out",
                    str(REPO / "slurm" / "ray-on-slurm.sbatch"), str(spec), env={**env, "GATSCALE_VENV": sys.prefix})
    state = wait_final(job_id, timeout=240)
    log = (tmp_path / f"{job_id}.out").read_text()
    assert state == "COMPLETED", log[-3000:]
    assert "2 run(s) as Ray Tune trials" in log, log[-3000:]
    assert f"/tmp/ray-{job_id}/session" in log  # Tune ran on the template's Ray (its temp dir is per job), not its own
    assert [read_status(r.run_dir)["status"] for r in load_spec(spec).runs] == ["finished", "finished"]
