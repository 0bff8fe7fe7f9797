"""One launch sequence for every command that trains a study's runs: `gatscale sweep` (each --until-resolved round
too) and `gatscale probe-lr` (round after round of trials):

    refuse conflicts -> set aside what this backend cannot start here -> the study's parent run -> prepare -> launch

A conflict (a run folder holding another config under the run's name) stops the command before anything is
written, through the one error path (`gatscale: error: ...`, exit 2). A run the backend cannot start here
(e.g. it needs a GPU this machine lacks) is noted in its sweep.json and reported as `not-started`; when none can
start, no parent run is created. The parent run is created once, at the first launch that starts something, and
every later launch of the same Launcher nests its runs under it.
"""
from __future__ import annotations

import dataclasses
import sys
from collections import defaultdict

from gatscale.core.config import ConfigError
from gatscale.core.errors import InputError
from .backends import BACKENDS, Options, Outcome, cannot_start, launch, note_not_started, prepare
from .plan import Planned
from .spec import Spec, add_set_argument


def add_launch_arguments(parser, what: str, wait: str):
    """The options of every command that launches runs through a backend (`sweep`, `probe-lr`)."""
    parser.add_argument("--backend", choices=list(BACKENDS), default="local",
                        help="local: this machine; submitit: SLURM job arrays; ray: Ray Tune trials (default: local)")
    parser.add_argument("--dry-run", action="store_true",
                        help=f"print the {what} and what would happen; change nothing")
    parser.add_argument("--max-parallel", type=int, help=f"{what} at once (local, ray; default: CPUs, or GPUs)")
    parser.add_argument("--profile",
                        help="cluster profile YAML or name in slurm/profiles (default: the spec's profile)")
    parser.add_argument("--runs-dir", help="folder holding <study>/<run> (default: the spec's runs_dir, else runs)")
    add_set_argument(parser)
    parser.add_argument("--cluster", choices=["auto", "slurm", "local", "debug"], default="auto",
                        help="submitit executor (default auto: SLURM when sbatch exists, else local)")
    parser.add_argument("--wait", action="store_true", help=f"submitit: {wait}")
    parser.add_argument("--ray-address", help="ray: an existing cluster ('auto', 'ray://head:10001'; default: "
                                              "RAY_ADDRESS, else a local Ray on this machine's CPUs)")


def check_launch_arguments(args):
    """The flags of `add_launch_arguments` that argparse cannot check, before the spec is read."""
    if args.max_parallel is not None and args.max_parallel < 1:
        raise ConfigError(None, "--max-parallel", args.max_parallel, "must be >= 1")


def launch_options(args, spec: Spec) -> Options:
    """The backend options of `add_launch_arguments`' flags."""
    return Options(max_parallel=args.max_parallel, max_attempts=spec.max_attempts, profile=spec.profile,
                   submitit_cluster=None if args.cluster == "auto" else args.cluster,
                   submitit_wait=args.wait, ray_address=args.ray_address, study_dir=spec.study_dir)


def refuse_conflicts(planned: list[Planned]):
    """An InputError when a run folder holds another config under a run's name (the plan's `refuse`)."""
    conflicts = [p for p in planned if p.action == "refuse"]
    if len(conflicts) == 1:
        raise InputError(conflicts[0].detail)
    if conflicts:
        names = ", ".join(p.run.name for p in conflicts)
        raise InputError(f"{len(conflicts)} run folders hold another config under their run's name ({names}); nothing "
                         f"was launched. The first: {conflicts[0].detail}")


class Launcher:
    """The launches of one study under one parent run in the tracker. `params`: logged on the parent run when it is
    created (e.g. {"kind": "probe-lr"}), with the command line's --set; `prog` prefixes the notes printed on stderr
    ('gatscale sweep')."""

    def __init__(self, spec: Spec, args, params: dict, prog: str):
        self.spec, self.backend, self.options, self.prog = spec, args.backend, launch_options(args, spec), prog
        self.params = {"spec": str(spec.path), "runs": len(spec.runs), "backend": args.backend, **params,
                       **({"set": " ".join(args.overrides)} if args.overrides else {})}
        self.identity = spec.spec_hash           # the study's, whichever runs a launch gets
        self.tracking, self.parent = spec.tracking, None

    def launch(self, planned: list[Planned]) -> list[Outcome]:
        """Train (or submit) the planned runs that need it: an Outcome for each of them, `not-started` for those this
        backend cannot start here; [] when none needs launching."""
        refuse_conflicts(planned)
        todo = [p for p in planned if p.launch]
        blocked = cannot_start(self.backend, [p.run for p in todo], self.options) if todo else {}
        for p in todo:
            if p.run.name in blocked:
                note_not_started(p.run, blocked[p.run.name])
        outcomes = [Outcome(name, "not-started", detail=why) for name, why in blocked.items()]
        todo = [p for p in todo if p.run.name not in blocked]
        if blocked:
            self._explain_blocked(blocked, started=bool(todo))
        if not todo:
            return outcomes
        uri = self._parent_run()
        for p in todo:
            prepare(p, self.spec, self.parent, uri)
        return launch(self.backend, [p.run for p in todo], self.options) + outcomes

    def end(self, status: str):
        """Mark the parent run done (when there is one)."""
        if self.parent is not None:
            from ..tracking import end_sweep_run
            end_sweep_run(self.tracking, self.parent, status)

    def _parent_run(self) -> str:
        """The parent run (created at the first launch), its id in self.parent; returns the tracking URI."""
        if self.spec.tracking.backend == "none":
            return self.tracking.uri
        if self.parent is None:
            from ..tracking import ensure_store, start_sweep_run
            uri = ensure_store(self.spec.tracking.uri)  # once, before fanning out
            self.tracking = dataclasses.replace(self.spec.tracking, uri=uri)
            self.parent = start_sweep_run(self.tracking, self.spec.name, self.identity, self.params)
        return self.tracking.uri

    def _explain_blocked(self, blocked: dict[str, str], started: bool):
        """One line per reason: '<n> runs cannot start here: <why> -- use ... (<names>)'."""
        by_reason = defaultdict(list)
        for name, why in blocked.items():
            by_reason[why].append(name)
        hint = ""
        if self.backend == "local":
            hint = " -- use --backend submitit --profile PROFILE (SLURM) or --backend ray"
        for why, names in by_reason.items():
            shown = ", ".join(names[:4]) + (f", ... ({len(names) - 4} more)" if len(names) > 4 else "")
            print(f"{self.prog}: {len(names)} run{'s' * (len(names) > 1)} cannot start here: {why}{hint} ({shown})",
                  file=sys.stderr)
        if not started:
            print(f"{self.prog}: nothing started: none of the {len(blocked)} run(s) to launch can start here",
                  file=sys.stderr)
