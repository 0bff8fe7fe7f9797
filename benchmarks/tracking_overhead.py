"""Overhead of `MlflowTracker.log_metrics` on a small CPU training step (goal: < 1%).

    python benchmarks/tracking_overhead.py [--model mlp|gan] [--step-ms 10] [--steps 300] [--rounds 5]
                                           [--uri URI]

The worst case is logged: 15 metrics every step (the trainer logs every train.log_every steps). The step is
  mlp: a synthetic MLP forward+backward+Adam step whose batch is calibrated to >= --step-ms of CPU (default)
  gan: the tiny GAT G/D pair (GAT-S/2 shrunk to depth 4, width 64, 2 heads, 16x16x3, 10 classes): G forward,
       D forward on the MNG levels, backward, two Adam steps
Reported in CPU time of the training thread
(time.thread_time: unlike wall time, not inflated when other jobs share the cores):
  direct:      CPU inside log_metrics per step / CPU of a step without logging
  with:        CPU of a step with logging / without, in interleaved blocks (both include everything the training
               thread does); the same in wall time, which on a shared machine mostly shows the machine's noise
  sender:      CPU the sender process spends per logged step (outside the training process)
and whether every logged metric reached the store. Default store: a fresh SQLite file in a temp folder (the
costliest: MLflow's SQL store spends ~0.1-0.2 ms of Python per metric); --uri http://host:port for a server.
"""
import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import psutil
import torch

from gatscale.core.config import TrackingConfig
from gatscale.models import build_discriminator, build_generator
from gatscale.tracking.mlflow_tracker import MlflowTracker

METRICS = ["loss/d", "loss/g", "loss/d_adv", "loss/r1", "loss/r2", "loss/repa", "logits/real", "logits/fake",
           "grad_norm/g", "grad_norm/d", "lr/g", "lr/d", "perf/images_per_s", "perf/step_ms", "epoch"]


def gan_step(batch_size: int = 8):
    tiny = dict(depth=4, hidden_size=64, num_heads=2, input_size=16, in_channels=3, num_classes=10)
    G = build_generator("GAT-S/2", **tiny)
    D = build_discriminator("GAT-S/2", **tiny, cmap_dim=64, projector_dim=64, encoder_dim=64)
    opt = torch.optim.Adam([*G.parameters(), *D.parameters()], lr=1e-4, betas=(0.0, 0.99))
    z, y = torch.randn(batch_size, 64), torch.randint(0, 10, (batch_size,))

    def step() -> float:
        loss = torch.nn.functional.softplus(-D(G(z, y, return_levels=True), y)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def mlp_step(target_ms: float):
    """An MLP step; the batch doubles until one step takes at least `target_ms` of CPU time."""
    net = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.Linear(512, 512),
                              torch.nn.GELU(), torch.nn.Linear(512, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    batch = 8
    while True:
        x = torch.randn(batch, 256)

        def step() -> float:
            loss = net(x).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.item()

        for _ in range(5):
            step()  # warm-up
        times = []
        for _ in range(20):
            begin = time.thread_time()
            step()
            times.append(time.thread_time() - begin)
        if statistics.median(times) * 1e3 >= target_ms or batch >= 1 << 16:
            return step, batch
        batch *= 2


def run_block(step, tracker, first_step: int, steps: int) -> dict:
    """Per step: wall seconds, CPU seconds of this (the training) thread, and CPU seconds inside log_metrics."""
    in_log = 0.0
    wall, cpu = time.perf_counter(), time.thread_time()
    for i in range(steps):
        loss = step()
        if tracker is not None:
            metrics = {name: loss + k for k, name in enumerate(METRICS)}
            t0 = time.thread_time()
            tracker.log_metrics(metrics, first_step + i)
            in_log += time.thread_time() - t0
    return dict(wall=(time.perf_counter() - wall) / steps, cpu=(time.thread_time() - cpu) / steps,
                log=in_log / steps)


def sender_cpu(tracker) -> float:
    """CPU seconds used so far by the sender process."""
    if tracker._proc.poll() is None:
        times = psutil.Process(tracker._proc.pid).cpu_times()
        return times.user + times.system
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped: counted with this process's children
    return usage.ru_utime + usage.ru_stime


def measure(step, uri: str, folder: Path, args) -> dict:
    tracker = MlflowTracker(TrackingConfig(uri=uri, experiment="tracking-overhead"))
    children_before = sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])
    tracker.start(folder / "run", "overhead", {}, {})
    tracker.log_metrics({"bench/warmup": 0.0}, 0)  # measure once the sender has delivered (imports done)
    deadline = time.monotonic() + 300
    while tracker.log.size() > tracker.log.load_state()["delivered"] and time.monotonic() < deadline:
        time.sleep(0.2)
    sender_before = sender_cpu(tracker)
    without, with_, logged = [], [], 0
    for _ in range(args.rounds):
        without.append(run_block(step, None, 0, args.steps))
        with_.append(run_block(step, tracker, logged, args.steps))
        logged += args.steps
    begin = time.perf_counter()
    tracker.finish("finished")
    finish_s = time.perf_counter() - begin
    sender_after = sender_cpu(tracker) - children_before

    from mlflow import MlflowClient
    client = MlflowClient(tracker.uri)
    complete = all(len(client.get_metric_history(tracker.run_id, name)) == logged for name in METRICS)
    med = lambda blocks, key: statistics.median(b[key] for b in blocks)  # noqa: E731
    step_cpu = med(without, "cpu")
    return dict(step_cpu_ms=step_cpu * 1e3, step_wall_ms=med(without, "wall") * 1e3,
                log_us=med(with_, "log") * 1e6, direct=med(with_, "log") / step_cpu * 100,
                cpu_with=(med(with_, "cpu") / step_cpu - 1) * 100,
                wall_with=(med(with_, "wall") / med(without, "wall") - 1) * 100,
                sender_us=(sender_after - sender_before) / logged * 1e6, finish_s=finish_s, complete=complete,
                logged=logged, walls=([b["wall"] for b in without], [b["wall"] for b in with_]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["mlp", "gan"], default="mlp")
    parser.add_argument("--step-ms", type=float, default=10.0, help="target step time of the mlp step")
    parser.add_argument("--steps", type=int, default=300, help="steps per block")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved (without, with) block pairs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--uri", default=None, help="tracking store (default: a fresh SQLite file)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp(prefix="tracking-overhead-"))
    uri = args.uri or f"sqlite:///{folder}/mlflow.db"
    if args.model == "gan":
        step, what = gan_step(), "tiny GAT G/D step (batch 8)"
    else:
        step, batch = mlp_step(args.step_ms)
        what = f"MLP step (batch {batch})"
    for _ in range(20):
        step()  # warm-up

    print(f"store: {uri}; {what}, {args.threads} torch thread(s); {len(METRICS)} metrics logged every step; "
          f"{args.rounds} interleaved blocks of {args.steps} steps")
    r = measure(step, uri, folder, args)
    print(f"step {r['step_cpu_ms']:.2f} ms CPU ({r['step_wall_ms']:.2f} ms wall); "
          f"log_metrics {r['log_us']:.1f} us CPU per call = {r['direct']:.3f}% of a step; training-thread CPU "
          f"per step with logging {r['cpu_with']:+.2f}%; wall {r['wall_with']:+.2f}% (noisy)")
    print(f"    sender: {r['sender_us']:.0f} us CPU per logged step ({len(METRICS)} metrics) in its own process; "
          f"finish {r['finish_s']:.1f} s; all {r['logged']} x {len(METRICS)} metrics in the store: "
          f"{r['complete']}")
    print(f"    block wall ms/step without: {', '.join(f'{x * 1e3:.2f}' for x in r['walls'][0])}; "
          f"with: {', '.join(f'{x * 1e3:.2f}' for x in r['walls'][1])}")


if __name__ == "__main__":
    main()
