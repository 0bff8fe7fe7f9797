"""The local SLURM cluster for tests, small jobs to run on it, and tiny sweeps to submit to it.

`slurm_cluster` never installs or starts anything: `slurm/testing/local-cluster.sh up` does (so does
.ci/run). Without a usable cluster every test that takes the fixture skips with the reason.
Job functions live here and are pickled by value, so a job needs no import of the tests folder.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import cloudpickle
import pytest
import submitit
import yaml

from gatscale.sweep.record import read_record
from train_fixtures import REPO, tiny_run_dict  # noqa: F401  (REPO re-exported for the SLURM tests)

SLURM_DIR = Path(os.environ.get("GATSCALE_SLURM_DIR", "/tmp/gatscale-slurm"))
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                "BOOT_FAIL", "DEADLINE"}

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def run(*cmd: str, timeout: float = 30) -> str:
    """Run a SLURM command; raise with its stderr if it fails."""
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {out.returncode}: {out.stderr.strip()}")
    return out.stdout


def sbatch(*args: str, env=None) -> str:
    """Submit with sbatch; the job id."""
    out = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def cluster_problem() -> str | None:
    """Why the cluster is not usable, or None when sinfo shows a usable node and sacct answers."""
    try:
        run("sacct", "-n", "-X", "--starttime=now", timeout=15)  # fails at once when slurmdbd is down
        states = run("sinfo", "-h", "-o", "%t", timeout=15).split()  # retries ~10 s when slurmctld is down
    except FileNotFoundError as e:
        return f"SLURM client not installed ({e.filename})"
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    if not any(s.rstrip("*") in ("idle", "mix", "alloc", "comp") for s in states):
        return f"no usable node (sinfo states: {' '.join(states) or 'none'})"
    return None


@pytest.fixture(scope="session")
def slurm_cluster():
    """The running local cluster (SLURM_CONF pointed at it for this session), or skip."""
    conf = SLURM_DIR / "etc" / "slurm.conf"
    old = os.environ.get("SLURM_CONF")
    if old is None and conf.exists():
        os.environ["SLURM_CONF"] = str(conf)
    problem = cluster_problem()
    if problem:
        _restore("SLURM_CONF", old)
        pytest.skip(f"local SLURM cluster not usable: {problem}; start it with slurm/testing/local-cluster.sh up")
    yield os.environ.get("SLURM_CONF")
    _restore("SLURM_CONF", old)


def _restore(name, value):
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


# ---------------------------------------------------------------------------------------------
# Watching jobs

def sacct_field(job_id: str, field: str) -> str:
    """One field of the job's allocation in the accounting database ('' while sacct does not know it yet)."""
    lines = run("sacct", "-n", "-X", "-P", "-j", job_id, "-o", field).splitlines()
    return lines[-1].strip() if lines else ""


def sacct_state(job_id: str) -> str:
    """The job's state, e.g. 'CANCELLED' of 'CANCELLED by 0' ('' while sacct does not know the job yet)."""
    state = sacct_field(job_id, "State")
    return state.split()[0] if state else ""


def scontrol_field(job_id: str, field: str) -> str:
    for token in run("scontrol", "show", "job", job_id).split():
        if token.startswith(field + "="):
            return token.split("=", 1)[1]
    return ""


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll until predicate() is truthy; fail the test naming `what` after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"{what}: not reached within {timeout:.0f} s")


def wait_final(job_id: str, timeout: float) -> str:
    return wait_for(lambda: (s := sacct_state(job_id)) in FINAL_STATES and s, timeout, f"job {job_id} ends")


# ---------------------------------------------------------------------------------------------
# Job functions (pickled by value)

def square(x: int) -> int:
    return x * x


class Countdown(submitit.helpers.Checkpointable):
    """Counts `steps` ticks of 0.1 s; on a signal, submitit checkpoints the ticks done so far.

    Returns (ticks done when this run started, SLURM_RESTART_COUNT), so a test sees both whether
    the saved state came back and how often SLURM restarted the job.
    """

    def __init__(self):
        self.done = 0

    def __call__(self, started_file: str, steps: int, done: int = 0):
        Path(started_file).write_text(f"{done}\n")
        start = self.done = done
        while self.done < steps:
            time.sleep(0.1)
            self.done += 1
        return start, int(os.environ.get("SLURM_RESTART_COUNT", 0))

    def checkpoint(self, started_file: str, steps: int, done: int = 0):
        return submitit.helpers.DelayedSubmission(Countdown(), started_file, steps, self.done)


# ---------------------------------------------------------------------------------------------
# Sweeps on the cluster

@pytest.fixture
def study(slurm_cluster):
    """A fresh study name; it is also the SLURM job name of the study's jobs, all cancelled at the end."""
    name = f"slurm-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["scancel", f"--name={name}"], capture_output=True, timeout=30)


def slurm_spec(folder: Path, name: str, train: dict | None = None, tracking: dict | None = None,
               profile: str | Path = "local-test", **spec) -> Path:
    """folder/spec.yaml: tiny runs (tests/train_fixtures.py) on a cluster profile, run folders in folder/runs."""
    base = tiny_run_dict(train=train or {})
    if tracking:
        base["tracking"] = tracking
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": base, "profile": str(profile),
                                    "runs_dir": str(folder / "runs"), **spec}))
    return path


def job_records(run_dir: Path) -> list[dict]:
    """The jobs the sweep submitted for a run (sweep.json), oldest first."""
    return read_record(run_dir).get("jobs") or []


def log_count(run_dir: Path, text: str) -> int:
    log = run_dir / "log.txt"
    return log.read_text().count(text) if log.exists() else 0
