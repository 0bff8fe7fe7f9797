"""What gatscale promises about a run folder (docs/design.md): checkpoints validated, never a silent restart,
pruning that keeps the new checkpoint, stale temporaries removed, early signals, disk-full by its meaning."""
import contextlib
import errno
import json
import os
import pathlib
import shutil
import signal

import pytest
import torch

from gatscale.cli import main as gatscale_main
from gatscale.train import checkpoint as ckpt_module
from gatscale.train.checkpoint import (
    CheckpointInvalid,
    CheckpointSaveError,
    list_checkpoints,
    load_checkpoint,
    read_valid,
    save_checkpoint,
    validate_checkpoint,
)
from gatscale.train.status import EXIT_PREEMPTED, read_status, write_status
from gatscale.train.trainer import CheckpointsUnusable, train
from train_fixtures import assert_bitwise_equal, gatscale_train, tiny_config, wait_for, write_config

EVERY4 = {"iterations": 20, "checkpoint_every": 4, "keep_checkpoints": 10}


class Recorder:
    """A tracker that keeps its tags and can send this process a SIGTERM at a given step's log."""
    run_id = None

    def __init__(self, sigterm_at: int | None = None):
        self.tags, self.sigterm_at = {}, sigterm_at

    def start(self, run_dir, name, params, tags): self.tags.update(tags)
    def log_metrics(self, metrics, step):
        if step == self.sigterm_at:
            os.kill(os.getpid(), signal.SIGTERM)
    def log_artifact(self, *a, **k): pass
    def set_tags(self, tags): self.tags.update(tags)
    def finish(self, status): self.status = status


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 20-step run with checkpoints at 4, 8, 12, 16, 20 (all kept)."""
    run_dir = tmp_path_factory.mktemp("reference")
    assert train(tiny_config(train=EVERY4), run_dir).status == "finished"
    return run_dir


def copy_checkpoints(reference, run_dir, steps):
    (run_dir / "checkpoints").mkdir(parents=True)
    for s in steps:
        shutil.copy(reference / "checkpoints" / f"ckpt-{s:07d}.pt", run_dir / "checkpoints")


def folder_listing(run_dir):
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted((run_dir / "checkpoints").rglob("*"))
            if p.is_file()}


# --- validation ---------------------------------------------------------------------------------

def test_the_trainer_checkpoints_exactly_the_training_state_the_checkpoint_module_validates():
    from gatscale.train.checkpoint import TRAINING_STATE
    from gatscale.train.step import build_state
    assert build_state(tiny_config(), torch.device("cpu")).checkpoint.keys == TRAINING_STATE


def test_an_altered_or_incomplete_checkpoint_fails_validation(reference):
    state = read_valid(list_checkpoints(reference)[-1])
    validate_checkpoint(state)
    altered = {**state, "generator": {k: v.clone() for k, v in state["generator"].items()}}
    next(iter(altered["generator"].values())).view(-1)[0] += 1
    with pytest.raises(CheckpointInvalid, match="integrity hash mismatch .*SHA-256"):
        validate_checkpoint(altered)
    with pytest.raises(CheckpointInvalid, match="missing key opt_g"):
        validate_checkpoint({k: v for k, v in state.items() if k != "opt_g"})
    with pytest.raises(CheckpointInvalid, match="missing keys step, config"):
        validate_checkpoint({"w": torch.ones(2)})
    with pytest.raises(CheckpointInvalid, match="missing key integrity"):
        validate_checkpoint({k: v for k, v in state.items() if k != "integrity"})


def test_pruning_never_deletes_the_checkpoint_just_written(tmp_path):
    for step in (8, 12):
        save_checkpoint(tmp_path, step, {"step": step}, keep=2)
    save_checkpoint(tmp_path, 7, {"step": 7}, keep=2)  # e.g. after resuming from 4 past newer checkpoints
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-0000007.pt", "ckpt-0000012.pt"]


# --- resume -------------------------------------------------------------------------------------

def test_unusable_checkpoints_after_one_was_written_are_refused_with_a_line_per_file_and_nothing_deleted(
        reference, tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", train=EVERY4)
    run_dir = tmp_path / "run"
    copy_checkpoints(reference, run_dir, (4, 12, 16))
    folder = run_dir / "checkpoints"
    whole = (folder / "ckpt-0000004.pt").read_bytes()
    (folder / "ckpt-0000004.pt").write_bytes(whole[:len(whole) // 2])  # cut short (a disk that filled, a bad copy)
    (folder / "ckpt-0000008.pt").write_bytes(b"garbage")
    altered = load_checkpoint(folder / "ckpt-0000012.pt")
    next(iter(altered["generator"].values())).view(-1)[0] += 1
    torch.save(altered, folder / "ckpt-0000012.pt")  # its integrity record no longer matches
    torch.save({k: v for k, v in load_checkpoint(folder / "ckpt-0000016.pt").items() if k != "opt_g"},
               folder / "ckpt-0000016.pt")
    torch.save(pathlib.PurePosixPath("x"), folder / "ckpt-0000014.pt")  # a pickled object weights_only refuses
    write_status(run_dir, "preempted", 18, 20, checkpoint_step=16)
    before = folder_listing(run_dir)

    for _ in range(2):  # and again on the next attempt: never a silent restart, never a traceback
        assert gatscale_main(["train", str(config), "--run-dir", str(run_dir)]) == 1
        out, err = capsys.readouterr()
        first, *files = err.strip().splitlines()
        assert first.startswith("gatscale: error:") and "--restart" in first and "backup" in first
        assert dict(line.strip().split(": ", 1) for line in files) == {
            "ckpt-0000014.pt": "not a checkpoint (it holds objects other than tensors and plain containers)",
            "ckpt-0000016.pt": "missing key opt_g (a foreign or incomplete checkpoint)",
            "ckpt-0000012.pt": "integrity hash mismatch (the content does not match the SHA-256 it was written with: "
                               "altered or damaged)",
            "ckpt-0000008.pt": "not a checkpoint (not a file torch.save writes)",
            "ckpt-0000004.pt": "truncated (the archive is cut short)"}
        assert "Traceback" not in out + err and "weights_only" not in out + err and "gatscale: error" not in out
        assert folder_listing(run_dir) == before  # nothing deleted, nothing moved
        status = read_status(run_dir)  # not failed: what it was, and why it cannot go on
        assert (status["status"], status["step"], status["checkpoint_step"]) == ("preempted", 18, 16)
        assert "ckpt-0000004.pt: truncated" in status["attention"] and "\n" not in status["attention"]

    assert gatscale_main(["train", str(config), "--run-dir", str(run_dir), "--restart"]) == 0
    assert read_status(run_dir)["status"] == "finished" and "attention" not in read_status(run_dir)
    assert sorted(p.name for p in (run_dir / "checkpoints" / "rejected").iterdir()) == \
        [f"ckpt-{s:07d}.pt" for s in (4, 8, 12, 14, 16)]


def test_a_run_with_a_checkpoint_on_record_but_none_left_is_refused(tmp_path):
    """The checkpoints were deleted: status.json's checkpoint_step says one was written."""
    (tmp_path / "status.json").write_text(json.dumps({"status": "preempted", "step": 9, "checkpoint_step": 8,
                                                      "iterations": 20}))
    with pytest.raises(CheckpointsUnusable, match="no checkpoint there"):
        train(tiny_config(train=EVERY4), tmp_path)
    status = read_status(tmp_path)
    assert (status["status"], status["step"], status["checkpoint_step"]) == ("preempted", 9, 8) and status["attention"]


def test_a_failure_marks_the_last_record_failed_and_keeps_its_checkpoint_step(tmp_path, monkeypatch):
    class Failing(Recorder):
        def log_metrics(self, metrics, step):
            if step == 10:
                raise RuntimeError("store on fire")

    rec = Failing()
    with pytest.raises(RuntimeError, match="store on fire"):
        train(tiny_config(train=EVERY4), tmp_path, tracker=rec)  # logs every 5 steps: the step-10 log fails
    status = read_status(tmp_path)
    assert (status["status"], status["checkpoint_step"], status["reason"]) == \
        ("failed", 8, "RuntimeError: store on fire")
    assert rec.status == "failed" and rec.tags["gatscale.failure"] == "RuntimeError: store on fire"

    import gatscale.train.trainer as trainer  # a failure before the tracker run opens: the tracker is not touched
    monkeypatch.setattr(trainer, "build_state", lambda *a, **k: (_ for _ in ()).throw(MemoryError("no room")))
    again = Recorder()
    with pytest.raises(MemoryError):
        train(tiny_config(train=EVERY4), tmp_path, tracker=again)
    status = read_status(tmp_path)
    assert (status["status"], status["checkpoint_step"], status["reason"]) == ("failed", 8, "MemoryError: no room")
    assert again.tags == {} and not hasattr(again, "status")


def test_a_finished_run_whose_checkpoints_were_deleted_is_not_reopened(tmp_path):
    """'finished' is what status.json says it is, whether or not its checkpoints are kept."""
    write_status(tmp_path, "finished", 20, 20, checkpoint_step=20)
    assert train(tiny_config(train=EVERY4), tmp_path).status == "finished"
    assert not list_checkpoints(tmp_path) and read_status(tmp_path)["status"] == "finished"


def test_foreign_or_incomplete_newest_checkpoints_fall_back_bitwise(reference, tmp_path):
    copy_checkpoints(reference, tmp_path, (4, 8))
    full = load_checkpoint(reference / "checkpoints" / "ckpt-0000012.pt")
    incomplete = {k: v for k, v in full.items() if k != "opt_g"}
    torch.save(incomplete, tmp_path / "checkpoints" / "ckpt-0000012.pt")
    torch.save({"w": torch.ones(3)}, tmp_path / "checkpoints" / "ckpt-0000016.pt")  # not a gatscale checkpoint
    write_status(tmp_path, "preempted", 16, 20)
    rec = Recorder()

    assert train(tiny_config(train=EVERY4), tmp_path, tracker=rec).status == "finished"
    log = (tmp_path / "log.txt").read_text()
    assert "ckpt-0000016.pt is not usable" in log and "missing key opt_g" in log and "resumed from" in log
    assert "ckpt-0000012.pt skipped" in rec.tags["gatscale.checkpoint_warnings"]
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "rejected").iterdir()) == \
        ["ckpt-0000012.pt", "ckpt-0000016.pt"]
    assert_bitwise_equal(load_checkpoint(list_checkpoints(tmp_path)[-1]),
                         load_checkpoint(list_checkpoints(reference)[-1]))


def test_preemption_after_a_fallback_keeps_its_checkpoint_and_stale_temporaries_go(reference, tmp_path):
    copy_checkpoints(reference, tmp_path, (4,))
    for step in (8, 12):
        (tmp_path / "checkpoints" / f"ckpt-{step:07d}.pt").write_bytes(b"garbage")
    stale = tmp_path / "checkpoints" / ".ckpt-0000016.pt.k3j2x9.tmp"  # a checkpoint write that was killed
    others = [tmp_path / "checkpoints" / "notes.tmp", tmp_path / ".config.yaml.abc.tmp"]
    for p in (stale, *others):
        p.write_bytes(b"x" * 100)
    write_status(tmp_path, "preempted", 12, 20)
    cfg = tiny_config(train={**EVERY4, "keep_checkpoints": 2, "log_every": 1})

    result = train(cfg, tmp_path, tracker=Recorder(sigterm_at=5))
    assert result.status == "preempted" and result.step == 6
    assert not stale.exists() and all(p.exists() for p in others)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-0000004.pt", "ckpt-0000006.pt"]
    assert read_valid(list_checkpoints(tmp_path)[-1])["step"] == read_status(tmp_path)["step"] == 6

    assert train(cfg, tmp_path).status == "finished"
    assert "ckpt-0000006.pt (step 6)" in (tmp_path / "log.txt").read_text()  # resumed from 6, not 0
    assert_bitwise_equal(load_checkpoint(list_checkpoints(tmp_path)[-1]),
                         load_checkpoint(list_checkpoints(reference)[-1]))


# --- signals and disk errors ----------------------------------------------------------------------

def _catches_sigterm(pid: int) -> bool:
    with contextlib.suppress(FileNotFoundError):
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the signal mask from /proc")
def test_sigterm_before_the_first_step_writes_preempted(tmp_path):
    config = write_config(tmp_path / "c.yaml")
    proc = gatscale_train(config, tmp_path / "run")
    wait_for(lambda: _catches_sigterm(proc.pid) or proc.poll() is not None, interval=0.005)
    os.kill(proc.pid, signal.SIGTERM)  # while it still imports torch
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == EXIT_PREEMPTED, out
    status = read_status(tmp_path / "run")
    assert status["status"] == "preempted" and status["step"] == 0 and "before step 1" in status["reason"]


def test_disk_full_during_a_save_is_reported_by_its_meaning(tmp_path, monkeypatch):
    real_open = ckpt_module.atomic_open

    @contextlib.contextmanager
    def full_from_step_10(path, mode="wb"):
        with real_open(path, mode) as f:
            class Full:
                def write(self, data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                def flush(self): f.flush()
            yield f if path.name < "ckpt-0000010.pt" else Full()
    monkeypatch.setattr(ckpt_module, "atomic_open", full_from_step_10)
    cfg = tiny_config(train={"iterations": 20, "checkpoint_every": 5})
    with pytest.raises(CheckpointSaveError):
        train(cfg, tmp_path)
    reason = read_status(tmp_path)["reason"]
    assert reason.startswith("CheckpointSaveError: ENOSPC (No space left on device) writing ") and "GiB free" in reason
    assert "ckpt-0000010.pt" in reason
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["ckpt-0000005.pt"]  # no temporary left
    monkeypatch.undo()
    assert train(cfg, tmp_path).status == "finished" and "(step 5)" in (tmp_path / "log.txt").read_text()
