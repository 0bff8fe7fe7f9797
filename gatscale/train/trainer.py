"""The GAT training loop: one run from a RunConfig, resumable, distributed, honest about divergence.

Per iteration (official train.py): one D step then one G step on the same real batch (x, y) and the
same z; the G step updates G's per-class w average; then the EMA of G (step.py). The loop is a row of
labelled stages, `done` decided first so the last step is reported and checkpointed like any other:
Done? (divergence and preemption, agreed by all ranks) / Report / Samples / Eval / Stability / Checkpoint /
Step. Statistics stay on the device and are averaged over steps and ranks at each `train.log_every` tick
(stats.py; no host sync in the step, except the finiteness check every `train.divergence_check_every` steps).
Every step reseeds torch's RNG from (seed, rank, step), so checkpoints hold no RNG state and a resumed
run is bitwise the uninterrupted one. A SIGTERM/SIGUSR2 (SLURM/submitit preemption) makes the loop
checkpoint at the next step boundary and exit with status `preempted` (one that came before the first step:
at once, without training).

Resume takes the newest checkpoint that validates (checkpoint.py); newer ones that do not are set aside in
checkpoints/rejected/ with a warning in log.txt and the tracker. When none validates, the record of the last
checkpoint completely written decides (status.json's checkpoint_step, or a checkpoint file under its final name),
never the last step reached: no checkpoint ever written (a run killed before its first) trains from step 0, which
loses nothing; one written and now unusable is refused (CheckpointsUnusable: one `gatscale: error:` with a line per
file, exit 1; status.json keeps the run's status and says why under `attention`, which holds it in a sweep), and
`restart=True` (`gatscale train --restart`) starts over explicitly. Whenever a run continues from an earlier step
than it had reached, metrics.jsonl gets a rewind record, so the curves drop what the lost steps logged
(metrics_log.py). The run folder's config.yaml is written unless it already holds this run's config (a sweep's own
then stays as written).

`train` reads in four calls: `_resume` (the state, from the newest valid checkpoint), `_start_run` (config.yaml,
status.json, the tracker run), `_train` (the loop) and `_end_run` (how it ended, in status.json and the tracker).
A failure on the way marks status.json's last record `failed`, with its reason (and the tracker run, once opened).
"""
import contextlib
import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path

import torch

from gatscale.core.config import (
    ConfigError,
    RunConfig,
    config_hash,
    diff,
    dump_config,
    flatten,
    load_config,
    to_dict,
    validate,
)
from gatscale.core.errors import EnvironmentProblem, InputError, exit_code
from gatscale.models.flops import run_flops
from ..data import DatasetInfo, build_train_loader, dataset_info, sample_latents
from ..eval.samples import build_eval_tokenizer
from ..models import count_trainable
from ..tracking import FolderTracker, NullTracker, Tracker
from ..tracking.labels import study_tags
from ..tracking.metrics_log import rewind
from .checkpoint import (
    REJECTED_DIR,
    checkpoint_config,
    checkpoint_dir,
    checkpoint_step,
    find_latest_valid,
    remove_stale_temporaries,
    set_aside,
)
from .distributed import DistInfo, all_reduce_max, barrier, init_distributed, parameter_checksums
from .sample_grid import class_rows, save_sample_grid
from .signals import StopFlag
from .stability import FD_METRICS, StabilityWatch
from .stats import StatsCollector
from .status import TERMINAL, RunLock, read_status, write_status
from .step import TrainState, build_state, reseed, train_step

log = logging.getLogger("gatscale.train")
WATCHED = ("loss/d", "loss/g", "grad_norm/d", "grad_norm/g")  # a non-finite one means the run diverged


@dataclasses.dataclass
class RunResult:
    status: str          # finished | diverged | preempted | failed
    step: int
    reason: str | None = None
    signum: int | None = None  # the signal that preempted the run (SIGTERM or SIGUSR2)


@dataclasses.dataclass
class _Start:
    """Where a run begins, decided before its first step (`_resume`)."""
    st: TrainState
    data: DatasetInfo
    iterations: int        # the run's total: train.iterations, or what train.epochs come to on this data set
    step: int              # the step it continues from: its checkpoint's, or 0
    warnings: list[str]    # the checkpoints skipped on the way (tracker tag gatscale.checkpoint_warnings)


def _setup_logging(run_dir: Path, is_main: bool):
    log.handlers.clear()
    log.setLevel(logging.INFO if is_main else logging.WARNING)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers = [logging.StreamHandler(sys.stdout)]
    handlers[0].addFilter(lambda record: not getattr(record, "file_only", False))  # what the CLI prints itself
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
    try:
        with RunLock(run_dir) if info.is_main else contextlib.nullcontext():
            if info.is_main:
                for tmp in remove_stale_temporaries(run_dir):
                    log.warning("removed %s, a checkpoint write that was killed", tmp)
            opened = False  # the tracker run: a failure after it is recorded there too
            try:
                start = _resume(cfg, run_dir, info, restart)
                if isinstance(start, RunResult):
                    return start  # the run had ended: never reopened
                if info.is_main:
                    _start_run(cfg, run_dir, tracker, start, info)
                opened = True
                return _train(cfg, run_dir, tracker, info, stop, start)
            except ResumeRefused:
                raise  # the folder belongs to another config: leave its status alone
            except CheckpointsUnusable as e:
                _record_refusal(e, cfg, run_dir, info)
                raise
            except BaseException as e:
                _record_failure(e, cfg, run_dir, tracker if opened else None, info)
                raise
    finally:
        stop.restore()


def _last_record(cfg: RunConfig, run_dir: Path) -> dict:
    """status.json as the run last wrote it (or a run that wrote none: step 0, no checkpoint)."""
    return {"step": 0, "iterations": cfg.train.iterations, "checkpoint_step": 0, **(read_status(run_dir) or {})}


def _record_refusal(e: "CheckpointsUnusable", cfg: RunConfig, run_dir: Path, info: DistInfo):
    """status.json keeps what the run was (preempted, interrupted: not failed) and says why it cannot go on."""
    log.error("%s", e.line, extra={"file_only": True})  # log.txt; the CLI prints the message
    if info.is_main:
        last = _last_record(cfg, run_dir)
        write_status(run_dir, last.get("status") or "running", last["step"], last["iterations"],
                     reason=last.get("reason"), metrics=last.get("metrics"), checkpoint_step=e.saved, attention=e.line)


def _record_failure(e: BaseException, cfg: RunConfig, run_dir: Path, tracker: Tracker | None, info: DistInfo):
    """status.json says failed (and why), at the step and checkpoint it last recorded; the tracker too, if its run
    was opened. An expected failure (bad input, missing weights or data) is logged in one line; anything else with
    its traceback."""
    reason, last = f"{type(e).__name__}: {e}", _last_record(cfg, run_dir)
    (log.error if exit_code(e) is not None else log.exception)("run failed after step %d: %s", last["step"], reason)
    if info.is_main:
        write_status(run_dir, "failed", last["step"], last["iterations"], reason=reason, metrics=last.get("metrics"),
                     checkpoint_step=last["checkpoint_step"])
        if tracker is not None:
            tracker.set_tags({"gatscale.failure": reason[:5000]})
            tracker.finish("failed")


class ResumeRefused(InputError, ValueError):
    """The run folder holds a checkpoint of a different config."""


class CheckpointsUnusable(EnvironmentProblem):
    """A checkpoint was completely written but none is usable now: starting over would lose saved progress.
    The message has one line per checkpoint file with its reason; `line` says it all in one line (status.json)."""

    def __init__(self, run_dir: Path, saved: int, files: list[tuple[Path, str]]):
        folder = checkpoint_dir(run_dir)
        what = (f"{run_dir}: a checkpoint was written (step {saved}) but none is usable; refusing to start over from "
                f"step 0, nothing was deleted: restore {folder} from a backup, or `gatscale train --run-dir {run_dir} "
                f"--restart` trains from step 0")
        self.saved = saved
        self.line = f"{what} ({'; '.join(f'{p.name}: {why}' for p, why in files) or f'no checkpoint in {folder}'})"
        listing = [f"  {p.name}: {why}" for p, why in files] or [f"  {folder}: no checkpoint there (deleted or moved?)"]
        super().__init__("\n".join([what + ":", *listing]))


def _last_saved(status: dict, present: list[Path]) -> int:
    """The step of the last checkpoint completely written (0: none): status.json's record or a checkpoint file under
    its final name (written whole: an atomic rename), whichever is later."""
    return max([status.get("checkpoint_step") or 0] + [checkpoint_step(p) for p in present])


def _resume_point(run_dir: Path, status: dict, restart: bool, keys: tuple[str, ...]):
    """(checkpoint dict, its path, warnings): the newest valid checkpoint, or (None, None, ...) to train from step 0.
    Newer invalid checkpoints are set aside, each with a warning. With none valid, the last checkpoint written
    decides: none ever, start from step 0 (nothing is lost); one, CheckpointsUnusable (unless `restart`, or the run
    has ended)."""
    found = find_latest_valid(run_dir, keys, map_location="cpu")
    saved = _last_saved(status, [p for p, _ in found.rejected])
    ended = status.get("status") in TERMINAL  # nothing to resume (_resume says so)
    if found.state is None and saved > 0 and not restart and not ended:
        raise CheckpointsUnusable(run_dir, saved, found.rejected)
    warnings = []
    for path, why in found.rejected:
        warnings.append(f"checkpoint {path.name} skipped: {why}")
        log.warning("warning: checkpoint %s is not usable (%s); trying the previous one", path, why)
    if found.rejected:
        moved = set_aside([p for p, _ in found.rejected])
        warnings.append(f"moved to checkpoints/{REJECTED_DIR}/: {', '.join(p.name for p in moved)}")
        log.warning("warning: moved %d unusable checkpoint(s) to %s (kept for inspection; delete them when done)",
                    len(moved), checkpoint_dir(run_dir) / REJECTED_DIR)
    if found.state is None and not ended:
        if saved > 0:
            log.warning("warning: --restart: training %s from step 0 (its checkpoint of step %d is unusable)", run_dir,
                        saved)
        elif status:
            log.info("%s: no checkpoint had been written yet; starting from step 0 (the lost attempt had reached "
                     "step %d)", run_dir, status.get("step") or 0)
    return found.state, found.path, warnings


def _check_resume_config(cfg: RunConfig, run_dir: Path, saved: dict):
    old = checkpoint_config(saved)
    if config_hash(old) != config_hash(cfg):
        changed = diff(old, cfg, ignore=())  # every difference, the non-result keys (log_every, ...) too
        raise ResumeRefused(f"{run_dir}: the run folder holds a checkpoint of a different config; refusing to resume. "
                         f"Differences: {'; '.join(changed[:10])}. Use another --run-dir to start a new run.")


def total_iterations(cfg: RunConfig, dataset_images: int) -> int:
    """train.iterations, or as many as `train.epochs` passes over the data set take (derived; cfg is not changed)."""
    if cfg.train.epochs is None:
        return cfg.train.iterations
    return math.ceil(cfg.train.epochs * dataset_images / cfg.train.batch_size)


def _resume(cfg: RunConfig, run_dir: Path, info: DistInfo, restart: bool) -> _Start | RunResult:
    """The state to train: G, D, EMA and optimisers built, then loaded from the newest valid checkpoint through the
    CheckpointIO that saves them. The RunResult of a run that has ended (e.g. a second sweep's late relaunch)."""
    data = dataset_info(cfg.data)
    if cfg.eval.fid_every:
        from ..eval.fid import check_feature_extractor
        check_feature_extractor(cfg.eval)  # a missing Inception file fails now, not 2,500 steps in
    st = build_state(cfg, info.device, distributed=info.enabled)
    status = read_status(run_dir) or {}
    saved, saved_path, warnings = _resume_point(run_dir, status, restart, st.checkpoint.keys)
    if saved is not None:
        _check_resume_config(cfg, run_dir, saved["config"])
    if status.get("status") in TERMINAL:
        log.info("run %s already %s at step %d; nothing to do", cfg.name, status["status"], status["step"])
        return RunResult(status["status"], status["step"], status.get("reason"))
    step = 0
    if saved is not None:
        step = st.checkpoint.load(saved)
        log.info("resumed from %s (step %d)", saved_path, step)
    if info.is_main and status:  # an attempt before this one: the curves drop what it logged after `step`
        rewind(run_dir, step)  # (metrics_log.py; status.json's step may lag its last log line)
    return _Start(st, data, total_iterations(cfg, data.num_images), step, warnings)


def _train(cfg: RunConfig, run_dir: Path, tracker: Tracker, info: DistInfo, stop: StopFlag, start: _Start) -> RunResult:
    st, dev, iterations, start_step = start.st, info.device, start.iterations, start.step
    loader = _train_loader(cfg, info, start_step)  # this rank's batches from start_step on
    # Sample grids and FID-k decode with eval.fid_decoder (official train.py: ft-mse), in eval.precision.
    tokenizer = build_eval_tokenizer(cfg, dev, decoder=cfg.eval.fid_decoder) if info.is_main else None
    if info.is_main:
        _first_records(cfg, run_dir, tracker, start, dev)  # after the tracker run's params and tags
    vis_y = class_rows(cfg.data.num_classes).to(dev)  # one row of 8 per class (the first 10 classes)
    vis_z = torch.randn(len(vis_y), st.G.z_dim, generator=torch.Generator().manual_seed(cfg.train.seed + 12345)).to(dev)
    stats, watch, timer = StatsCollector(dev, WATCHED), StabilityWatch(cfg.train.stability), _StepTimer(start_step)
    progress = _progress(start_step, iterations, info.is_main)
    last_metrics: dict = {}  # the latest value of each metric, FIDs included (status.json)
    is_log_step = lambda s: s % cfg.train.log_every == 0 or s == iterations  # noqa: E731
    step, saved_step, t_start = start_step, start_step, time.perf_counter()
    while True:
        # Done? First, so the last step is reported and checkpointed like any other. Divergence (a non-finite
        # watched statistic) and preemption signals are agreed on by all ranks in one small all-reduce, at a
        # step-deterministic cadence (and at every step on a single process, for signals).
        stepped = step > start_step
        log_now = stepped and is_log_step(step)
        fid_now = stepped and bool(cfg.eval.fid_every) and step % cfg.eval.fid_every == 0
        check = not stepped or log_now or step >= iterations or step % cfg.train.divergence_check_every == 0 or \
            (not info.enabled and stop.signum is not None)
        diverged, preempted = _agreed_stop(stats, stop, info) if check else (False, False)  # a host sync
        if diverged:
            names = ", ".join(stats.nonfinite_names()) or "value"
            result = RunResult("diverged", step, f"non-finite {names} at step {step}")
            break
        done = step >= iterations or preempted

        # Report: each statistic's mean over the steps since the last report and over all ranks.
        if log_now:
            seconds = timer.seconds_per_step(step)  # the flags' .tolist() above waited for the device
            metrics = {**stats.mean(info), "lr/g": st.lr_g, "lr/d": st.lr_d, **_perf(seconds, cfg, dev)}
            last_metrics.update(metrics)
            tracker.log_metrics(metrics, step)
            progress(step, metrics)
            if info.is_main:  # what `gatscale sweep` and `gatscale status --watch` show live
                write_status(run_dir, "running", step, iterations, metrics=last_metrics, checkpoint_step=saved_step)
            timer.restart(step)  # reporting is not step time

        # Samples: a fixed grid of the EMA generator.
        if info.is_main and stepped and (step % cfg.train.sample_every == 0 or step == 1 or step == iterations):
            for name in [f"step-{step:07d}.png"] + (["final.png"] if step == iterations else []):
                save_sample_grid(st.G_ema, vis_z, vis_y, tokenizer, run_dir / "samples" / name, tracker, st.autocast,
                                 class_names=start.data.class_names)

        # Eval: FID-k of the EMA generator on rank 0, each FD with its standard error `<fd>_se`; how they were
        # computed (samples, SE method) is the run's tag gatscale.eval (_start_run).
        if fid_now and (fid := _evaluate(st.G_ema, cfg, tokenizer, dev, info)):
            tracker.log_metrics(fid, step)
            last_metrics.update(fid)
            log.info("step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in fid.items()))

        # Stability (train.stability): non-NaN failure modes, judged on rank 0 at log and FID ticks and agreed on
        # by all ranks; the run ends as diverged before this step's checkpoint (the last good one is kept).
        if watch.enabled and (log_now or fid_now) and (reason := _unstable(watch, last_metrics, log_now, info)):
            result = RunResult("diverged", step, f"{reason} at step {step}")
            break

        # Checkpoint, then status.json records it (resume decides from its checkpoint_step).
        if stepped and (step % cfg.train.checkpoint_every == 0 or done):
            saved_step = _save(run_dir, step, iterations, st, info, last_metrics)
        if done:
            when = f"at step {step}" if stepped else f"before step {step + 1}"
            result = RunResult("preempted", step, f"signal {stop.signum} {when}", signum=stop.signum) if preempted \
                else RunResult("finished", step)
            break

        # Step: this rank's batch, then the step's random streams seeded from (seed, rank, step).
        batch = next(loader)
        reseed(cfg.train.seed, info.rank, step)
        x = sample_latents(batch["latent"].to(dev, non_blocking=True), cfg.data.scale)
        y = batch["label"].to(dev, non_blocking=True)
        raw = batch["image"].to(dev, non_blocking=True) if "image" in batch else None
        z = torch.randn(len(y), st.G.z_dim, device=dev)  # one per image of this rank's batch
        stats.report(train_step(st, x, y, z, raw, group_norms=is_log_step(step + 1)))
        step += 1

    return _end_run(cfg, run_dir, tracker, info, result, iterations, last_metrics, saved_step,
                    steps=step - start_step, seconds=time.perf_counter() - t_start)


def _end_run(cfg: RunConfig, run_dir: Path, tracker: Tracker, info: DistInfo, result: RunResult, iterations: int,
             metrics: dict, saved_step: int, steps: int, seconds: float) -> RunResult:
    """Rank 0: status.json and the tracker run say how the run ended (a finished run with the throughput of its
    `steps` in `seconds`)."""
    if info.is_main:
        measured = throughput_record(cfg, info.device, info.world_size, steps, seconds) \
            if result.status == "finished" and steps > 0 else None
        write_status(run_dir, result.status, result.step, iterations, reason=result.reason, metrics=metrics,
                     checkpoint_step=saved_step, throughput=measured)
        if result.status == "diverged":
            tracker.set_tags({"gatscale.diverged_step": str(result.step), "gatscale.divergence_reason": result.reason})
            log.info("DIVERGED: %s; the last good checkpoint is kept", result.reason)
        tracker.finish(result.status)
        log.info("run %s %s at step %d", cfg.name, result.status, result.step)
    barrier(info)
    return result


def _write_config(cfg: RunConfig, path: Path):
    """config.yaml holds the config this run trains (written atomically); one that already holds it, a sweep's
    with its comments, is left as it is."""
    try:
        if to_dict(load_config(path)) == to_dict(cfg):
            return
    except (OSError, ConfigError):  # absent or unreadable: (re)write it
        pass
    dump_config(cfg, path)


def _start_run(cfg: RunConfig, run_dir: Path, tracker: Tracker, start: _Start, info: DistInfo):
    """Rank 0, before the first step: config.yaml, status.json `running`, one log line, and last the tracker run with
    its params (per-step constants among them, logged once) and tags (a failure before it leaves the tracker alone)."""
    st, data, config_file = start.st, start.data, run_dir / "config.yaml"
    _write_config(cfg, config_file)
    write_status(run_dir, "running", start.step, start.iterations, checkpoint_step=start.step)
    log.info("run %s (%s): G %s %.1fM params, D %s %.1fM params, lr G %.3g D %.3g, %d images, %d iterations, %s%s",
             cfg.name, config_hash(cfg), cfg.model.generator.size, count_trainable(st.G) / 1e6,
             cfg.model.discriminator.size, count_trainable(st.D) / 1e6, st.lr_g, st.lr_d, data.num_images,
             start.iterations, info.device,
             ", bf16" if st.autocast is not contextlib.nullcontext else "")
    flops = run_flops(cfg)
    params = {**flatten(to_dict(cfg)), "lr_g": st.lr_g, "lr_d": st.lr_d, "world_size": info.world_size,
              "params_g": count_trainable(st.G), "params_d": count_trainable(st.D),
              "gflops_g": round(flops.g_paper_gflops, 4), "gflops_d": round(flops.d_paper_gflops, 4),
              "dataset_images": data.num_images, "images_per_step": cfg.train.batch_size,
              "flops_per_step": float(flops.iteration)}
    stand_ins = ",".join(part for part, used in (
        ("repa_encoder", st.encoder is not None and st.encoder.stand_in),
        ("eval_dinov2", cfg.eval.fd_dinov2 and not (cfg.eval.dinov2.pretrained or cfg.eval.dinov2.checkpoint))) if used)
    tags = {"gatscale.name": cfg.name, "gatscale.config_hash": config_hash(cfg),
            "gatscale.run_dir": str(run_dir.resolve()), "gatscale.status": "running", "gatscale.stand_in": stand_ins,
            **study_tags(cfg, st.lr_g, st.lr_d)}
    if cfg.tracking.aliases:
        tags["gatscale.aliases"] = cfg.tracking.aliases
    if start.warnings:
        tags["gatscale.checkpoint_warnings"] = "; ".join(start.warnings)[:5000]
    if cfg.eval.fid_every:
        from ..eval.fid import in_training_recipe
        tags["gatscale.eval"] = json.dumps(in_training_recipe(cfg))  # how the in-training evaluations are computed
    tracker.start(run_dir, cfg.name, params, tags)


def _first_records(cfg: RunConfig, run_dir: Path, tracker: Tracker, start: _Start, dev: torch.device):
    """Rank 0, once the tracker run is open: the config file, and (digits, from step 0) what `eval.fid_samples` real
    images score (fd_digits_floor: a perfect generator's value; cached)."""
    tracker.log_artifact(run_dir / "config.yaml")
    if cfg.eval.fid_every and cfg.eval.feature_extractor == "digits" and start.step == 0:
        from ..eval.fid import real_data_floor
        tracker.log_metrics(real_data_floor(cfg, dev), 0)


def _train_loader(cfg: RunConfig, info: DistInfo, start_step: int):
    """This rank's share of each global batch, from `start_step` on. Raw images are read only for REPA's encoder
    (the batches are otherwise the same). The loader is step-pure and each step reseeds after taking its batch, so
    whatever the loader draws changes nothing."""
    loader_cfg = dataclasses.replace(cfg.data, load_images=cfg.data.load_images and cfg.method.repa)
    return build_train_loader(loader_cfg, cfg.train.batch_size // info.world_size, info.rank, info.world_size,
                              cfg.train.seed, start_step)


def _agreed_stop(stats: StatsCollector, stop: StopFlag, info: DistInfo) -> tuple[bool, bool]:
    """(diverged, preempted) as all ranks agree: a non-finite watched statistic on any rank since the last check, a
    preemption signal on any rank. One small all-reduce, and a host sync."""
    flags = torch.stack([stats.nonfinite, torch.tensor(float(stop.signum is not None), device=info.device)])
    diverged, preempted = (all_reduce_max(flags, info) > 0).tolist()
    return diverged, preempted


def _unstable(watch: StabilityWatch, last_metrics: dict, log_tick: bool, info: DistInfo) -> str | None:
    """Why the run is unstable (train.stability), judged on rank 0 at a log tick (all metrics) or a FID tick (the
    Fréchet distances), agreed on by all ranks; None while it is stable."""
    tick = last_metrics if log_tick else {k: v for k, v in last_metrics.items() if k in FD_METRICS}
    reason = watch.check(tick) if info.is_main else None
    if all_reduce_max(torch.tensor(float(reason is not None), device=info.device), info).item() > 0:
        return reason or "unstable (judged on rank 0)"
    return None


class _StepTimer:
    """Wall-clock seconds per step between reports (the time spent reporting excluded)."""

    def __init__(self, step: int):
        self.restart(step)

    def restart(self, step: int):
        self.t, self.step = time.perf_counter(), step

    def seconds_per_step(self, step: int) -> float:
        return (time.perf_counter() - self.t) / max(step - self.step, 1)


def _perf(seconds_per_step: float, cfg: RunConfig, dev: torch.device) -> dict[str, float]:
    perf = {"perf/step_ms": seconds_per_step * 1e3, "perf/images_per_s": cfg.train.batch_size / seconds_per_step}
    if dev.type == "cuda":
        perf["perf/peak_mem_gb"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return perf


def throughput_record(cfg: RunConfig, dev: torch.device, world_size: int, steps: int, seconds: float) -> dict:
    """What this process measured, for the GPU-hour estimates of later runs (status.json `throughput`): images per
    second of wall clock over the whole run, evaluation, samples and checkpoints included (what an hour buys),
    keyed by device, the two networks' shapes, the global batch and the precision."""
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type
    precision = cfg.train.precision if cfg.train.precision != "auto" else ("bf16" if dev.type == "cuda" else "fp32")
    shape = lambda net: {k: net.arch()[k] for k in ("depth", "hidden_size", "patch_size") if k in net.arch()}
    return {"device": name, "devices": world_size, "generator": shape(cfg.model.generator),
            "discriminator": shape(cfg.model.discriminator), "resolution": cfg.data.resolution,
            "batch_size": cfg.train.batch_size, "precision": precision,
            "images_per_s": steps * cfg.train.batch_size / max(seconds, 1e-9), "steps": steps,
            "fid_every": cfg.eval.fid_every}


def _save(run_dir: Path, step: int, iterations: int, st: TrainState, info: DistInfo, metrics: dict) -> int:
    """Rank 0 writes the checkpoint, then status.json records it (checkpoint_step); under DDP all ranks first check
    that their replicas are in sync. Returns the step saved."""
    if info.enabled:
        sums = parameter_checksums(list(st.G.parameters()) + list(st.D.parameters()), info)
        if len(set(sums)) != 1:
            raise RuntimeError(f"DDP replicas diverged at step {step}: parameter checksums {sums}")
        log.info("step %d: %d ranks in sync (parameter checksum %.6f)", step, info.world_size, sums[0])
    if info.is_main:
        st.checkpoint.save(run_dir, step, to_dict(st.cfg), keep=st.cfg.train.keep_checkpoints)
        write_status(run_dir, "running", step, iterations, metrics=metrics, checkpoint_step=step)
    barrier(info)
    return step


def _evaluate(G_ema, cfg, tokenizer, dev, info: DistInfo) -> dict:
    """FID-k of the EMA generator on rank 0 (in eval.precision, not the step's autocast). Whatever it draws from
    the global RNG changes no training stream: the next step reseeds."""
    result = {}
    if info.is_main:
        from ..eval.fid import evaluate_generator
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
        eta = (time.time() - t0) / max(step - start, 1) * (total - step)
        log.info("step %d/%d %s eta %s", step, total, " ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics),
                 time.strftime("%H:%M:%S", time.gmtime(eta)))
    return line


__all__ = ["train", "RunResult"]
