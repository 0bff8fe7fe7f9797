"""The trainer: config errors, atomic checkpoints, bitwise resume, preemption, divergence, DDP."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from gatscale.core.config import ConfigError, config_from_dict, load_config
from gatscale.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from gatscale.train.status import EXIT_PREEMPTED, read_status
from gatscale.train.trainer import train
from train_fixtures import (
    REPO,
    assert_bitwise_equal,
    checkpoint_tensors,
    gatscale_train,
    tiny_config,
    tiny_run_dict,
    wait_for,
    write_config,
)

# --- config -----------------------------------------------------------------------------------

def test_config_errors_name_file_key_and_value(tmp_path):
    bad = tmp_path / "bad.yaml"
    write_config(bad, train={"batch_size": "sixteen"})
    with pytest.raises(ConfigError, match=r"bad\.yaml: train\.batch_size = 'sixteen': expected an integer"):
        load_config(bad)
    write_config(bad, optim={"lr": 1e-3, "learning_rate": 1e-3})
    with pytest.raises(ConfigError, match=r"bad\.yaml: optim\.learning_rate = 0\.001: unknown key"):
        load_config(bad)
    write_config(bad, model={"generator": {"size": "GAT-S/4"}, "discriminator": {"size": "GAT-S/8"}},
                 data={"resolution": 12})
    with pytest.raises(ConfigError, match=r"model\.discriminator\.size = 'GAT-S/8': patch size 8 does not divide "
                                          r"the latent size 12"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"method\.mng = 'expo': must be one of 'exp', 'linear', 'vp', 'off'"):
        load_config(write_config(bad), ["method.mng=expo"])
    with pytest.raises(ConfigError, match=r"train\.batch_size = 8: global batch is not divisible by the world size 3"):
        from gatscale.core.config import validate
        validate(tiny_config(), "x.yaml", world_size=3)


def test_resolved_config_round_trips(tmp_path):
    cfg = tiny_config()
    from gatscale.core.config import config_hash, dump_config
    dump_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg and config_hash(again) == config_hash(cfg)
    reordered = config_from_dict(dict(reversed(list(tiny_run_dict().items()))))
    assert config_hash(reordered) == config_hash(cfg)


# --- checkpoints --------------------------------------------------------------------------------

def test_killed_checkpoint_write_leaves_previous_loadable(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 10, {"w": torch.ones(3)}, keep=3)

    def dying_save(obj, f):
        f.write(b"partial garbage")
        raise KeyboardInterrupt("killed mid-write")
    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 20, {"w": torch.zeros(3)}, keep=3)
    monkeypatch.undo()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-0000010.pt"]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert torch.equal(load_checkpoint(list_checkpoints(tmp_path)[-1])["w"], torch.ones(3))


def test_only_last_k_checkpoints_are_kept(tmp_path):
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path, step, {"step": step}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-0000030.pt", "ckpt-0000040.pt"]


# --- training -----------------------------------------------------------------------------------

def test_tiny_training_moves_losses_and_samples(tmp_path):
    """An honest smoke test: a few hundred steps on digits change the losses and the samples."""
    cfg = tiny_config(train={"iterations": 200, "log_every": 10, "checkpoint_every": 200})
    from gatscale.models import generator_from_config
    from gatscale.train.checkpoint import load_generator
    torch.manual_seed(cfg.train.seed)
    G0 = generator_from_config(cfg).eval()

    class Recorder:
        run_id = None
        def __init__(self): self.metrics = []
        def start(self, *a): pass
        def log_metrics(self, m, step): self.metrics.append((step, m))
        def log_artifact(self, *a, **k): pass
        def set_tags(self, t): pass
        def finish(self, status): self.status = status

    rec = Recorder()
    result = train(cfg, tmp_path, tracker=rec)
    assert result.status == "finished" and rec.status == "finished"
    first = rec.metrics[0][1]
    for k in ("loss/d", "loss/g"):  # (loss/g returns near its start by step 200, so: how far it moved)
        assert max(abs(m[k] - first[k]) for _, m in rec.metrics) > 0.05
    G1, _ = load_generator(tmp_path)
    z, y = torch.randn(16, cfg.model.z_dim), torch.arange(16) % 10
    with torch.no_grad():
        change = (G1(z, y) - G0(z, y)).abs().mean().item()
    assert change > 0.05
    assert read_status(tmp_path)["status"] == "finished"
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "samples" / "step-0000001.png").is_file()
    assert (tmp_path / "samples" / "final.png").is_file()


def test_sample_grid_has_one_labelled_row_per_class_of_upscaled_images():
    from gatscale.train.sample_grid import LABEL_WIDTH, PAD, class_grid, class_rows

    labels = class_rows(10, per_class=3)
    images = (labels.float() / 10).view(-1, 1, 1, 1).expand(-1, 3, 8, 8)  # class c: grey level c/10
    grid = class_grid(images, labels, class_names=[f"d{c}" for c in range(10)])
    cell = 32  # 8 px upscaled x4 (nearest) to reach 32 px
    assert grid.shape == (10 * (cell + PAD), LABEL_WIDTH + 3 * (cell + PAD), 3)
    for c in range(10):
        top = c * (cell + PAD)
        for j in range(3):
            left = LABEL_WIDTH + j * (cell + PAD)
            assert (grid[top:top + cell, left:left + cell] == round(255 * c / 10)).all()
        assert (grid[top:top + cell, :LABEL_WIDTH] < 128).any()  # the row's label is written beside it


def test_sigkill_and_resume_is_bitwise_identical(tmp_path):
    config = write_config(tmp_path / "c.yaml", train={"iterations": 40, "checkpoint_every": 10})
    ref = gatscale_train(config, tmp_path / "ref")
    assert ref.wait(timeout=300) == 0, ref.stdout.read()

    proc = gatscale_train(config, tmp_path / "run")
    wait_for(lambda: any(p.name == "ckpt-0000020.pt" for p in list_checkpoints(tmp_path / "run"))
             or proc.poll() is not None)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = [p.name for p in list_checkpoints(tmp_path / "run")]
    assert "ckpt-0000040.pt" not in killed_at, "the run finished before it could be killed"
    resumed = gatscale_train(config, tmp_path / "run")
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0 and "resumed from" in out, out
    a = load_checkpoint(list_checkpoints(tmp_path / "ref")[-1])
    b = load_checkpoint(list_checkpoints(tmp_path / "run")[-1])
    assert a["step"] == b["step"] == 40
    assert_bitwise_equal(a, b)
    # metrics.jsonl is complete: every step the uninterrupted run logged, with its values (analysis reads the later
    # of a step that the killed attempt and its resume both logged)
    from analysis.load import folder_history
    ref_h, run_h = (folder_history(tmp_path / d, d).set_index(["metric", "step"])["value"] for d in ("ref", "run"))
    ref_h, run_h = (h[~h.index.get_level_values("metric").str.startswith("perf/")] for h in (ref_h, run_h))
    assert run_h.index.equals(ref_h.index) and run_h.to_numpy() == pytest.approx(ref_h.to_numpy(), rel=1e-6)


def test_sigterm_checkpoints_at_step_boundary_and_exits_requeueable(tmp_path):
    config = write_config(tmp_path / "c.yaml", train={"iterations": 100000, "checkpoint_every": 1000})
    proc = gatscale_train(config, tmp_path / "run")
    wait_for(lambda: (read_status(tmp_path / "run") or {}).get("status") == "running")
    wait_for(lambda: "step 10/" in (tmp_path / "run" / "log.txt").read_text())
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == EXIT_PREEMPTED
    status = read_status(tmp_path / "run")
    assert status["status"] == "preempted" and status["step"] >= 10
    ckpt = list_checkpoints(tmp_path / "run")[-1]
    assert load_checkpoint(ckpt)["step"] == status["step"]


def test_absurd_lr_is_marked_diverged_not_failed(tmp_path):
    cfg = tiny_config(optim={"lr": 100.0, "width_aware_lr": False}, train={"iterations": 50, "checkpoint_every": 1})
    result = train(cfg, tmp_path)
    assert result.status == "diverged" and "non-finite" in result.reason
    assert result.step > 1, "diverged before any checkpoint: pick a smaller absurd LR"
    status = read_status(tmp_path)
    assert status["status"] == "diverged" and status["step"] == result.step < 50
    last = load_checkpoint(list_checkpoints(tmp_path)[-1])
    assert last["step"] < result.step  # the bad step was never checkpointed
    assert all(torch.isfinite(t).all() for t in checkpoint_tensors(last).values())


def test_resume_refuses_a_different_config(tmp_path):
    train(tiny_config(train={"iterations": 10}), tmp_path)
    with pytest.raises(ValueError, match="different config.*optim.lr"):
        train(tiny_config(train={"iterations": 20}, optim={"lr": 1e-4}), tmp_path)
    assert read_status(tmp_path)["status"] == "finished"  # untouched


def test_epochs_resolve_to_iterations_without_rewriting_the_config_or_the_sweeps_config_file(tmp_path):
    from gatscale.core.config import dump_config
    from gatscale.data import dataset_info
    cfg = tiny_config(train={"epochs": 0.05, "iterations": 1000, "checkpoint_every": 1000})
    dump_config(cfg, tmp_path / "config.yaml")
    written = "# written by the sweep\n" + (tmp_path / "config.yaml").read_text()
    (tmp_path / "config.yaml").write_text(written)
    expected = -(-0.05 * dataset_info(cfg.data).num_images // cfg.train.batch_size)  # ceil
    assert train(cfg, tmp_path).step == expected == read_status(tmp_path)["iterations"] < 1000
    assert cfg.train.iterations == 1000 and (tmp_path / "config.yaml").read_text() == written
    assert load_checkpoint(list_checkpoints(tmp_path)[-1])["config"]["train"]["iterations"] == 1000


def test_a_stale_config_file_from_a_start_that_trained_nothing_is_replaced(tmp_path):
    from gatscale.core.config import dump_config, load_config
    dump_config(tiny_config(optim={"lr": 1e-3}), tmp_path / "config.yaml")  # e.g. a first try that failed at once
    cfg = tiny_config(train={"iterations": 2})
    train(cfg, tmp_path)
    assert load_config(tmp_path / "config.yaml").optim.lr == cfg.optim.lr != 1e-3


def test_training_decodes_samples_and_fid_with_the_official_train_py_decoder_in_float32(tmp_path, monkeypatch):
    import gatscale.data.vae
    built = []
    real_build = gatscale.data.vae.build_tokenizer
    monkeypatch.setattr(gatscale.data.vae, "build_tokenizer", lambda kind, source=None, **kw: (
        built.append((source, kw["dtype"])), real_build(kind, source, **kw))[1])
    train(tiny_config(train={"iterations": 1}), tmp_path)
    assert built == [("stabilityai/sd-vae-ft-mse", torch.float32)]  # eval.fid_decoder, eval.precision defaults


def test_two_trainers_never_share_a_run_folder(tmp_path):
    from gatscale.train.status import RunInProgress, RunLock, run_in_progress
    tmp_path.mkdir(exist_ok=True)
    assert not run_in_progress(tmp_path)
    with RunLock(tmp_path):
        assert run_in_progress(tmp_path)
        with pytest.raises(RunInProgress, match="already being trained by pid"):
            train(tiny_config(train={"iterations": 10}), tmp_path)
    assert read_status(tmp_path) is None and not run_in_progress(tmp_path)


def test_the_one_file_lock_blocks_a_second_holder_and_is_released_when_its_holder_is_killed(tmp_path):
    """gatscale.core.lock.FileLock, behind run.lock, .tracking.lock and mlflow.db.lock."""
    from gatscale.core.lock import FileLock
    path = tmp_path / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", f"from gatscale.core.lock import FileLock; import time\n"
                               f"with FileLock({str(path)!r}):\n    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(BlockingIOError, match=f"locked by pid {holder.pid} on "):
        FileLock(path, wait_s=0.2).__enter__()
    holder.kill()
    holder.wait()
    with FileLock(path, wait_s=0):  # the kernel released the dead holder's flock
        assert path.read_text() == f"pid {os.getpid()} on {os.uname().nodename}"


def test_two_process_gloo_ddp_stays_in_sync_and_logs_the_mean_over_ranks(tmp_path):
    config = write_config(tmp_path / "c.yaml", train={"iterations": 20, "checkpoint_every": 10})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(REPO / "tests" / "ddp_recorded_train.py"), str(config), str(tmp_path / "run")]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout + out.stderr
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "step 10: 2 ranks in sync" in log and "step 20: 2 ranks in sync" in log
    state = load_checkpoint(list_checkpoints(tmp_path / "run")[-1])
    assert state["step"] == 20 and "rng" not in state  # reseeded every step: no RNG state to save
    # model.pos_embed: trainable (default): the embeddings moved, and the checksums above say the two ranks
    # (different data) still hold the same ones, so their gradients were all-reduced (unlike the released code)
    from gatscale.models.layers import sincos_pos_embed_2d
    for net in ("generator", "discriminator"):
        assert not torch.allclose(state[net]["pos_embed"], sincos_pos_embed_2d(16, 2)[None], atol=1e-4)
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "finished"
    # What rank 0 logged every 5 steps is the mean over those steps and over both ranks, not rank 0's own.
    ranks = [json.loads((tmp_path / "run" / f"rank{r}.json").read_text()) for r in (0, 1)]
    logged = {step: metrics for step, metrics in ranks[0]["logged"]}
    assert sorted(logged) == [5, 10, 15, 20]
    for step, k in [(s, k) for s in logged for k in ("loss/d", "loss/g")]:
        own = [sum(r["per_step"][i][k] for i in range(step - 5, step)) / 5 for r in ranks]
        assert own[0] != pytest.approx(own[1], rel=1e-4)  # per-rank data and seeds: rank 0 alone would fail below
        assert logged[step][k] == pytest.approx((own[0] + own[1]) / 2, rel=1e-5)


# --- the step's options ------------------------------------------------------------------------

def _step_once(precision: str = "fp32", **model):
    from gatscale.train.step import build_state, train_step
    cfg = tiny_config(train={"precision": precision}, model=model)
    st = build_state(cfg, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    x, z = torch.randn(8, 3, 8, 8, generator=g), torch.randn(8, 16, generator=g)
    y, raw = torch.arange(8) % 10, torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8, generator=g)
    torch.manual_seed(2)
    stats = train_step(st, x, y, z, raw)
    return stats, [p.detach().clone() for p in list(st.G.parameters()) + list(st.D.parameters())]


def test_gradient_checkpointing_changes_nothing_but_memory():
    plain, p_plain = _step_once()
    ckpt, p_ckpt = _step_once(grad_checkpointing=True)
    assert plain["loss/d"].item() == pytest.approx(ckpt["loss/d"].item(), rel=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(p_plain, p_ckpt))


def test_bf16_autocast_step_is_finite_and_close_to_float32():
    fp32, _ = _step_once()
    bf16, _ = _step_once(precision="bf16")
    for k in ("loss/d", "loss/g", "grad_norm/d", "grad_norm/g"):
        assert torch.isfinite(bf16[k]).all()
    assert bf16["loss/d"].item() == pytest.approx(fp32["loss/d"].item(), rel=0.05)


def test_every_in_training_fd_digits_is_logged_with_its_se_and_the_recipe_tag(tmp_path):
    class Recorder:
        run_id = None
        def __init__(self): self.metrics, self.tags = [], {}
        def start(self, run_dir, name, params, tags): self.tags.update(tags)
        def log_metrics(self, m, step): self.metrics.append((step, m))
        def log_artifact(self, *a, **k): pass
        def set_tags(self, t): self.tags.update(t)
        def finish(self, status): pass

    rec = Recorder()
    cfg = tiny_config(train={"iterations": 10, "log_every": 5},
                      eval={"fid_every": 5, "fid_samples": 40, "feature_extractor": "digits", "batch_size": 40})
    assert train(cfg, tmp_path, tracker=rec).status == "finished"
    evals = [(step, m) for step, m in rec.metrics if "fd_digits" in m]
    assert [step for step, _ in evals] == [5, 10]
    for _, m in evals:
        assert 0 < m["fd_digits_se"] < m["fd_digits"]
        assert {"precision_digits", "recall_digits", "diversity_digits"} <= set(m)
    floor = next(m for step, m in rec.metrics if "fd_digits_floor" in m)
    assert floor["fd_digits_floor_se"] > 0 and "diversity_digits_real" in floor
    recipe = json.loads(rec.tags["gatscale.eval"])
    assert recipe["num_samples"] == 40 and recipe["fd_se"]["resamples"] == cfg.eval.se_resamples
    assert rec.tags["gatscale.stand_in"] == "repa_encoder"  # the tiny REPA encoder; no DINOv2 asked for
