"""The MLflow tracker against a real `mlflow server` process and the embedded SQLite store."""
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from unittest import mock

import mlflow
import pytest
from mlflow import MlflowClient

from analysis.load import folder_history
from gatscale.cli import main as gatscale_main
from gatscale.core.config import RunConfig, TrackingConfig, flatten, to_dict
from gatscale.tracking import end_sweep_run, ensure_store, find_runs, log_after_run, start_sweep_run
from gatscale.tracking.base import FolderTracker
from gatscale.tracking.labels import code_version, job_id, valid_name
from gatscale.tracking.metrics_log import MetricsLog, metric_histories, rewind
from gatscale.tracking.mlflow_tracker import MlflowTracker

REPO = Path(__file__).resolve().parents[1]
KEYS = [f"loss/part{i}" for i in range(15)]  # ~15 metrics per logged step, as the trainer logs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 with a SQLite backend, stopped with SIGTERM to its pid's group."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 180):
        mlflow_bin = Path(sys.executable).with_name("mlflow")
        cmd = [str(mlflow_bin if mlflow_bin.exists() else shutil.which("mlflow")), "server", "--workers", "1",
               "--host", "127.0.0.1", "--port", str(self.port),
               "--backend-store-uri", f"sqlite:///{self.folder}/server.db",
               "--artifacts-destination", str(self.folder / "artifacts")]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.folder / "server.log", "ab") as log_file:
            self.proc = subprocess.Popen(cmd, cwd=self.folder, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mlflow server exited:\n" + (self.folder / "server.log").read_text()[-3000:])
            try:
                urllib.request.urlopen(self.uri + "/health", timeout=2).read()
                return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer in {timeout} s")

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    srv.start()
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory):
    return ensure_store(f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db")


@pytest.fixture(params=["sqlite", pytest.param("server", marks=pytest.mark.slow)])
def store_uri(request):
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_uri")
    return request.getfixturevalue("server").uri


@pytest.fixture
def experiment(request):
    return request.node.name.replace("[", "-").rstrip("]")


def tracker(uri, experiment, parent=None, **kw) -> MlflowTracker:
    """finish_timeout: a loaded machine may take 30 s to start a sender process (finish returns once delivered)."""
    kw.setdefault("flush_interval", 0.2)
    kw.setdefault("finish_timeout", 120)
    return MlflowTracker(TrackingConfig(uri=uri, experiment=experiment, parent_run_id=parent), **kw)


def log_steps(t, steps):
    for step in steps:
        t.log_metrics({k: step + i / 100 for i, k in enumerate(KEYS)}, step)


def git(*args, check=True):
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=check)
    return done.stdout.strip() if check else done


def history_steps(uri, run_id, key=KEYS[0]) -> list[int]:
    """The steps the store holds. The read-back is the test's, not the tracker's: the trackers started in this process
    set MLflow's HTTP client to 15 s and no retries (store.configure_http_client, so a training run never stalls),
    which a loaded CI machine's server can exceed while eight runs have just written; read with patience instead."""
    patient = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "120", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3"}
    with mock.patch.dict(os.environ, patient):
        return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, key))


def search(uri, experiment):
    old = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.search_runs(experiment_names=[experiment])
    finally:
        mlflow.set_tracking_uri(old)


# ---------------------------------------------------------------------------------------------------------
# Against both stores: the embedded SQLite file and a real server.

def test_params_metrics_tags_and_artifacts_land(store_uri, experiment, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    params = flatten(to_dict(RunConfig()))
    head_before = git("rev-parse", "HEAD")  # other engineers commit to this checkout meanwhile
    code_version.cache_clear()  # computed once per process: this one has run other tests
    t = tracker(store_uri, experiment)
    t.start(tmp_path / "run", "gat-s2", params, {"gatscale.config_hash": "abc123"})
    log_steps(t, range(30))
    (tmp_path / "run" / "final.json").write_text("{}")
    t.log_artifact(tmp_path / "run" / "final.json", "eval")
    t.set_tags({"gatscale.stand_in": "encoder"})
    t.finish("finished")

    row = search(store_uri, experiment).iloc[0]
    assert row["run_id"] == t.run_id and row["status"] == "FINISHED"
    assert all(row[f"params.{k}"] == str(v) for k, v in params.items())
    assert row["tags.gatscale.status"] == "finished" and row["tags.gatscale.config_hash"] == "abc123"
    commit = row["tags.gatscale.git_commit"]
    assert git("merge-base", "--is-ancestor", head_before, commit, check=False).returncode == 0
    assert git("merge-base", "--is-ancestor", commit, "HEAD", check=False).returncode == 0
    assert row["tags.gatscale.git_dirty"] in ("true", "false") and row["tags.gatscale.job_id"] == "4242_7"
    assert row["tags.gatscale.run_dir"] == str(tmp_path / "run") and row["tags.gatscale.stand_in"] == "encoder"
    history = MlflowClient(store_uri).get_metric_history(t.run_id, "loss/part3")
    assert sorted((m.step, m.value) for m in history) == [(s, s + 0.03) for s in range(30)]
    assert [a.path for a in MlflowClient(store_uri).list_artifacts(t.run_id, "eval")] == ["eval/final.json"]
    kept = [r for _, r in MetricsLog(tmp_path / "run").read() if "metrics" in r]  # delivered, and still in the folder
    assert [r["step"] for r in kept] == list(range(30)) and kept[3]["metrics"]["loss/part3"] == 3.03


def test_requeued_run_continues_the_same_run(store_uri, experiment, tmp_path):
    first = tracker(store_uri, experiment)
    first.start(tmp_path / "run", "r", {"a": 1}, {})
    log_steps(first, range(10))
    first.finish("preempted")
    assert MlflowClient(store_uri).get_run(first.run_id).info.status == "KILLED"

    again = tracker(store_uri, experiment)  # after the requeue: a new object, the same folder
    again.start(tmp_path / "run", "r", {"a": 1}, {})
    log_steps(again, range(10, 20))
    again.finish("finished")

    assert again.run_id == first.run_id
    assert all(history_steps(store_uri, first.run_id, k) == list(range(20)) for k in KEYS)
    run = MlflowClient(store_uri).get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["gatscale.status"] == "finished"
    assert len(search(store_uri, experiment)) == 1


def test_a_run_that_starts_over_from_step_0_gets_a_new_tracker_run_without_the_lost_steps(sqlite_uri, experiment,
                                                                                         tmp_path):
    """A run killed before its first checkpoint trains again from step 0 (trainer.py): its rewind record replaces the
    tracker run, so MLflow never shows the lost attempt's steps 0-7 and the new 0-3 as one curve."""
    lost = tracker(sqlite_uri, experiment)
    lost.start(tmp_path / "run", "r", {"a": 1}, {})
    log_steps(lost, range(8))
    lost.finish("failed")  # delivered, as the live sender would have done before the kill
    lost_id = lost.run_id

    rewind(tmp_path / "run", 0)
    again = tracker(sqlite_uri, experiment)
    again.start(tmp_path / "run", "r", {"a": 1}, {})
    log_steps(again, range(4))
    again.finish("finished")

    assert again.run_id != lost_id
    assert all(history_steps(sqlite_uri, again.run_id, k) == list(range(4)) for k in KEYS)
    client = MlflowClient(sqlite_uri)
    assert client.get_run(again.run_id).data.params == {"a": "1"}
    old = client.get_run(lost_id)  # kept in MLflow's trash, out of the UI and every search
    assert old.info.lifecycle_stage == "deleted" and "no checkpoint" in old.data.tags["gatscale.superseded"]
    assert search(sqlite_uri, experiment)["run_id"].tolist() == [again.run_id]
    assert folder_history(tmp_path / "run", "r").query("metric == @KEYS[0]")["step"].tolist() == list(range(4))


def test_nested_runs_under_a_sweep_parent(store_uri, experiment, tmp_path):
    cfg = TrackingConfig(uri=store_uri, experiment=experiment)
    parent = start_sweep_run(cfg, "lr-sweep", "spec01", {"grid.lr": "[1e-4, 2e-4]"})
    assert start_sweep_run(cfg, "lr-sweep", "spec01", {"grid.lr": "[1e-4, 2e-4]"}) == parent  # re-launch
    for i, status in enumerate(["finished", "diverged"]):
        t = tracker(store_uri, experiment, parent=parent)
        t.start(tmp_path / f"run{i}", f"run{i}", {"optim.lr": i}, {"gatscale.config_hash": f"h{i}"})
        log_steps(t, range(5 * i + 3))
        t.finish(status)
    end_sweep_run(cfg, parent, "finished")

    runs = find_runs(cfg, {"parent_run_id": parent}).sort_values("name")
    assert list(runs["status"]) == ["finished", "diverged"] and list(runs["config_hash"]) == ["h0", "h1"]
    assert list(runs["last_step"]) == [2, 7] and list(runs["mlflow_status"]) == ["FINISHED", "FAILED"]
    assert list(find_runs(cfg, {"config_hash": "h1"})["name"]) == ["run1"]
    sweep = find_runs(cfg, {"kind": "sweep"})
    assert list(sweep["run_id"]) == [parent] and list(sweep["mlflow_status"]) == ["FINISHED"]


# ---------------------------------------------------------------------------------------------------------
# A real server stopped and restarted; many runs at once.

@pytest.mark.slow
def test_server_restart_mid_run_loses_and_duplicates_nothing(server, experiment, tmp_path):
    t = tracker(server.uri, experiment, max_backoff=1.0)
    t.start(tmp_path / "run", "r", {}, {})
    log_steps(t, range(20))
    server.stop()
    slowest = 0.0
    for step in range(20, 40):
        begin = time.perf_counter()
        log_steps(t, [step])
        slowest = max(slowest, time.perf_counter() - begin)
        time.sleep(0.02)
    server.start()
    log_steps(t, range(40, 60))
    t.finish("finished")
    assert slowest < 0.1  # logging never waited for the dead server
    assert all(history_steps(server.uri, t.run_id, k) == list(range(60)) for k in KEYS)
    assert MetricsLog(tmp_path / "run").load_state()["delivered"] == MetricsLog(tmp_path / "run").size()


@pytest.mark.slow
def test_a_killed_sender_process_is_restarted_and_nothing_is_lost(sqlite_uri, experiment, tmp_path):
    t = tracker(sqlite_uri, experiment)
    t.sender_check_ms = 0  # check at every call (default: every 30 s)
    t.start(tmp_path / "run", "r", {}, {})
    log_steps(t, range(10))
    first = t._proc
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    log_steps(t, range(10, 20))
    t.finish("finished")
    assert t._proc is not first and t._proc.returncode == 0
    assert all(history_steps(sqlite_uri, t.run_id, k) == list(range(20)) for k in KEYS)


@pytest.mark.slow
def test_sync_replays_a_buffer_left_while_the_server_was_unreachable(server, experiment, tmp_path):
    t = tracker(f"http://127.0.0.1:{free_port()}", experiment, finish_timeout=1.0)  # nothing there
    t.start(tmp_path / "run", "offline", {"a": 1}, {})
    log_steps(t, range(25))
    t.finish("finished")
    assert t.run_id is None
    assert gatscale_main(["sync", str(tmp_path / "run"), "--uri", server.uri]) == 0  # the server's real address
    assert gatscale_main(["sync", str(tmp_path / "run")]) == 0  # a second replay adds nothing
    run_id = json.loads((tmp_path / "run" / "tracking.json").read_text())["run_id"]
    assert all(history_steps(server.uri, run_id, k) == list(range(25)) for k in KEYS)
    run = MlflowClient(server.uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"a": "1"} and run.info.run_name == "offline"
    assert run.data.tags["gatscale.status"] == "finished"


@pytest.mark.slow
def test_eight_runs_logging_at_once_to_one_server_lose_nothing(server, experiment, tmp_path):
    trackers = [tracker(server.uri, experiment) for _ in range(8)]

    def run(i):
        trackers[i].start(tmp_path / f"run{i}", f"run{i}", {"i": i}, {})
        log_steps(trackers[i], range(40))
        trackers[i].finish("finished")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    [th.start() for th in threads]
    [th.join() for th in threads]
    assert len({t.run_id for t in trackers}) == 8
    assert all(history_steps(server.uri, t.run_id, k) == list(range(40)) for t in trackers for k in KEYS)


def _process_run(uri, experiment, run_dir, barrier):
    barrier.wait()  # all eight meet a fresh file at the same moment
    ensure_store(uri)
    t = tracker(uri, experiment)
    t.start(run_dir, run_dir.name, {"dir": run_dir.name}, {})
    log_steps(t, range(20))
    t.finish("finished")


@pytest.mark.slow
def test_eight_processes_create_a_fresh_sqlite_store_and_log_at_once(experiment, tmp_path):
    uri = f"sqlite:///{tmp_path}/fresh/mlflow.db"
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(8)
    procs = [ctx.Process(target=_process_run, args=(uri, experiment, tmp_path / f"run{i}", barrier))
             for i in range(8)]
    [p.start() for p in procs]
    [p.join(300) for p in procs]
    assert [p.exitcode for p in procs] == [0] * 8
    runs = find_runs(TrackingConfig(uri=uri, experiment=experiment))
    assert len(runs) == 8 and set(runs["status"]) == {"finished"}
    assert all(history_steps(uri, r, k) == list(range(20)) for r in runs["run_id"] for k in KEYS)


def test_an_old_sqlite_schema_is_migrated(sqlite_uri, tmp_path):
    from alembic import command
    from mlflow.store.db import utils as db_utils

    old = tmp_path / "old.db"
    shutil.copy(sqlite_uri[len("sqlite:///"):], old)
    uri = f"sqlite:///{old}"
    with db_utils.create_sqlalchemy_engine_with_retry(uri).begin() as connection:
        config = db_utils._get_alembic_config(uri)
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")  # as written by an older MLflow
    with pytest.raises(Exception, match="out-of-date database schema"):
        db_utils._verify_schema(db_utils.create_sqlalchemy_engine_with_retry(uri))
    ensure_store(uri)
    db_utils._verify_schema(db_utils.create_sqlalchemy_engine_with_retry(uri))
    assert MlflowClient(uri).get_experiment_by_name("Default") is not None


# ---------------------------------------------------------------------------------------------------------
# The buffer: replay, crashes, outages.

def test_replay_after_a_crash_between_acceptance_and_offset_save_adds_no_duplicates(sqlite_uri, experiment,
                                                                                    tmp_path):
    t = tracker(sqlite_uri, experiment)
    t.start(tmp_path / "run", "r", {}, {})
    log_steps(t, range(10))
    t.finish("running")  # everything delivered; now pretend the last delivery was not recorded
    record = MetricsLog(tmp_path / "run")
    record.append({"t": 1, "step": 10, "metrics": {KEYS[0]: 1.0}})
    state = record.load_state()
    from gatscale.tracking.sync import deliver
    deliver(MlflowClient(sqlite_uri), record)
    record.save_state(state)  # the process died before tracking.json was updated
    assert gatscale_main(["sync", str(tmp_path / "run")]) == 0
    assert history_steps(sqlite_uri, t.run_id) == list(range(11))


def test_logging_and_finish_do_not_wait_for_an_unreachable_server(experiment, tmp_path, caplog):
    t = tracker(f"http://127.0.0.1:{free_port()}", experiment, finish_timeout=1.0)
    with caplog.at_level(logging.WARNING):
        t.start(tmp_path / "run", "r", {"a": 1}, {})
        begin = time.monotonic()
        log_steps(t, range(200))
        assert time.monotonic() - begin < 1.0
        t.log_artifact(tmp_path / "missing.png")
        t.finish("preempted")
    assert time.monotonic() - begin < 8  # finish waits at most finish_timeout + 5 s for the sender
    assert "gatscale sync" in caplog.text
    records = MetricsLog(tmp_path / "run").read(0)
    assert sum(1 for _, r in records if "metrics" in r) == 200
    assert records[-1][1]["status"] == "KILLED"


def test_damaged_records_are_skipped_and_the_next_ones_kept(sqlite_uri, experiment, tmp_path, caplog):
    run_dir = tmp_path / "run"
    t = tracker(sqlite_uri, experiment)
    t.start(run_dir, "r", {}, {})
    t.finish("preempted")
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"t": 5, "metrics": {"loss/part0": 1.0}}\n')  # no step: cannot be sent, must not block the rest
        f.write('{"t": 5, "step": 0, "metr')  # the process was killed mid-write
    again = tracker(sqlite_uri, experiment)
    with caplog.at_level(logging.WARNING):
        again.start(run_dir, "r", {}, {})
        log_steps(again, range(3))
        again.finish("finished")
    assert "damaged line" in caplog.text and "malformed record" in caplog.text
    assert history_steps(sqlite_uri, t.run_id) == [0, 1, 2]


def test_a_failed_artifact_upload_is_retried_and_does_not_hold_back_the_metrics(sqlite_uri, experiment, tmp_path,
                                                                              monkeypatch):
    calls = []
    real = MlflowClient.log_artifact

    def flaky(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise OSError("artifact store full")
        return real(self, *args, **kwargs)

    t = tracker(sqlite_uri, experiment)
    t.start(tmp_path / "run", "r", {}, {})
    t.finish("running")
    monkeypatch.setattr(MlflowClient, "log_artifact", flaky)  # in this process: the delivery of log_after_run
    (tmp_path / "grid.png").write_bytes(b"png")
    left = log_after_run(tmp_path / "run", artifact=tmp_path / "grid.png", artifact_path="samples")
    left += log_after_run(tmp_path / "run", {KEYS[0]: 1.0}, step=7)
    assert left == 0 and len(calls) == 2
    assert [a.path for a in MlflowClient(sqlite_uri).list_artifacts(t.run_id, "samples")] == ["samples/grid.png"]
    assert history_steps(sqlite_uri, t.run_id) == [7]


def test_metric_histories_drop_what_a_rewind_supersedes_keep_a_relogged_steps_later_value_and_skip_a_torn_line(
        tmp_path):
    """The one reader of metrics.jsonl's curves (analysis.load and the sweep's findings both call it)."""
    record = MetricsLog(tmp_path)
    for step, value in [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]:  # an attempt killed after step 4, last checkpoint 2
        record.append({"step": step, "metrics": {"loss/d": value, "fid": 10 * value}})
    rewind(tmp_path, 2)
    record.append({"step": 2, "metrics": {"loss/d": 2.5}})  # re-logged by the resumed attempt
    record.append({"step": 3, "metrics": {"loss/d": 3.5}})
    record.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "metrics": {"loss/d": 5')  # a write a kill cut short
    assert metric_histories(tmp_path) == {"loss/d": {1: 1.0, 2: 2.5, 3: 3.5}, "fid": {1: 10.0, 2: 20.0}}
    assert metric_histories(tmp_path, ["fid"]) == {"fid": {1: 10.0, 2: 20.0}}
    assert folder_history(tmp_path, "r").query("metric == 'loss/d'")["value"].tolist() == [1.0, 2.5, 3.5]
    MetricsLog(tmp_path).append({"step": 4, "metrics": {"loss/d": 4.5}})  # the next writer ends the torn line first
    assert metric_histories(tmp_path)["loss/d"] == {1: 1.0, 2: 2.5, 3: 3.5, 4: 4.5}


def test_backend_none_keeps_the_whole_record_in_the_run_folder(tmp_path):
    from gatscale.tracking import build_tracker
    t = build_tracker(TrackingConfig(backend="none"))
    t.start(tmp_path, "r", {"optim.lr": 2e-4}, {"gatscale.config_hash": "abc"})
    log_steps(t, range(3))
    t.finish("preempted")
    records = [r for _, r in MetricsLog(tmp_path).read()]
    assert isinstance(t, FolderTracker) and not (tmp_path / "tracking.json").exists()
    assert records[0]["tags"]["gatscale.config_hash"] == "abc" and records[1] == {"params": {"optim.lr": "0.0002"}}
    assert [r["step"] for r in records if "metrics" in r] == [0, 1, 2] and records[-1]["status"] == "KILLED"


# ---------------------------------------------------------------------------------------------------------
# Labels.

def test_names_and_values_are_made_valid_for_mlflow(sqlite_uri, experiment, tmp_path):
    t = tracker(sqlite_uri, experiment)
    t.start(tmp_path / "run", "r", {"model.generator.size": "GAT-S/2", "notes!": "x" * 7000}, {"a/../b": "1"})
    t.log_metrics({"grad_norm/g[0]": 1.0}, 0)
    t.finish("finished")
    run = MlflowClient(sqlite_uri).get_run(t.run_id)
    assert run.data.params["model.generator.size"] == "GAT-S/2" and len(run.data.params["notes_"]) == 6000
    assert run.data.tags["a/_/b"] == "1" and run.data.metrics == {"grad_norm/g_0_": 1.0}
    assert valid_name("loss/d") == "loss/d"


def test_system_metrics_are_sampled_into_the_run(sqlite_uri, experiment, tmp_path):
    t = MlflowTracker(TrackingConfig(uri=sqlite_uri, experiment=experiment, system_metrics=True),
                      system_metrics_interval=0.1, finish_timeout=120)
    t.start(tmp_path / "run", "r", {}, {})
    log_steps(t, range(3))
    key = "system/cpu_utilization_percentage"
    deadline = time.monotonic() + 60  # the sender samples at the last step it has delivered, once it runs
    while sum(key in r.get("metrics", {}) and r["step"] == 2 for _, r in t.log.read()) < 2:
        assert time.monotonic() < deadline, "no system metrics sampled at step 2 in 60 s"
        time.sleep(0.1)
    t.finish("finished")
    history = MlflowClient(sqlite_uri).get_metric_history(t.run_id, key)
    assert sum(m.step == 2 for m in history) >= 2 and {m.step for m in history} <= {0, 2}
    assert all(0 <= m.value <= 100 for m in history)


def test_job_id_prefers_explicit_then_slurm(monkeypatch):
    for var in ("GATSCALE_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    assert job_id().startswith("local-")
    monkeypatch.setenv("SLURM_JOB_ID", "99")
    assert job_id() == "99"
    monkeypatch.setenv("GATSCALE_JOB_ID", "trial_00001")
    assert job_id() == "trial_00001"


def test_finish_rejects_an_unknown_status(sqlite_uri, experiment, tmp_path):
    t = tracker(sqlite_uri, experiment)
    t.start(tmp_path / "run", "r", {}, {})
    with pytest.raises(ValueError, match="'done'.*finished"):
        t.finish("done")
    t.finish("finished")
