"""Sweeps end to end on tiny runs: local backend (tracker, divergence, kill and resume), submitit, Ray."""
import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from gatscale.cli import main as gatscale_main
from gatscale.core.config import TrackingConfig
from gatscale.sweep.spec import load_spec
from gatscale.train.checkpoint import list_checkpoints
from gatscale.train.status import EXIT_PREEMPTED, read_status, run_in_progress
from sweep_fixtures import gatscale, run_starts, tiny_run_dict, two_run_spec, wait_for, write_spec

pytestmark = pytest.mark.slow


def test_local_sweep_tracks_runs_records_divergence_and_skips_them_on_relaunch(tmp_path, monkeypatch, capsys):
    base = {**tiny_run_dict(), "tracking": {"backend": "mlflow", "uri": "sqlite:///mlflow.db"}}
    spec_path = write_spec(tmp_path / "s.yaml", text=yaml.safe_dump({
        "name": "t", "base": base,
        "grid": {"lr": {"lrA": {"optim.width_aware_lr": True},
                        "absurd": {"optim.width_aware_lr": False, "optim.lr": 100.0}}}}))
    monkeypatch.chdir(tmp_path)
    assert gatscale_main(["sweep", str(spec_path)]) == 0
    dirs = {r.labels["lr"]: r.run_dir for r in load_spec(spec_path, runs_dir=tmp_path / "runs").runs}
    ok, bad = dirs["lrA"], dirs["absurd"]
    printed = capsys.readouterr().out
    assert f"log {ok / 'stdout.txt'}" in printed   # where each run's log is, as it starts
    assert "2 running | S4-" in printed and "1 diverged, 1 finished\n" in printed  # live progress, one line each
    assert read_status(ok)["status"] == "finished" and read_status(ok)["step"] == 20
    assert read_status(bad)["status"] == "diverged" and read_status(bad)["step"] < 20

    from gatscale.tracking import find_runs
    tracked = find_runs(TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="t"))
    [parent] = tracked[tracked["kind"] == "sweep"]["run_id"]
    children = tracked[tracked["parent_run_id"] == parent]
    assert dict(zip(children["name"], children["status"])) == {ok.name: "finished", bad.name: "diverged"}
    from mlflow import MlflowClient
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert client.get_experiment_by_name("t").tags["mlflow.experimentKind"] == "custom_model_development"
    runs = {n: client.get_run(i) for n, i in zip(children["name"], children["run_id"])}
    names = {n: r.info.run_name for n, r in runs.items()}  # short and distinct: the part they share is dropped
    assert sorted(names.values()) in (["S4", "S4-absurd"], ["S4", "S4-lrA"]) and names[bad.name] != "S4-lrA"
    assert {k: runs[ok.name].data.tags[k] for k in ("size", "patch", "mng", "repa", "lr_mode", "seed")} == \
        {"size": "S (4x16)", "patch": "4", "mng": "exp", "repa": "on", "lr_mode": "width-aware", "seed": "0"}

    mtimes = {d: list_checkpoints(d)[-1].stat().st_mtime_ns for d in (ok, bad) if list_checkpoints(d)}
    capsys.readouterr()
    assert gatscale_main(["sweep", str(spec_path)]) == 0
    assert "nothing to launch" in capsys.readouterr().out
    assert run_starts(ok) == run_starts(bad) == 1  # neither trained again: the diverged run is not retried
    assert {d: list_checkpoints(d)[-1].stat().st_mtime_ns for d in mtimes} == mtimes


def test_killed_sweep_relaunch_resumes_only_unfinished_runs(tmp_path, monkeypatch):
    spec_path = two_run_spec(tmp_path / "s.yaml", iterations=(20, 200))
    short, long = (r.run_dir for r in load_spec(spec_path, runs_dir=tmp_path / "runs").runs)

    # 1. A lost allocation: SIGKILL to the sweep's whole process group, mid-way.
    sweep = gatscale("sweep", str(spec_path), "--max-parallel", "2", cwd=tmp_path)
    wait_for(lambda: (read_status(short) or {}).get("status") == "finished" and list_checkpoints(long), timeout=240)
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.wait()
    wait_for(lambda: not run_in_progress(long), timeout=30)  # the run died with the group
    killed_at = read_status(long)
    assert killed_at["status"] == "running"
    short_ckpt = list_checkpoints(short)[-1].stat().st_mtime_ns

    # 2. Relaunch, then stop it with SIGTERM: the sweep forwards it, the run checkpoints as preempted.
    sweep = gatscale("sweep", str(spec_path), cwd=tmp_path)
    wait_for(lambda: "resumed from" in (long / "log.txt").read_text() and
             (read_status(long) or {}).get("step", 0) > killed_at["step"], timeout=240)
    sweep.send_signal(signal.SIGTERM)
    out = sweep.communicate(timeout=120)[0]
    assert sweep.returncode == EXIT_PREEMPTED, out
    assert read_status(long)["status"] == "preempted" and "preempted" in out

    # 3. Relaunch to the end: only the unfinished run trains, from its checkpoint.
    monkeypatch.chdir(tmp_path)
    assert gatscale_main(["sweep", str(spec_path)]) == 0
    assert read_status(long)["status"] == "finished" and read_status(long)["step"] == 200
    assert run_starts(short) == 1 and list_checkpoints(short)[-1].stat().st_mtime_ns == short_ckpt
    assert run_starts(long) == 3 and (long / "log.txt").read_text().count("resumed from") == 2


def test_two_concurrent_sweeps_train_every_run_once_and_record_no_failure(tmp_path, monkeypatch, capsys):
    settings = {"lr": {"lrA": {"optim.width_aware_lr": True},  # lrF trains what lrA trains: one run, two names
                       "lrF": {"optim.width_aware_lr": False, "optim.lr": 2e-3}}}
    spec_path = write_spec(tmp_path / "s.yaml", settings=settings, grid={"lr": ["lrA", "lrF"]}, seeds=2)
    runs = load_spec(spec_path, runs_dir=tmp_path / "runs").runs
    assert len(runs) == 2
    sweeps = [gatscale("sweep", str(spec_path), "--max-parallel", "2", cwd=tmp_path) for _ in range(2)]
    outs = [s.communicate(timeout=400)[0] for s in sweeps]
    assert [s.returncode for s in sweeps] == [0, 0], outs
    for r in runs:
        assert read_status(r.run_dir)["status"] == "finished" and run_starts(r.run_dir) == 1, outs
        assert json.loads((r.run_dir / "sweep.json").read_text())["failures"] == [], outs
    # no alias folder
    assert sorted(p.name for p in (tmp_path / "runs" / "t").iterdir()) == sorted(r.name for r in runs)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert gatscale_main(["sweep", str(spec_path)]) == 0
    assert "nothing to launch" in capsys.readouterr().out


def test_submitit_local_executor_runs_two_tiny_runs(tmp_path, monkeypatch, capsys):
    spec_path = two_run_spec(tmp_path / "s.yaml")
    monkeypatch.chdir(tmp_path)
    assert gatscale_main(["sweep", str(spec_path), "--backend", "submitit", "--cluster", "local", "--wait"]) == 0
    runs = load_spec(spec_path, runs_dir=tmp_path / "runs").runs
    assert [read_status(r.run_dir)["status"] for r in runs] == ["finished", "finished"]
    jobs = [json.loads((r.run_dir / "sweep.json").read_text())["jobs"][-1] for r in runs]
    assert {j["cluster"] for j in jobs} == {"local"} and len({j["job_id"] for j in jobs}) == 2
    assert all((tmp_path / "runs" / "t" / ".submitit").glob("*/*")), "job logs in <study>/.submitit/<timestamp>/"
    capsys.readouterr()
    assert gatscale_main(["status", str(spec_path)]) == 0
    table = capsys.readouterr().out
    assert all(j["job_id"] in table for j in jobs) and table.count("finished") >= 2


def test_ray_local_cluster_runs_two_tiny_runs(tmp_path):
    spec_path = two_run_spec(tmp_path / "s.yaml")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run([sys.executable, "-m", "gatscale.cli", "sweep", str(spec_path), "--backend", "ray",
                             "--max-parallel", "2"], cwd=tmp_path, timeout=300, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = load_spec(spec_path, runs_dir=tmp_path / "runs").runs
    assert [read_status(r.run_dir)["status"] for r in runs] == ["finished", "finished"]
