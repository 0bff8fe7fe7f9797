"""`gatscale sweep SPEC --until-resolved [--max-seeds K] [--budget GPU_HOURS]`: seeds until the findings resolve.

Rounds: launch the study's missing runs (the spec's, then the seeds added so far) on any backend, evaluate its
findings (findings.py), and for every unresolved comparison bring both sides to the next seed count, n0 + r + 1 at
round r (n0: the fewest seeds of any compared side at the start); launch only those. It stops when every
comparison is resolved, its sides reach K seeds (--max-seeds, else the spec's findings.max_seeds), or the study's
estimated device-hours would pass --budget. Trends and laws are reported with the seeds they would need; the
controller does not seed them (a ladder's runs cost the most).

Peeking: the design (n0, K) is written to `<study>/findings_design.json` before the first seed is added, and every
finding is computed at `stats.spent_level(level, K - max(n0, 2) + 1)`: each round is one look, so Bonferroni over
the looks the design allows keeps each finding's error rate at 1 - level however the rounds go.

Kill and relaunch: the record is written atomically before the runs of a round are launched, and everything else
is read from the run folders, so a relaunch rebuilds the same runs, resumes the interrupted ones, skips the
finished and continues the rounds. Runs still queued or running elsewhere (a cluster job) end the command without
adding seeds: run it again once they are done.
"""
from __future__ import annotations

import math
import sys

from gatscale.core.config import ConfigError
from ..train.status import TERMINAL, read_status
from .findings import (
    Design,
    Finding,
    derive,
    format_findings,
    level_note,
    read_design,
    run_sets,
    study_runs,
    to_json,
    write_design,
)
from .spec import Run, Spec, with_seed
from .throughput import estimate, load_table

SEEDED_KINDS = ("pair", "declared")


def design_for(spec: Spec, max_seeds: int | None) -> Design:
    """The study's design record, or a new one: K from --max-seeds or the spec, n0 from the spec's sides."""
    design = read_design(spec)
    k = max_seeds if max_seeds is not None else spec.findings.max_seeds
    if k < 2:
        raise ConfigError(None, "--max-seeds", k, "must be >= 2 (a side needs two seeds for an interval)")
    if design is not None:
        if max_seeds is not None and max_seeds != design.max_seeds:
            raise ConfigError(str(spec.study_dir / "findings_design.json"), "max_seeds", max_seeds,
                              f"this study was started with --max-seeds {design.max_seeds} and its intervals spend "
                              f"their error rate over those looks; keep it, or start a new study (another name)")
        return design
    sides = [len(s.runs) for s in compared_sets(spec, spec.runs)]
    return Design(max_seeds=k, first_look=min(sides, default=2))


def compared_sets(spec: Spec, runs: list[Run]):
    """The run sets on a side of some comparison of the study."""
    found = derive(spec, runs, Design(2, 2))  # a dry evaluation: which sets are compared (the level is irrelevant)
    names = {n for f in found if f.kind in SEEDED_KINDS for n in f.runs_a + f.runs_b}
    return [s for s in run_sets(runs) if any(r.name in names for r in s.runs)]


def next_seeds(spec: Spec, runs: list[Run], findings: list[Finding], design: Design) -> dict[str, dict]:
    """{new run name: {"from", "seed"}}: both sides of every unresolved comparison brought to this round's target."""
    target = design.first_look + design.rounds + 1
    if target > design.max_seeds:
        return {}
    by_name = {r.name: r for r in runs}
    sets = {r.name: s for s in run_sets(runs) for r in s.runs}
    order = sorted({r.config.train.seed for r in spec.runs})
    added: dict[str, dict] = {}
    for f in findings:
        if f.kind not in SEEDED_KINDS or f.resolved:
            continue
        sides = [sets[f.runs_a[0]], sets[f.runs_b[0]]]
        for side, other in (sides, sides[::-1]):
            have = list(side.seeds) + [a["seed"] for a in added.values() if a["from"] in {r.name for r in side.runs}]
            candidates = [s for s in other.seeds if s not in have] + [s for s in order if s not in have]
            nxt = max(order + have + other.seeds) + 1
            while len(have) < target:
                seed = candidates.pop(0) if candidates else nxt
                nxt = max(nxt, seed + 1)
                if seed in have:
                    continue
                new = with_seed(side.runs[0], seed)
                if new.name not in by_name:
                    added[new.name] = {"from": _spec_run(spec, side).name, "seed": seed}
                have.append(seed)
    return added


def _spec_run(spec: Spec, side) -> Run:
    """A run of the spec in this set (the added seeds are recorded as copies of it)."""
    names = {r.name for r in spec.runs}
    return next(r for r in side.runs if r.name in names)


def study_hours(spec: Spec, runs: list[Run]) -> float:
    table = load_table(spec.throughput)
    return sum(estimate(r, spec.device, table).hours or 0.0 for r in runs)


def until_resolved(spec: Spec, args, sweep_round) -> int:
    """The rounds; `sweep_round(spec, args, runs)` launches a round (sweep/cli.py's, passed in: cli imports this)."""
    if args.budget is not None and not (args.budget > 0 and math.isfinite(args.budget)):
        raise ConfigError(None, "--budget", args.budget, "must be a positive number of device-hours")
    design = design_for(spec, args.max_seeds)
    args.wait = True  # submitit: a round waits for its jobs, so its findings can be read
    code, stop = 0, ""
    while True:
        runs = study_runs(spec, design)
        print(f"--until-resolved: round {design.rounds + 1}, {len(runs)} runs, at most {design.max_seeds} seeds per "
              f"side", flush=True)
        code = sweep_round(spec, args, runs)  # a folder conflict raises: nothing is launched, no seed added
        if args.dry_run:
            break
        pending = [r.name for r in runs if (read_status(r.run_dir) or {}).get("status") not in TERMINAL]
        findings = derive(spec, runs, design)
        print(format_findings(findings, level_note(findings, design)), flush=True)
        _log(spec, findings, design)
        if pending:
            stop = (f"{len(pending)} run(s) not finished ({', '.join(pending[:3])}{', ...' * (len(pending) > 3)}): "
                    f"re-run the same command to continue")
            break
        added = next_seeds(spec, runs, findings, design)
        if not added:
            left = [f for f in findings if f.kind in SEEDED_KINDS and not f.resolved]
            stop = ("every comparison is resolved" if not left else
                    f"{len(left)} comparison(s) unresolved at {design.max_seeds} seeds per side (--max-seeds)")
            break
        if args.budget is not None:
            new = [with_seed(next(r for r in spec.runs if r.name == a["from"]), a["seed"]) for a in added.values()]
            hours = study_hours(spec, runs + new)
            if hours > args.budget:
                stop = (f"budget: the next round ({len(new)} runs) would bring the study to {hours:.3g} estimated "
                        f"device-hours, over --budget {args.budget:g}")
                break
        design.added.update(added)
        design.rounds += 1
        write_design(spec, design)  # before launching: a relaunch rebuilds exactly these runs
        print(f"--until-resolved: adding {len(added)} run(s): {', '.join(sorted(added))}", flush=True)
    if stop:
        print(f"--until-resolved: stopped: {stop}")
    if not args.dry_run:
        write_design(spec, design)  # `gatscale findings` reads the study at the level these looks spent
    return code


def _log(spec: Spec, findings: list[Finding], design: Design):
    """The findings table as artifacts of the sweep's parent run (findings.txt, findings.json) and a file in the
    study folder."""
    from gatscale.core.atomic import atomic_write_text

    text = format_findings(findings, level_note(findings, design))
    spec.study_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(spec.study_dir / "findings.txt", text + "\n")
    atomic_write_text(spec.study_dir / "findings.json", to_json(findings))
    if spec.tracking.backend == "none":
        return
    try:
        from ..tracking import log_sweep_artifacts
        log_sweep_artifacts(spec.tracking, spec.name, spec.spec_hash,
                            [spec.study_dir / "findings.txt", spec.study_dir / "findings.json"])
    except Exception as e:  # noqa: BLE001 - the tracker is a mirror: the study folder holds the findings
        print(f"gatscale sweep: the findings were not logged to the tracker ({type(e).__name__}: {e}); they are in "
              f"{spec.study_dir / 'findings.txt'}", file=sys.stderr)
