"""The GAT training loop: one run from a RunConfig, resumable, distributed, honest about divergence.

Per iteration (official train.py): one D step then one G step on the same real batch (x, y) and the
same z; the G step updates G's per-class w average; then the EMA of G. Metrics stay on the device and
are reduced every `train.log_every` steps (no host sync in the step, except the finiteness check every
`train.divergence_check_every` steps). A SIGTERM/SIGUSR2 (SLURM/submitit preemption) makes the loop
checkpoint at the next step boundary and exit with status `preempted`.
"""
import contextlib
import dataclasses
import logging
import math
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..config import RunConfig, config_from_dict, config_hash, dump_config, flatten, to_dict, validate
from ..data import build_train_loader, dataset_info, sample_latents
from ..flops import run_flops
from ..models import count_trainable
from ..tracking import NullTracker, Tracker
from ..vae import build_tokenizer
from .checkpoint import load_latest, rng_state, save_checkpoint, set_rng_state
from .distributed import DistInfo, all_reduce_max, barrier, init_distributed
from .sample_grid import save_sample_grid
from .stability import FD_METRICS, StabilityWatch
from .status import RunLock, write_status
from .step import build_state, train_step

log = logging.getLogger("gatscale.train")
WATCHED = ("loss/d", "loss/g", "grad_norm/d", "grad_norm/g")  # a non-finite one means the run diverged


@dataclasses.dataclass
class RunResult:
    status: str          # finished | diverged | preempted | failed
    step: int
    reason: str | None = None
    signum: int | None = None  # the signal that preempted the run (SIGTERM or SIGUSR2)


class _StopFlag:
    """Set by SIGTERM/SIGUSR2; the loop checkpoints and exits at the next step boundary."""

    def __init__(self):
        self.signum = None
        self.previous = {}

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            return  # e.g. a Ray Tune trial thread: the backend handles preemption
        for sig in (signal.SIGTERM, signal.SIGUSR2):
            self.previous[sig] = signal.signal(sig, self._handle)

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        self.signum = signum


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
          device: str | None = None) -> RunResult:
    """Train (or resume) one run. Returns its final status; never raises on divergence."""
    run_dir = Path(run_dir or cfg.run_dir or Path("runs") / cfg.name)
    info = init_distributed(device)
    validate(cfg, world_size=info.world_size)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    barrier(info)
    _setup_logging(run_dir, info.is_main)
    tracker = tracker if (tracker is not None and info.is_main) else NullTracker()
    stop = _StopFlag()
    stop.install()
    state = {"step": 0, "iterations": cfg.train.iterations}
    try:
        with RunLock(run_dir) if info.is_main else contextlib.nullcontext():
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
    reason = f"{type(e).__name__}: {e}"
    log.exception("run failed at step %d: %s", state["step"], reason)
    if info.is_main:
        write_status(run_dir, "failed", state["step"], state["iterations"], reason=reason)
        tracker.set_tags({"gatscale.failure": reason[:5000]})
        tracker.finish("failed")


class ResumeRefused(ValueError):
    """The run folder holds a checkpoint of a different config."""


def _check_resume_config(cfg: RunConfig, run_dir: Path, saved: dict):
    old = config_from_dict(saved)
    if config_hash(old) != config_hash(cfg):
        a, b = flatten(to_dict(old)), flatten(to_dict(cfg))
        diff = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        raise ResumeRefused(f"{run_dir}: the run folder holds a checkpoint of a different config; refusing to resume. "
                         f"Differences: {'; '.join(diff[:10])}. Use another --run-dir to start a new run.")


def _train(cfg: RunConfig, run_dir: Path, tracker: Tracker, info: DistInfo, stop: _StopFlag, state: dict) -> RunResult:
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
    start_step, stand_ins = 0, []
    ckpt, ckpt_path = load_latest(run_dir, map_location="cpu")
    if ckpt is not None:
        _check_resume_config(cfg, run_dir, ckpt["config"])
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
    tokenizer = build_tokenizer(cfg.data.tokenizer, cfg.data.vae_decoder, scale=cfg.data.scale, device=dev) \
        if info.is_main else None
    flops = run_flops(cfg)

    if info.is_main:
        dump_config(cfg, run_dir / "config.yaml")
        params = {**flatten(to_dict(cfg)), "lr_g": st.lr_g, "lr_d": st.lr_d, "world_size": info.world_size,
                  "params_g": count_trainable(G), "params_d": count_trainable(D),
                  "gflops_g": round(flops.g_paper_gflops, 4), "gflops_d": round(flops.d_paper_gflops, 4),
                  "dataset_images": data.num_images}
        tags = {"gatscale.name": cfg.name, "gatscale.config_hash": config_hash(cfg), "gatscale.run_dir": str(run_dir.resolve()),
                "gatscale.status": "running", "gatscale.stand_in": ",".join(stand_ins)}
        tracker.start(run_dir, cfg.name, params, tags)
        tracker.log_artifact(run_dir / "config.yaml")
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
    n_vis = min(64, 8 * cfg.data.num_classes)
    vis_z = torch.randn(n_vis, G.z_dim, generator=sample_gen).to(dev)
    vis_y = (torch.arange(n_vis) % cfg.data.num_classes).to(dev)

    sums, n_sum, nonfinite = {}, 0, torch.zeros((), device=dev)
    t_last, step_last = time.perf_counter(), start_step
    last_metrics: dict = {}
    watch = StabilityWatch(cfg.train.stability)
    progress = _progress(start_step, iterations, info.is_main)
    step = start_step
    result = None
    while step < iterations:
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
            last_metrics = metrics
            tracker.log_metrics(metrics, step)
            progress(step, metrics)
            sums, n_sum, t_last, step_last = {}, 0, time.perf_counter(), step

        if info.is_main and (step % cfg.train.sample_every == 0 or step == 1):
            save_sample_grid(G_ema, vis_z, vis_y, tokenizer, run_dir / "samples" / f"step-{step:07d}.png", tracker, st.autocast)

        if cfg.eval.fid_every and step % cfg.eval.fid_every == 0:
            fid = _evaluate(G_ema, cfg, tokenizer, dev, info, st.autocast)
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


def _evaluate(G_ema, cfg, tokenizer, dev, info: DistInfo, autocast) -> dict:
    """FID-k of the EMA generator on rank 0, without touching the training RNG streams."""
    result = {}
    if info.is_main:
        from ..eval.fid import evaluate_generator
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []), autocast():
            result = evaluate_generator(G_ema, cfg, tokenizer, dev)
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
