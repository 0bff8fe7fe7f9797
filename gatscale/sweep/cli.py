"""`gatscale sweep SPEC.yaml [--backend local|submitit|ray] [--dry-run] [--max-parallel N] [--profile P.yaml]`.

Expands the spec, asks the run folders, the scheduler and the tracker what already happened, prints the run
table, and launches what is missing: new runs start, preempted or interrupted ones resume from their
checkpoint, failed ones are retried up to max_attempts, finished and diverged ones are skipped. Re-running the
same command after a crash launches exactly what is missing. `--dry-run` prints the table and does nothing
else: no folder, no tracker store, no job.
"""
from __future__ import annotations

import dataclasses
import sys
from collections import Counter

from gatscale.core.config import effective_lr
from gatscale.core.errors import InputError
from gatscale.models.flops import run_flops
from ..train.status import EXIT_PREEMPTED, TERMINAL
from .backends.watcher import JobWatcher
from .launch import Launcher, add_launch_arguments, check_launch_arguments, refuse_conflicts
from .plan import plan, read_folder
from .progress import format_table
from .spec import Spec, load_spec, size_tag
from .status import tracker_states
from .throughput import estimate, load_table, measured_runs


def add_arguments(parser):
    parser.add_argument("spec", help="sweep spec YAML (sweeps/*.yaml; docs/sweeps.md)")
    add_launch_arguments(parser, "runs", wait="wait for the jobs to end and report them")
    parser.add_argument("--until-resolved", action="store_true",
                        help="rounds: run, evaluate the findings, add the next seed to both sides of every unresolved "
                             "one, until all are resolved or --max-seeds / --budget is reached (docs/findings.md)")
    parser.add_argument("--max-seeds", type=int, help="--until-resolved: the most seeds per side (default: the "
                                                      "spec's findings.max_seeds, else 5)")
    parser.add_argument("--budget", type=float, metavar="GPU_HOURS",
                        help="--until-resolved: stop adding seeds once the study's estimated device-hours would pass "
                             "this")


def _model(net) -> str:
    tag = size_tag(net.size)
    if net.depth is None and net.hidden_size is None:
        return tag
    return f"{tag}({net.arch()['depth']}x{net.arch()['hidden_size']})"


def run_table(spec: Spec, planned, device: str) -> str:
    table, measured = load_table(spec.throughput), measured_runs(spec.study_dir.parent)
    rows, hours, labels, devices = [], 0.0, set(), set()
    for p in planned:
        r, cfg = p.run, p.run.config
        est = estimate(r, device, table, measured)
        if est.hours is not None:
            hours += est.hours
        labels.add(est.how)
        devices.add(device if r.gpus else "cpu")
        g, d = _model(cfg.model.generator), _model(cfg.model.discriminator)
        rows.append([r.name + (f" (= {', '.join(r.aliases)})" if r.aliases else ""), r.config_hash,
                     g if g == d else f"{g}/{d}", cfg.method.mng, "on" if cfg.method.repa else "off",
                     f"{effective_lr(cfg, 'generator'):.3g}{' (A)' if cfg.optim.width_aware_lr else ''}",
                     cfg.train.iterations, cfg.train.batch_size, r.gpus or "cpu",
                     f"{run_flops(cfg).g_paper_gflops:.3g}", "" if est.hours is None else f"{est.hours:.3g}",
                     "measured" if est.how.startswith("measured") else "assumed", p.state,
                     p.action + (f": {p.detail}" if p.detail and p.action not in ("refuse", "hold") else "")])
    headers = ["run", "hash", "G/D", "MNG", "REPA", "lr_G", "iters", "batch", "GPUs", "GFLOPs", "GPU-h", "from",
               "state", "action"]
    notes = (f"GFLOPs: G forward per image, multiply-accumulates (paper convention). GPU-h: device-hours on "
             f"{', '.join(sorted(devices))}, {', '.join(sorted(labels))} "
             f"({'configs/throughput.yaml' if spec.throughput is None else spec.throughput}); total {hours:.4g} "
             f"(an estimate unless every row says measured: finished runs of the same shape in "
             f"{spec.study_dir.parent}, or the table). (A): width-aware LR.")
    return format_table(headers, rows) + "\n" + notes


def main(args) -> int:
    check_launch_arguments(args)
    until = getattr(args, "until_resolved", False)
    for flag in ("max_seeds", "budget"):
        if getattr(args, flag, None) is not None and not until:
            raise InputError(f"--{flag.replace('_', '-')} needs --until-resolved")
    # a ConfigError is reported by gatscale.cli
    spec = load_spec(args.spec, args.runs_dir, args.profile, args.overrides)
    if spec.probe is not None:
        raise InputError(f"{spec.path} has a probe: section: run `gatscale probe-lr {args.spec}`")
    if until:
        from .until_resolved import until_resolved
        return until_resolved(spec, args, sweep_round)
    return sweep_round(spec, args)


def sweep_round(spec: Spec, args, runs=None) -> int:
    """Plan and launch the study's missing runs; the command's exit code. `runs`: the spec's, or those and the seeds
    --until-resolved added (the sweep's parent run stays the spec's)."""
    launcher = Launcher(spec, args, {}, "gatscale sweep")
    if runs is not None:
        spec = dataclasses.replace(spec, runs=runs)
    folders = [read_folder(r) for r in spec.runs]  # each run folder read once
    active = JobWatcher().active([j for f in folders if (j := f.last_job)])
    planned = plan(spec, tracker_states(spec, read_only=args.dry_run), active, folders)
    print(f"study {spec.name} ({spec.path}): {len(spec.runs)} runs in {spec.study_dir}, experiment {spec.name!r} "
          f"at {spec.tracking.uri}")
    print(run_table(spec, planned, spec.device))
    print("plan: " + ", ".join(f"{n} {a}" for a, n in sorted(Counter(p.action for p in planned).items())))
    refuse_conflicts(planned)
    for p in planned:
        if p.action == "hold":
            print(f"gatscale sweep: {p.run.name} needs attention, not relaunched: {p.detail}", file=sys.stderr)
    if args.dry_run:
        return 0
    if not any(p.launch for p in planned):
        print("nothing to launch")
        return 1 if any(p.action in ("give-up", "hold") for p in planned) else 0

    outcomes = launcher.launch(planned)
    states = [o.state for o in outcomes] + [p.state for p in planned if not p.launch]
    print("summary: " + ", ".join(f"{n} {s}" for s, n in sorted(Counter(states).items())))
    interrupted = any(o.state == "preempted" for o in outcomes)
    if not set(states) & {"submitted", "running", "queued"}:
        launcher.end("finished" if all(s in TERMINAL for s in states) else "preempted" if interrupted else "failed")
    if interrupted:
        print(f"re-run `gatscale sweep {args.spec}` to resume the stopped runs from their checkpoints")
        return EXIT_PREEMPTED
    return 0 if all(s in (*TERMINAL, "submitted", "running", "queued") for s in states) else 1
