"""Throughput of the full GAT training iteration (D step + G step + EMA), exactly as the trainer runs it.

    python benchmarks/train_step.py --size GAT-S/2 --batch 8                       # CPU, float32
    python benchmarks/train_step.py --size GAT-XL/2 --batch 64 --device cuda --precision bf16 [--compile] [--grad-ckpt]
    python benchmarks/train_step.py --spec sweeps/demo.yaml --run B2-mng-repa-lrA-s0 --threads 1   # a sweep's run
    python benchmarks/train_step.py --config configs/tiny-cpu.yaml --set train.batch_size=64 --threads 1  # a run config

Prints ms per iteration (median of timed iterations after warm-up, CUDA-synchronised), images/s,
achieved TFLOP/s (FLOPs from gatscale.models.flops.run_flops: D step with both approximated-penalty passes and
the REPA encoder, G step) and MFU when the device's peak is known (H100/H200 bf16 dense ~790 TFLOP/s,
as measured on such a machine) or given with --peak-tflops. Synthetic data of ImageNet-256 shapes
(SD-VAE latents 4x32x32, uint8 images 3x256x256), or of a sweep run's own config with --spec/--run, or of a run
config with --config/--set (then its sizes, batch, method and encoder; the size flags are ignored); random
weights (timing only).
"""
import argparse
import statistics
import time

import torch

from gatscale.core.config import RunConfig, replace
from gatscale.models.flops import run_flops
from gatscale.train.step import build_state, train_step

KNOWN_PEAK_TFLOPS = {"H100": 790.0, "H200": 790.0}  # bf16 dense, measured on such machines


def benchmark_config(args) -> RunConfig:
    if args.spec:
        return spec_run_config(args.spec, args.run)
    if args.config:
        from gatscale.core.config import load_config
        return load_config(args.config, args.overrides)
    changes = {
        "model.generator.size": args.size, "model.discriminator.size": args.d_size or args.size,
        "model.grad_checkpointing": args.grad_ckpt, "model.compile": args.compile,
        "data.tokenizer": "sd-vae", "data.resolution": args.latent_size * 8, "data.num_classes": args.num_classes,
        "train.batch_size": args.batch, "train.precision": args.precision,
        "method.repa": not args.no_repa, "encoder.pretrained": False, "encoder.name": args.encoder,
        "method.mng": args.mng,
    }
    for key in ("depth", "hidden_size", "num_heads"):
        if getattr(args, key) is not None:
            changes[f"model.generator.{key}"] = changes[f"model.discriminator.{key}"] = getattr(args, key)
    return replace(RunConfig(), **changes)


def spec_run_config(spec_path: str, name: str | None) -> RunConfig:
    """The resolved config of run `name` of a sweep spec (as `gatscale sweep` would train it)."""
    from gatscale.sweep.spec import load_spec

    runs = {r.name: r for r in load_spec(spec_path).runs}
    if name not in runs:
        raise SystemExit(f"--run {name!r}: not a run of {spec_path}; its runs: {', '.join(runs)}")
    return runs[name].config


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given:
        return given
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return next((v for k, v in KNOWN_PEAK_TFLOPS.items() if k in name), None)
    return None


def synthetic_batch(cfg: RunConfig, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B, C, S = cfg.train.batch_size, cfg.data.latent_channels, cfg.data.latent_size
    x = torch.randn(B, C, S, S, generator=g).to(device)
    y = torch.randint(0, cfg.data.num_classes, (B,), generator=g).to(device)
    R = cfg.data.resolution
    raw = torch.randint(0, 256, (B, 3, R, R), dtype=torch.uint8, generator=g).to(device)
    return x, y, raw


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_iterations(step_fn, device, warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        step_fn()
    sync(device)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        step_fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return times


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="GAT-S/2")
    p.add_argument("--d-size", help="discriminator size (default: --size)")
    for flag in ("--depth", "--hidden-size", "--num-heads"):
        p.add_argument(flag, type=int)
    p.add_argument("--batch", type=int, default=8, help="batch on this device")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--grad-ckpt", action="store_true", help="checkpoint every block (the official code always does)")
    p.add_argument("--no-repa", action="store_true")
    p.add_argument("--mng", default="exp", choices=["exp", "linear", "vp", "off"])
    p.add_argument("--encoder", default="vit_base_patch14_dinov2.lvd142m")
    p.add_argument("--latent-size", type=int, default=32)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--peak-tflops", type=float)
    p.add_argument("--spec", help="a sweep spec: time one of its runs (with --run) instead of the synthetic shapes")
    p.add_argument("--run", help="the run's name in --spec, e.g. B2-mng-repa-lrA-s0")
    p.add_argument("--config", help="a run config YAML to time instead of the synthetic shapes")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="with --config: override a value (repeatable)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; the demo gives each run 1)")
    return p


def main():
    args = parser().parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    cfg = benchmark_config(args)
    state = build_state(cfg, device)
    x, y, raw = synthetic_batch(cfg, device)
    z = torch.randn(cfg.train.batch_size, cfg.model.z_dim, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = time_iterations(lambda: train_step(state, x, y, z, raw if cfg.method.repa else None), device,
                            args.warmup, args.iters)
    ms = statistics.median(times) * 1e3
    flops = run_flops(cfg).iteration
    tflops = flops / (ms / 1e3) / 1e12
    peak = peak_tflops(device, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name} ({torch.get_num_threads()} threads)")
    print(f"G {cfg.model.generator.size} D {cfg.model.discriminator.size} batch {cfg.train.batch_size} {args.precision}"
          f" width {cfg.model.generator.arch()['hidden_size']} depth {cfg.model.generator.arch()['depth']}"
          f" compile={args.compile} grad_ckpt={args.grad_ckpt} repa={cfg.method.repa} mng={cfg.method.mng}")
    print(f"ms/iteration {ms:.1f} (median of {args.iters}; min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f})")
    print(f"iterations/s {1e3 / ms:.3f}  images/s {cfg.train.batch_size * 1e3 / ms:.2f}")
    mfu = f"  MFU {tflops / peak:.1%} of {peak:.0f}" if peak else ""
    print(f"TFLOP/s {tflops:.3f} (iteration = {flops / 1e12:.3f} TFLOP){mfu}")
    if device.type == "cuda":
        print(f"peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
