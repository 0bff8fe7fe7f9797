"""The GAT training loop: one run from a RunConfig, resumable, distributed, honest about divergence.

Per iteration (official train.py): one D step then one G step on the same real batch (x, y) and the
same z; the G step updates G's per-class w average; then the EMA of G. Metrics stay on the device and
are reduced every `train.log_every` steps (no host sync in the step, except the finiteness check every
`train.divergence_check_every` steps). A SIGTERM/SIGUSR2 (SLURM/submitit preemption) makes the loop
checkpoint at the next step boundary and exit with status `preempted` (one that came before the first step:
at once, without training).

Resume takes the newest checkpoint that validates (checkpoint.py); newer ones that do not are set aside in
checkpoints/rejected/ with a warning in log.txt and the tracker. When none validates but the folder shows
progress (status.json's step, checkpoint files), the run is refused (CheckpointsUnusable) rather than silently
restarted from step 0; `restart=True` (`gatscale train --restart`) starts over explicitly.
"""
import contextlib
import dataclasses
import logging
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..config import RunConfig, config_hash, dump_config, flatten, to_dict, validate
from ..data import build_train_loader, dataset_info, sample_latents
from ..eval.run import build_eval_tokenizer
from ..errors import InputError, exit_code
from ..flops import run_flops
from ..models import count_trainable
from ..tracking import FolderTracker, NullTracker, Tracker
from ..tracking.labels import study_tags
from .checkpoint import (REJECTED_DIR, TRAINING_STATE, checkpoint_config, checkpoint_dir, checkpoint_step,
                         find_latest_valid, remove_stale_temporaries, rng_state, save_checkpoint, set_aside,
                         set_rng_state)
from .distributed import DistInfo, all_reduce_max, barrier, init_distributed
from .sample_grid import class_rows, save_sample_grid
from .signals import StopFlag
from .stability import FD_METRICS, StabilityWatch
from .status import TERMINAL, RunLock, read_status, write_status
from .step import build_state, train_step

log = logging.getLogger("gatscale.train")
WATCHED = ("loss/d", "loss/g", "grad_norm/d", "grad_norm/g")  # a non-finite one means the run diverged


@dataclasses.dataclass
class RunResult:
    status: str          # finished | diverged | preempted | failed
    step: int
    reason: str | None = None
    signum: int | None = None  # the signal that preempted the run (SIGTERM or SIGUSR2)


def _setup_logging(run_dir: Path, is_main: bool):
    log.handlers.clear()
    log.setLevel(logging.INFO if is_main else logging.WARNING)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers = [logging.StreamHandler(sys.stdout)]
    if is_main:
        handlers.append(logging.FileHandler(run_dir / "log.txt"))
    for h in handlers:
        h.setFormatter(fmt)
        log.addHandler(h)


def train(cfg: RunConfig, run_dir: str | Path | None = None, tracker: Tracker | None = None,
          device: str | None = None, restart: bool = False) -> RunResult:
    """Train (or resume) one run. Returns its final status; never raises on divergence.
    restart: train from step 0 even though the folder shows progress but holds no valid checkpoint."""
    run_dir = Path(run_dir or cfg.run_dir or Path("runs") / cfg.name)
    info = init_distributed(device)
    validate(cfg, world_size=info.world_size)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    barrier(info)
    _setup_logging(run_dir, info.is_main)
    tracker = (tracker or FolderTracker()) if info.is_main else NullTracker()  # rank 0 always keeps metrics.jsonl
    stop = StopFlag().install()
    state = {"step": 0, "iterations": cfg.train.iterations, "restart": restart, "tracking": False}  # tracking: tracker.start done
    try:
        with RunLock(run_dir) if info.is_main else contextlib.nullcontext():
            if info.is_main:
                for tmp in remove_stale_temporaries(run_dir):
                    log.warning("removed %s, a checkpoint write that was killed", tmp)
            try:
                return _train(cfg, run_dir, tracker, info, stop, state)
            except ResumeRefused:
                raise  # the folder belongs to another config: leave its status alone
            except BaseException as e:
                _record_failure(e, run_dir, tracker, info, state)
                raise
    finally:
        stop.restore()


def _record_failure(e: BaseException, run_dir: Path, tracker: Tracker, info: DistInfo, state: dict):
    """status.json says failed (and why); the tracker too, if it was started. An expected failure (bad input,
    missing weights or data) is logged in one line; anything else with its traceback."""
    reason = f"{type(e).__name__}: {e}"
    (log.error if exit_code(e) is not None else log.exception)("run failed at step %d: %s", state["step"], reason)
    if info.is_main:
        write_status(run_dir, "failed", state["step"], state["iterations"], reason=reason)
        if state["tracking"]:
            tracker.set_tags({"gatscale.failure": reason[:5000]})
            tracker.finish("failed")


class ResumeRefused(InputError, ValueError):
    """The run folder holds a checkpoint of a different config."""


class CheckpointsUnusable(RuntimeError):
    """The run made progress but no checkpoint of it validates: refuse to start over silently."""


def _resume_point(run_dir: Path, restart: bool, state: dict, warnings: list[str]):
    """The newest valid checkpoint (dict, path) or (None, None) for a fresh start. Newer invalid checkpoints
    are set aside; with none valid and progress on record, CheckpointsUnusable (unless `restart`)."""
    found = find_latest_valid(run_dir, TRAINING_STATE, map_location="cpu")
    for path, why in found.rejected:
        warnings.append(f"checkpoint {path.name} skipped: {why}")
        log.warning("warning: checkpoint %s is not usable (%s); trying the previous one", path, why)
    status = read_status(run_dir) or {}
    recorded = max([status.get("step") or 0] + [checkpoint_step(p) for p, _ in found.rejected])
    if found.state is None and recorded > 0 and not restart:
        state["step"] = recorded  # a failure status keeps the step the run had reached
        files = "; ".join(f"{p.name}: {why}" for p, why in found.rejected) or f"none in {checkpoint_dir(run_dir)}"
        raise CheckpointsUnusable(
            f"{run_dir}: the run reached step {recorded} (status.json: {status.get('status', 'none')} at step "
            f"{status.get('step', 0)}) but no checkpoint is usable ({files}). Refusing to start over from step 0; "
            f"nothing was deleted. Restore checkpoints/ from a backup, or run `gatscale train --restart` to train "
            f"from step 0 (the unusable checkpoints are then moved to checkpoints/{REJECTED_DIR}/).")
    if found.rejected:
        moved = set_aside([p for p, _ in found.rejected])
        warnings.append(f"moved to checkpoints/{REJECTED_DIR}/: {', '.join(p.name for p in moved)}")
        log.warning("warning: moved %d unusable checkpoint(s) to %s (kept for inspection; delete them when done)",
                    len(moved), checkpoint_dir(run_dir) / REJECTED_DIR)
    if found.state is None and recorded > 0:
        log.warning("warning: --restart: training %s from step 0 (it had reached step %d)", run_dir, recorded)
    return found.state, found.path


def _check_resume_config(cfg: RunConfig, run_dir: Path, saved: dict):
    old = checkpoint_config(saved)
    if config_hash(old) != config_hash(cfg):
        a, b = flatten(to_dict(old)), flatten(to_dict(cfg))
        diff = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        raise ResumeRefused(f"{run_dir}: the run folder holds a checkpoint of a different config; refusing to resume. "
                         f"Differences: {'; '.join(diff[:10])}. Use another --run-dir to start a new run.")


def _train(cfg: RunConfig, run_dir: Path, tracker: Tracker, info: DistInfo, stop: StopFlag, state: dict) -> RunResult:
    dev = info.device
    data = dataset_info(cfg.data)
    if cfg.train.epochs is not None:
        cfg.train.iterations = math.ceil(cfg.train.epochs * data.num_images / cfg.train.batch_size)
    iterations = state["iterations"] = cfg.train.iterations
    local_batch = cfg.train.batch_size // info.world_size
    if cfg.eval.fid_every:
        from ..eval.fid import check_feature_extractor
        check_feature_extractor(cfg.eval)  # a missing Inception file fails now, not 2,500 steps in

    st = build_state(cfg, dev, distributed=info.enabled)
    G, D, G_ema = st.G, st.D, st.G_ema

    # Resume.
    start_step, stand_ins, warnings = 0, [], []
    ckpt, ckpt_path = _resume_point(run_dir, state["restart"], state, warnings)
    if ckpt is not None:
        _check_resume_config(cfg, run_dir, ckpt["config"])
        done = read_status(run_dir) or {}
        if done.get("status") in TERMINAL:  # e.g. a late relaunch by a second sweep: never reopen the run
            log.info("run %s already %s at step %d; nothing to do", cfg.name, done["status"], done["step"])
            return RunResult(done["status"], done["step"], done.get("reason"))
        G.load_state_dict(ckpt["generator"]), D.load_state_dict(ckpt["discriminator"]), G_ema.load_state_dict(ckpt["ema"])
        st.opt_g.load_state_dict(ckpt["opt_g"]), st.opt_d.load_state_dict(ckpt["opt_d"])
        start_step = state["step"] = ckpt["step"]
        log.info("resumed from %s (step %d)", ckpt_path, start_step)
    for seed_fn in (torch.manual_seed, np.random.seed, random.seed):  # seed + rank, as the official code
        seed_fn(cfg.train.seed + info.rank)
    if ckpt is not None:
        rng = ckpt["rng"][info.rank] if info.rank < len(ckpt["rng"]) else ckpt["rng"][0]
        set_rng_state(rng)
    del ckpt

    if st.encoder is not None and st.encoder.stand_in:
        stand_ins.append("repa_encoder")
    # Sample grids and FID-k decode with eval.fid_decoder (official train.py: ft-mse), in eval.precision.
    tokenizer = build_eval_tokenizer(cfg, dev, decoder=cfg.eval.fid_decoder) if info.is_main else None
    flops = run_flops(cfg)

    if info.is_main:
        dump_config(cfg, run_dir / "config.yaml")
        params = {**flatten(to_dict(cfg)), "lr_g": st.lr_g, "lr_d": st.lr_d, "world_size": info.world_size,
                  "params_g": count_trainable(G), "params_d": count_trainable(D),
                  "gflops_g": round(flops.g_paper_gflops, 4), "gflops_d": round(flops.d_paper_gflops, 4),
                  "dataset_images": data.num_images}
        tags = {"gatscale.name": cfg.name, "gatscale.config_hash": config_hash(cfg), "gatscale.run_dir": str(run_dir.resolve()),
                "gatscale.status": "running", "gatscale.stand_in": ",".join(stand_ins), **study_tags(cfg, st.lr_g, st.lr_d)}
        if cfg.tracking.aliases:
            tags["gatscale.aliases"] = cfg.tracking.aliases
        tracker.start(run_dir, cfg.name, params, tags)
        state["tracking"] = True
        if warnings:
            tracker.set_tags({"gatscale.checkpoint_warnings": "; ".join(warnings)[:5000]})
        tracker.log_artifact(run_dir / "config.yaml")
        if cfg.eval.fid_every and cfg.eval.feature_extractor == "digits" and start_step == 0:
            from ..eval.fid import real_data_floor
            tracker.log_metrics(real_data_floor(cfg, dev), 0)  # fd_digits_floor: real images score this (cached)
        write_status(run_dir, "running", start_step, iterations)
        log.info("run %s (%s): G %s %.1fM params, D %s %.1fM params, lr G %.3g D %.3g, %d images, %d iterations, %s%s",
                 cfg.name, config_hash(cfg), cfg.model.generator.size, count_trainable(G) / 1e6, cfg.model.discriminator.size,
                 count_trainable(D) / 1e6, st.lr_g, st.lr_d, data.num_images, iterations, dev,
                 ", bf16" if st.autocast is not contextlib.nullcontext else "")

    # The loader must not consume the training RNG (bitwise resume): isolate it. Raw images are read
    # only for REPA's encoder (the batches are otherwise the same).
    cpu_rng = torch.get_rng_state()
    loader_cfg = dataclasses.replace(cfg.data, load_images=cfg.data.load_images and cfg.method.repa)
    loader = build_train_loader(loader_cfg, local_batch, info.rank, info.world_size, cfg.train.seed, start_step)
    torch.set_rng_state(cpu_rng)
    sample_gen = torch.Generator(device="cpu").manual_seed(cfg.train.seed + 12345)
    vis_y = class_rows(cfg.data.num_classes).to(dev)  # one row of 8 per class (the first 10 classes)
    vis_z = torch.randn(len(vis_y), G.z_dim, generator=sample_gen).to(dev)

    sums, n_sum, nonfinite = {}, 0, torch.zeros((), device=dev)
    t_last, step_last = time.perf_counter(), start_step
    last_metrics: dict = {}
    watch = StabilityWatch(cfg.train.stability)
    progress = _progress(start_step, iterations, info.is_main)
    step = start_step
    result = None
    if (all_reduce_max(torch.tensor([float(stop.signum is not None)], device=dev), info) > 0).item():
        result = RunResult("preempted", step, f"signal {stop.signum} before step {step + 1}", signum=stop.signum)
    while result is None and step < iterations:
        rng_cpu = torch.get_rng_state()
        batch = next(loader)
        torch.set_rng_state(rng_cpu)
        moments = batch["latent"].to(dev, non_blocking=True)
        y = batch["label"].to(dev, non_blocking=True)
        raw = batch["image"].to(dev, non_blocking=True) if "image" in batch else None
        x = sample_latents(moments, cfg.data.scale)
        z = torch.randn(local_batch, G.z_dim, device=dev)
        log_now = (step + 1) % cfg.train.log_every == 0 or step + 1 == iterations

        stats = train_step(st, x, y, z, raw, group_norms=log_now)
        step += 1
        state["step"] = step

        for k in WATCHED:
            nonfinite = torch.maximum(nonfinite, (~torch.isfinite(stats[k].float())).float())
        for k, v in stats.items():
            sums[k] = sums.get(k, 0.0) + v.float()
        n_sum += 1

        # Divergence (stop within one step by default, keep the last good checkpoint) and preemption
        # signals, agreed on by all ranks in one small all-reduce at a step-deterministic cadence.
        diverged = preempted = False
        if step % cfg.train.divergence_check_every == 0 or log_now or step == iterations or \
                (not info.enabled and stop.signum is not None):
            flags = torch.stack([nonfinite, torch.tensor(float(stop.signum is not None), device=dev)])
            diverged, preempted = (all_reduce_max(flags, info) > 0).tolist()
        if diverged:
            bad = [k for k in WATCHED if not torch.isfinite(stats[k]).all()]
            result = RunResult("diverged", step, f"non-finite {', '.join(bad) or 'value'} at step {step}")
            break

        if log_now:
            now = time.perf_counter()  # after the finiteness check's .tolist(), which waited for the device
            values = {k: v / n_sum for k, v in sums.items()}
            # group norms were only computed on this step: report them unaveraged
            values.update({k: sums[k] for k in sums if "_group" in k})
            metrics = dict(zip(values, torch.stack([v.reshape(()) for v in values.values()]).tolist()))
            dt = (now - t_last) / max(step - step_last, 1)
            metrics.update({
                "lr/g": st.lr_g, "lr/d": st.lr_d, "epoch": step * cfg.train.batch_size / data.num_images,
                "perf/step_ms": dt * 1e3, "perf/images_per_s": cfg.train.batch_size / dt,
                "flops/train_total": float(flops.iteration) * step,
            })
            if dev.type == "cuda":
                metrics["perf/peak_mem_gb"] = torch.cuda.max_memory_allocated(dev) / 2**30
            last_metrics = {**last_metrics, **metrics}  # the latest value of each, FIDs included
            tracker.log_metrics(metrics, step)
            progress(step, metrics)
            if info.is_main:  # what `gatscale sweep` and `gatscale status --watch` show live
                write_status(run_dir, "running", step, iterations, metrics=last_metrics)
            sums, n_sum, t_last, step_last = {}, 0, time.perf_counter(), step

        if info.is_main and (step % cfg.train.sample_every == 0 or step == 1 or step == iterations):
            for name in [f"step-{step:07d}.png"] + (["final.png"] if step == iterations else []):
                save_sample_grid(G_ema, vis_z, vis_y, tokenizer, run_dir / "samples" / name, tracker, st.autocast,
                                 class_names=data.class_names)

        if cfg.eval.fid_every and step % cfg.eval.fid_every == 0:
            fid = _evaluate(G_ema, cfg, tokenizer, dev, info)
            if fid:
                fid["epoch"] = step * cfg.train.batch_size / data.num_images
                tracker.log_metrics(fid, step)
                last_metrics.update(fid)
                log.info("step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in fid.items()))

        # Non-NaN failure modes (train.stability): judged on rank 0's metrics at log and FID ticks, agreed on
        # by all ranks; the run ends as diverged before this step's checkpoint (the last good one is kept).
        fid_now = bool(cfg.eval.fid_every) and step % cfg.eval.fid_every == 0
        if watch.enabled and (log_now or fid_now):
            tick = last_metrics if log_now else {k: v for k, v in last_metrics.items() if k in FD_METRICS}
            reason = watch.check(tick) if info.is_main else None
            if all_reduce_max(torch.tensor(float(reason is not None), device=dev), info).item() > 0:
                result = RunResult("diverged", step, f"{reason or 'unstable (judged on rank 0)'} at step {step}")
                break

        if step % cfg.train.checkpoint_every == 0 or step == iterations or preempted:
            _save(run_dir, step, st, info)
            if info.is_main:
                write_status(run_dir, "running", step, iterations, metrics=last_metrics)
        if preempted:
            result = RunResult("preempted", step, f"signal {stop.signum} at step {step}", signum=stop.signum)
            break

    if result is None:
        result = RunResult("finished", step)
    if info.is_main:
        write_status(run_dir, result.status, result.step, iterations, reason=result.reason, metrics=last_metrics)
        if result.status == "diverged":
            tracker.set_tags({"gatscale.diverged_step": str(result.step), "gatscale.divergence_reason": result.reason})
            log.info("DIVERGED: %s; the last good checkpoint is kept", result.reason)
        tracker.finish(result.status)
        log.info("run %s %s at step %d", cfg.name, result.status, result.step)
    barrier(info)
    return result


def _save(run_dir, step, st, info: DistInfo):
    """Rank 0 writes; every rank contributes its RNG state. Verifies that replicas are in sync."""
    rng = rng_state()
    rngs = [rng]
    if info.enabled:
        rngs = [None] * info.world_size
        dist.all_gather_object(rngs, rng)
        checksum = torch.stack([p.detach().double().sum() for p in list(st.G.parameters()) + list(st.D.parameters())]).sum()
        all_sums = [torch.zeros_like(checksum) for _ in range(info.world_size)]
        dist.all_gather(all_sums, checksum)
        if len({s.item() for s in all_sums}) != 1:
            raise RuntimeError(f"DDP replicas diverged at step {step}: parameter checksums {[s.item() for s in all_sums]}")
        log.info("step %d: %d ranks in sync (parameter checksum %.6f)", step, info.world_size, checksum.item())
    if info.is_main:
        state = {
            "step": step, "config": to_dict(st.cfg), "rng": rngs,
            "generator": st.G.state_dict(), "discriminator": st.D.state_dict(), "ema": st.G_ema.state_dict(),
            "opt_g": st.opt_g.state_dict(), "opt_d": st.opt_d.state_dict(),
        }
        save_checkpoint(run_dir, step, state, keep=st.cfg.train.keep_checkpoints)
    barrier(info)


def _evaluate(G_ema, cfg, tokenizer, dev, info: DistInfo) -> dict:
    """FID-k of the EMA generator on rank 0, without touching the training RNG streams."""
    result = {}
    if info.is_main:
        from ..eval.fid import evaluate_generator
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            result = evaluate_generator(G_ema, cfg, tokenizer, dev)  # in eval.precision, not the step's autocast
    barrier(info)
    return result


def _progress(start: int, total: int, enabled: bool):
    """A tqdm bar with ETA on a terminal; plain log lines otherwise."""
    if not enabled:
        return lambda step, metrics: None
    keys = ("loss/d", "loss/g", "perf/images_per_s")
    if sys.stdout.isatty():
        from tqdm import tqdm
        bar = tqdm(total=total, initial=start, desc="train", dynamic_ncols=True)

        def update(step, metrics):
            bar.update(step - bar.n)
            bar.set_postfix({k.split("/")[-1]: f"{metrics[k]:.3g}" for k in keys if k in metrics})
        return update

    t0 = time.time()

    def line(step, metrics):
        done = step - start
        eta = (time.time() - t0) / max(done, 1) * (total - step)
        log.info("step %d/%d %s eta %s", step, total,
                 " ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics), time.strftime("%H:%M:%S", time.gmtime(eta)))
    return line


__all__ = ["train", "RunResult"]
