"""Local backend: the runs on this machine, `max_parallel` at a time, each `gatscale train` its own process.

Runs start longest first. A CPU run gets OMP_NUM_THREADS = CPUs / max_parallel (unless set); a GPU run gets
its own GPUs through CUDA_VISIBLE_DEVICES (torchrun when it asks for several). A run that fails is relaunched
until it has failed `max_attempts` times. Just before each launch the run folder is asked again: a run another
process trains now (its lock is held) or that ended meanwhile is not launched. While they train, the console
shows each run's state, step, images/s, ETA and latest FID (progress.py): a live table on a terminal, a line
every 30 s otherwise.

Stopping: the runs stay in the sweep's process group but ignore SIGINT, so Ctrl-C reaches only the sweep,
which forwards SIGTERM to every run (as does a SIGTERM to the sweep): each trainer checkpoints at its next
step boundary and exits as `preempted`; the sweep waits for them and exits 75. Re-running the command resumes
them. A SIGKILL to the whole group (a lost allocation) kills the runs too; their checkpoints remain.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

from ..progress import LiveProgress, run_progress
from ..spec import Run
from ..throughput import run_cost
from . import Options, Outcome, child_env, count_failure, outcome_of, skip_reason, train_command


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited through exec: Ctrl-C is the sweep's to forward


def _num_gpus() -> int:
    import torch
    return torch.cuda.device_count()


def cannot_start(runs: list[Run], options: Options) -> dict[str, str]:
    """The runs that ask for more GPUs than this machine has."""
    num_gpus = _num_gpus()
    return {r.name: f"needs {r.gpus} GPU{'s' * (r.gpus > 1)}; this machine ({os.uname().nodename}) has {num_gpus}"
            for r in runs if r.gpus > num_gpus}


def launch(runs: list[Run], options: Options) -> list[Outcome]:
    num_gpus = _num_gpus()
    outcomes = {name: Outcome(name, "not-started", detail=why) for name, why in cannot_start(runs, options).items()}
    queue = sorted((r for r in runs if r.name not in outcomes), key=run_cost, reverse=True)
    cpus = os.cpu_count() or 1
    cpu_only = all(r.gpus == 0 for r in queue)
    max_parallel = options.max_parallel or (cpus if cpu_only else max(num_gpus, 1))
    threads = max(1, cpus // max(1, min(max_parallel, len(queue))))
    free_gpus = list(range(num_gpus))
    running: dict[int, tuple[Run, subprocess.Popen, list[int], float]] = {}
    stopping = []
    states = {r.name: "queued" for r in queue}
    live = LiveProgress()

    def rows():  # read from the run folders only when the display is due
        return [run_progress(r.name, r.run_dir, r.config.train.iterations, states[r.name]) for r in runs
                if r.name in states]

    def forward(signum, frame):
        if not stopping:
            live.message(f"gatscale sweep: {signal.Signals(signum).name}: asking {len(running)} run(s) to checkpoint "
                         f"and stop")
        stopping.append(signum)
        for _, proc, _, _ in running.values():
            proc.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    print(f"gatscale sweep: {len(queue)} run(s) on this machine, {max_parallel} at a time; each run's log is "
          f"<run folder>/stdout.txt", flush=True)
    try:
        while running or (queue and not stopping):
            while queue and not stopping and len(running) < max_parallel:
                run = next((r for r in queue if r.gpus <= len(free_gpus)), None)
                if run is None:
                    break
                queue.remove(run)
                if (skipped := skip_reason(run)) is not None:
                    outcomes[run.name] = skipped
                    print(f"  {skipped.state:<8} {run.name}: {skipped.detail}", flush=True)
                    continue
                gpus = [free_gpus.pop(0) for _ in range(run.gpus)]
                with open(run.run_dir / "stdout.txt", "a") as out:
                    proc = subprocess.Popen(train_command(run), cwd=options.cwd, stdout=out, stderr=subprocess.STDOUT,
                                            env=child_env(threads if run.gpus == 0 else None, gpus if gpus else None),
                                            preexec_fn=_ignore_sigint)
                running[proc.pid] = (run, proc, gpus, time.time())
                states[run.name] = "running"
                on_gpus = ", GPUs " + ",".join(map(str, gpus)) if gpus else ""
                live.message(f"  started  {run.name} (pid {proc.pid}{on_gpus}), log {run.run_dir / 'stdout.txt'}")
            live.update(rows)
            time.sleep(0.2)
            for pid, (run, proc, gpus, started) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[pid]
                free_gpus.extend(gpus)
                outcome = outcome_of(run, proc.returncode)
                if outcome.state == "failed":
                    failures = count_failure(run, proc.returncode, started)
                    if failures < options.max_attempts and not stopping:
                        live.message(f"  failed   {run.name}: {outcome.detail} (attempt {failures} of "
                                     f"{options.max_attempts}; retrying; log {run.run_dir / 'stdout.txt'})")
                        states[run.name] = "queued"
                        queue.append(run)
                        continue
                    outcome.detail = f"{outcome.detail} (failed {failures} of {options.max_attempts} attempts)"
                outcomes[run.name] = outcome
                states[run.name] = outcome.state
                live.message(f"  {outcome.state:<8} {run.name} at step {outcome.step} ({time.time() - started:.0f} s)"
                             + (f": {outcome.detail}" if outcome.detail else ""))
        live.update(rows, force=True)
        live.close()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    for run in queue:
        outcomes[run.name] = Outcome(run.name, "not-started", detail="the sweep was stopped first")
    return [outcomes[r.name] for r in runs if r.name in outcomes]
