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
from collections import Counter, defaultdict

from gatscale.core.config import ConfigError, effective_lr
from gatscale.core.errors import InputError
from gatscale.models.flops import run_flops
from ..train.status import EXIT_PREEMPTED, TERMINAL
from .backends import BACKENDS, Options, cannot_start, launch, note_not_started, prepare
from .backends.watcher import JobWatcher
from .plan import plan, read_folder
from .spec import Spec, load_spec, size_tag
from .progress import format_table
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
                        help="--until-resolved: stop adding seeds once the study's estimated device-hours would pass this")


def add_launch_arguments(parser, what: str, wait: str):
    """The options of every command that launches runs through a backend (`sweep`, `probe-lr`)."""
    parser.add_argument("--backend", choices=list(BACKENDS), default="local",
                        help="local: this machine; submitit: SLURM job arrays; ray: Ray Tune trials (default: local)")
    parser.add_argument("--dry-run", action="store_true", help=f"print the {what} and what would happen; change nothing")
    parser.add_argument("--max-parallel", type=int, help=f"{what} at once (local, ray; default: CPUs, or GPUs)")
    parser.add_argument("--profile", help="cluster profile YAML or name in slurm/profiles (default: the spec's profile)")
    parser.add_argument("--runs-dir", help="folder holding <study>/<run> (default: the spec's runs_dir, else runs)")
    parser.add_argument("--cluster", choices=["auto", "slurm", "local", "debug"], default="auto",
                        help="submitit executor (default auto: SLURM when sbatch exists, else local)")
    parser.add_argument("--wait", action="store_true", help=f"submitit: {wait}")
    parser.add_argument("--ray-address", help="ray: an existing cluster ('auto', 'ray://head:10001'; default: "
                                              "RAY_ADDRESS, else a local Ray on this machine's CPUs)")


def launch_options(args, spec: Spec) -> Options:
    """The backend options of `add_launch_arguments`' flags."""
    return Options(max_parallel=args.max_parallel, max_attempts=spec.max_attempts, profile=spec.profile,
                   submitit_cluster=None if args.cluster == "auto" else args.cluster,
                   submitit_wait=args.wait, ray_address=args.ray_address, study_dir=spec.study_dir)


def _model(net) -> str:
    tag = size_tag(net.size)
    return tag if net.depth is None and net.hidden_size is None else f"{tag}({net.arch()['depth']}x{net.arch()['hidden_size']})"


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
        rows.append([r.name + (f" (= {', '.join(r.aliases)})" if r.aliases else ""), r.config_hash, g if g == d else f"{g}/{d}", cfg.method.mng,
                     "on" if cfg.method.repa else "off",
                     f"{effective_lr(cfg, 'generator'):.3g}{' (A)' if cfg.optim.width_aware_lr else ''}",
                     cfg.train.iterations, cfg.train.batch_size, r.gpus or "cpu",
                     f"{run_flops(cfg).g_paper_gflops:.3g}", "" if est.hours is None else f"{est.hours:.3g}",
                     "measured" if est.how.startswith("measured") else "assumed", p.state,
                     p.action + (f": {p.detail}" if p.detail and p.action not in ("refuse", "hold") else "")])
    headers = ["run", "hash", "G/D", "MNG", "REPA", "lr_G", "iters", "batch", "GPUs", "GFLOPs", "GPU-h", "from", "state",
               "action"]
    notes = (f"GFLOPs: G forward per image, multiply-accumulates (paper convention). GPU-h: device-hours on "
             f"{', '.join(sorted(devices))}, {', '.join(sorted(labels))} "
             f"({'configs/throughput.yaml' if spec.throughput is None else spec.throughput}); total {hours:.4g} "
             f"(an estimate unless every row says measured: finished runs of the same shape in "
             f"{spec.study_dir.parent}, or the table). (A): width-aware LR.")
    return format_table(headers, rows) + "\n" + notes


def main(args) -> int:
    if args.max_parallel is not None and args.max_parallel < 1:
        raise ConfigError(None, "--max-parallel", args.max_parallel, "must be >= 1")
    until = getattr(args, "until_resolved", False)
    for flag in ("max_seeds", "budget"):
        if getattr(args, flag, None) is not None and not until:
            raise InputError(f"gatscale sweep: --{flag.replace('_', '-')} needs --until-resolved")
    spec = load_spec(args.spec, args.runs_dir, args.profile)  # a ConfigError is reported by gatscale.cli
    if spec.probe is not None:
        raise InputError(f"gatscale sweep: {spec.path} has a probe: section: run `gatscale probe-lr {args.spec}`")
    if until:
        from .until_resolved import until_resolved
        return until_resolved(spec, args, sweep_round)
    return sweep_round(spec, args).code


@dataclasses.dataclass
class Round:
    """What one launch of a study's runs did: its exit code, the sweep's parent run, every run's state."""
    code: int
    parent: str | None = None
    tracking: object = None
    states: list = dataclasses.field(default_factory=list)


def sweep_round(spec: Spec, args, runs=None) -> Round:
    """Plan and launch the study's missing runs (`runs`: the spec's, or those and the seeds --until-resolved added;
    the sweep's parent run stays the spec's)."""
    identity = spec.spec_hash
    if runs is not None:
        spec = dataclasses.replace(spec, runs=runs)
    folders = [read_folder(r) for r in spec.runs]  # each run folder read once
    active = JobWatcher().active([j for f in folders if (j := f.last_job)])
    planned = plan(spec, tracker_states(spec, read_only=args.dry_run), active, folders)
    print(f"study {spec.name} ({spec.path}): {len(spec.runs)} runs in {spec.study_dir}, experiment {spec.name!r} "
          f"at {spec.tracking.uri}")
    print(run_table(spec, planned, spec.device))
    print("plan: " + ", ".join(f"{n} {a}" for a, n in sorted(Counter(p.action for p in planned).items())))
    conflicts = [p for p in planned if p.action == "refuse"]
    for p in conflicts:
        print(f"gatscale sweep: {p.detail}", file=sys.stderr)
    if conflicts:
        return Round(2)
    for p in planned:
        if p.action == "hold":
            print(f"gatscale sweep: {p.run.name} needs attention, not relaunched: {p.detail}", file=sys.stderr)
    if args.dry_run:
        return Round(0, states=[p.state for p in planned])
    todo = [p for p in planned if p.launch]
    options = launch_options(args, spec)
    blocked = cannot_start(args.backend, [p.run for p in todo], options) if todo else {}
    if blocked:
        _explain_blocked(blocked, args.backend)
        for p in todo:
            if p.run.name in blocked:
                note_not_started(p.run, blocked[p.run.name])
        todo = [p for p in todo if p.run.name not in blocked]
        if not todo:
            print(f"gatscale sweep: nothing started: none of the {len(blocked)} run(s) to launch can start here",
                  file=sys.stderr)
            return Round(1, states=[p.state for p in planned])
    if not todo:
        print("nothing to launch")
        return Round(1 if any(p.action in ("give-up", "hold") for p in planned) else 0, states=[p.state for p in planned])

    uri, parent, tracking = spec.tracking.uri, None, spec.tracking
    if spec.tracking.backend != "none":
        from ..tracking import ensure_store, end_sweep_run, start_sweep_run
        uri = ensure_store(spec.tracking.uri)  # once, before fanning out
        tracking = dataclasses.replace(spec.tracking, uri=uri)
        parent = start_sweep_run(tracking, spec.name, identity,
                                 {"spec": str(spec.path), "runs": len(spec.runs), "backend": args.backend})
    for p in todo:
        prepare(p, spec, parent, uri)
    outcomes = launch(args.backend, [p.run for p in todo], options)

    states = [o.state for o in outcomes] + [p.state for p in planned if not p.launch] + ["not-started"] * len(blocked)
    print("summary: " + ", ".join(f"{n} {s}" for s, n in sorted(Counter(states).items())))
    interrupted = any(o.state == "preempted" for o in outcomes)
    if parent is not None and not set(states) & {"submitted", "running", "queued"}:
        final = "finished" if all(s in TERMINAL for s in states) else "preempted" if interrupted else "failed"
        end_sweep_run(tracking, parent, final)
    if interrupted:
        print(f"re-run `gatscale sweep {args.spec}` to resume the stopped runs from their checkpoints")
        return Round(EXIT_PREEMPTED, parent, tracking, states)
    return Round(0 if all(s in (*TERMINAL, "submitted", "running", "queued") for s in states) else 1, parent, tracking,
                 states)


def _explain_blocked(blocked: dict[str, str], backend: str):
    """One line per reason: '6 runs cannot start here: needs 1 GPU; this machine (host) has 0 -- use ... (names)'."""
    by_reason = defaultdict(list)
    for name, why in blocked.items():
        by_reason[why].append(name)
    hint = " -- use --backend submitit --profile PROFILE (SLURM) or --backend ray" if backend == "local" else ""
    for why, names in by_reason.items():
        shown = ", ".join(names[:4]) + (f", ... ({len(names) - 4} more)" if len(names) > 4 else "")
        print(f"gatscale sweep: {len(names)} run{'s' * (len(names) > 1)} cannot start here: {why}{hint} ({shown})",
              file=sys.stderr)
