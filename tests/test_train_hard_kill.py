"""A run SIGKILLed anywhere (an OOM kill, a node failure: no handler runs) resumes with `gatscale train --run-dir R`
and finishes as if it had never been killed: before its first checkpoint (from step 0: nothing was saved), during
the first checkpoint's write, between later ones. Its final checkpoint is bitwise the uninterrupted run's, and its
curves hold each step once, from the attempt that went on (docs/design.md, Resume)."""
import json
import signal
import subprocess
import sys

import pytest

from analysis.load import folder_history
from gatscale.cli import main as gatscale_main
from gatscale.train.checkpoint import list_checkpoints, load_checkpoint
from gatscale.train.status import read_status
from gatscale.train.trainer import train
from train_fixtures import REPO, assert_bitwise_equal, tiny_config, write_config

TRAIN = {"iterations": 20, "checkpoint_every": 10, "log_every": 2, "keep_checkpoints": 3}


def hard_kill(point: str, step: int, run_dir):
    """`gatscale train` of the TRAIN config in a subprocess that SIGKILLs itself at `point` of `step` (hard_kill.py)."""
    config = write_config(run_dir.parent / f"{run_dir.name}.yaml", train=TRAIN)
    cmd = [sys.executable, str(REPO / "tests" / "hard_kill.py"), point, str(step), "train", str(config),
           "--run-dir", str(run_dir)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr


def resume(run_dir, capsys) -> str:
    """`gatscale train --run-dir R`, as after any kill; its output."""
    capsys.readouterr()
    code = gatscale_main(["train", "--run-dir", str(run_dir)])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert read_status(run_dir)["status"] == "finished"
    return out.out + out.err


def curves(run_dir):
    """What analysis plots: one value per (metric, step); perf/ timings differ between any two runs."""
    h = folder_history(run_dir, "r")
    return h[~h["metric"].str.startswith("perf/")].set_index(["metric", "step"])["value"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert train(tiny_config(train=TRAIN), run_dir).status == "finished"
    return run_dir


def assert_as_if_never_killed(run_dir, reference):
    a, b = (load_checkpoint(list_checkpoints(d)[-1]) for d in (reference, run_dir))
    assert a["step"] == b["step"] == TRAIN["iterations"]
    assert_bitwise_equal(a, b)
    got, want = curves(run_dir), curves(reference)
    assert got.index.equals(want.index) and got.to_numpy() == pytest.approx(want.to_numpy(), rel=1e-6)


def test_killed_before_its_first_checkpoint_it_starts_from_step_0_and_the_curves_drop_the_lost_steps(
        reference, tmp_path, capsys):
    run_dir = tmp_path / "run"
    hard_kill("log", 8, run_dir)
    assert not list_checkpoints(run_dir) and read_status(run_dir)["checkpoint_step"] == 0

    # the restart is killed again, earlier: the curve must not join its steps 2-4 to the first attempt's 6-8
    hard_kill("log", 4, run_dir)
    assert curves(run_dir).xs("loss/d").index.tolist() == [2, 4]

    out = resume(run_dir, capsys)
    assert "no checkpoint had been written yet; starting from step 0" in out
    assert_as_if_never_killed(run_dir, reference)


def test_killed_while_writing_its_first_checkpoint_it_starts_from_step_0(reference, tmp_path, capsys):
    run_dir = tmp_path / "run"
    hard_kill("write", 10, run_dir)
    partial = list((run_dir / "checkpoints").glob(".ckpt-0000010.pt.*.tmp"))
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < 10_000  # killed halfway through the write
    assert not list_checkpoints(run_dir) and read_status(run_dir)["checkpoint_step"] == 0

    out = resume(run_dir, capsys)
    assert "no checkpoint had been written yet; starting from step 0" in out
    assert "a checkpoint write that was killed" in out
    assert_as_if_never_killed(run_dir, reference)


@pytest.mark.parametrize("point, step", [("log", 14), ("write", 20)])
def test_killed_after_a_checkpoint_it_resumes_from_that_checkpoint(reference, tmp_path, capsys, point, step):
    run_dir = tmp_path / "run"
    hard_kill(point, step, run_dir)
    assert [p.name for p in list_checkpoints(run_dir)] == ["ckpt-0000010.pt"]
    assert read_status(run_dir)["checkpoint_step"] == 10

    out = resume(run_dir, capsys)
    assert "ckpt-0000010.pt (step 10)" in out and "no checkpoint had been written" not in out
    assert_as_if_never_killed(run_dir, reference)
    records = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    assert [r["rewind"] for r in records if "rewind" in r] == [10]


def test_a_sweep_relaunches_a_run_hard_killed_before_its_first_checkpoint_and_it_finishes(tmp_path, monkeypatch,
                                                                                           capsys):
    from gatscale.sweep.backends import local
    from gatscale.sweep.record import read_record
    from gatscale.sweep.spec import load_spec
    from sweep_fixtures import run_starts, tiny_run_dict, write_spec

    spec = write_spec(tmp_path / "s.yaml", text=json.dumps({"name": "t", "base": tiny_run_dict(train=TRAIN)}))
    (run,) = load_spec(spec, runs_dir=tmp_path / "runs").runs
    launches, command = [], local.train_command

    def first_launch_killed(r):  # [python, -m, gatscale.cli, train, ...] -> [python, hard_kill.py, log, 6, train, ...]
        launches.append(r.name)
        cmd = command(r)
        return cmd if len(launches) > 1 else [cmd[0], str(REPO / "tests" / "hard_kill.py"), "log", "6", *cmd[3:]]
    monkeypatch.setattr(local, "train_command", first_launch_killed)
    monkeypatch.chdir(tmp_path)

    assert gatscale_main(["sweep", str(spec)]) == 0, capsys.readouterr()
    assert len(launches) == 2 and run_starts(run.run_dir) == 2 and len(read_record(run.run_dir)["failures"]) == 1
    status = read_status(run.run_dir)
    assert (status["status"], status["step"], status["checkpoint_step"]) == ("finished", 20, 20)
    assert "no checkpoint had been written yet; starting from step 0" in (run.run_dir / "log.txt").read_text()
    assert curves(run.run_dir).xs("loss/d").index.tolist() == list(range(2, 21, 2))
