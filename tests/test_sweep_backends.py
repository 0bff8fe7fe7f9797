"""The backends behind one interface and the scheduler asked in one place (watcher.py); fast: no scheduler needed,
squeue and sacct are stand-ins. (The import graph and its cycles: tests/test_layers.py.)"""
import importlib
import inspect
import subprocess

import pytest

from gatscale.sweep.backends import BACKENDS, watcher
from gatscale.sweep.backends.watcher import UNKNOWN, JobWatcher

JOBS = [{"cluster": "slurm", "job_id": job_id} for job_id in ("11", "12", "13")]


@pytest.mark.parametrize("name", list(BACKENDS))
def test_every_backend_has_the_same_entry_points(name):
    module = importlib.import_module(BACKENDS[name], "gatscale.sweep.backends")
    for entry in ("cannot_start", "launch"):
        assert list(inspect.signature(getattr(module, entry)).parameters) == ["runs", "options"]


@pytest.fixture
def scheduler(monkeypatch):
    """squeue lists jobs 11 (RUNNING) and 12 (PENDING); sacct says 13 TIMEOUT. Records every call."""
    calls, answers = [], {"squeue": "11|RUNNING\n12|PENDING\n", "sacct": "13|TIMEOUT\n"}

    def run(cmd, **kw):
        calls.append(cmd)
        if isinstance(answers[cmd[0]], Exception):
            raise answers[cmd[0]]
        return subprocess.CompletedProcess(cmd, 0, stdout=answers[cmd[0]])
    monkeypatch.setattr(watcher.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(watcher.subprocess, "run", run)
    return calls, answers


def test_one_poll_asks_the_scheduler_once_for_all_jobs(scheduler):
    calls, _ = scheduler
    w = JobWatcher()
    assert w.active(JOBS) == {"11": "RUNNING", "12": "PENDING"}
    assert w.states(JOBS) == {"11": "RUNNING", "12": "PENDING", "13": "TIMEOUT"}
    assert [c[0] for c in calls] == ["squeue", "sacct"] and calls[1][-1] == "13"  # sacct only for the ended job
    w.states(JOBS)
    assert len(calls) == 2  # within the interval: squeue's answer kept; a final state is never asked again


def test_a_failed_poll_reads_unknown_and_backs_off(scheduler, capsys, monkeypatch):
    calls, answers = scheduler
    now = [1000.0]
    monkeypatch.setattr(watcher.time, "monotonic", lambda: now[0])
    answers["squeue"] = subprocess.TimeoutExpired("squeue", 30)
    w = JobWatcher(min_interval_s=60)
    assert w.active(JOBS) == {}  # taken as ended, as without squeue
    assert w.states(JOBS) == {"11": UNKNOWN, "12": UNKNOWN, "13": UNKNOWN}
    assert "squeue failed" in capsys.readouterr().out
    w.states(JOBS + [{"cluster": "slurm", "job_id": "14"}])
    assert [c[0] for c in calls] == ["squeue"]  # backing off: not asked again, the new job is unknown too
    now[0] += 119  # the back-off after one failure: 2 x 60 s
    assert w.active(JOBS) == {} and len(calls) == 1
    now[0] += 1
    answers["squeue"] = "11|RUNNING\n"
    assert w.active(JOBS) == {"11": "RUNNING"} and [c[0] for c in calls] == ["squeue", "squeue"]
