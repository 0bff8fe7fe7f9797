"""`gatscale probe-lr SPEC.yaml [--backend local|submitit|ray] [--dry-run] [--max-parallel N]`.

Measures the largest stable LR per width (gatscale/sweep/probe.py): in rounds, it replays each width's ladder and
bisection over the finished trials in the study folder, launches the next trial of every width that is not done
(one run per seed, through the sweep's backends), and repeats until every width is bracketed, out of range or out
of trials. Re-running the command after a crash continues the search where the folders say it stands. At the end:
the table (width, LR_max, bracket, trials), the fit lr_max ∝ C^b from the brackets (interval-censored
likelihood, gatscale/core/stats.py) with a 95 % interval on b and P(b < 0), what a decisive interval would take,
`<study>/probe.json`, and
both logged to the probe's parent run in the tracker. `--dry-run`: the next trials and the probe's GPU-hour budget.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy as np

from gatscale.core.atomic import atomic_write_text
from gatscale.core.stats import fit_lr_law
from ..train.status import EXIT_PREEMPTED
from .cli import run_table
from .launch import Launcher, add_launch_arguments, check_launch_arguments, refuse_conflicts
from .probe import LineState, probe_config, probe_state
from .progress import format_table
from .spec import load_spec
from .throughput import estimate, load_table, measured_runs

RESULT_FILE = "probe.json"


def add_arguments(parser):
    parser.add_argument("spec", help="sweep spec YAML with a probe: section (sweeps/lr_probe*.yaml; docs/sweeps.md)")
    add_launch_arguments(parser, "trials", wait="wait for each round's jobs (else submit one round and exit; "
                                                 "re-run to continue)")


def result_rows(states: list[LineState]) -> list[dict]:
    rows = []
    for st in states:
        s = st.search
        rows.append({"line": st.line.key, "width": st.line.width, "lr_max": s.lr_max, "lo": s.lo, "hi": s.hi,
                     "trials": len(s.tried), "runs": sum(len(r) for r in st.trials.values()),
                     "outcome": s.outcome or ("blocked: " + st.blocked if st.blocked else f"next lr {s.next_lr:.4g}")})
    return rows


def format_results(rows: list[dict]) -> str:
    g = lambda v: "" if v is None else f"{v:.4g}"
    table = [[r["line"], r["width"], g(r["lr_max"]), f"{g(r['lo']) or '-'} .. {g(r['hi']) or '-'}",
              "" if not (r["lo"] and r["hi"]) else f"x{r['hi'] / r['lo']:.3g}", r["trials"], r["outcome"]]
             for r in rows]
    return format_table(["width", "C", "LR_max", "bracket (stable .. unstable)", "ratio", "trials", "outcome"], table)


def fit_of(rows: list[dict]):
    """The LR law over every width with a bracket, closed or open on one side (stats.fit_lr_law)."""
    done = [r for r in rows if r["lo"] is not None or r["hi"] is not None]
    if len({r["width"] for r in done}) < 2:
        return None
    return fit_lr_law([r["width"] for r in done], [r["lo"] for r in done], [r["hi"] for r in done])


def resolving_widths(fit, cap: int = 64) -> int | None:
    """About how many widths, log-spaced over the probed range, would give an interval on b of half-width < 0.5
    (enough to tell b = -1 from b = 0) at the spread the fit found: the exact t interval of a regression of k
    points, t_{k-2} s / sqrt(Sxx); None when even `cap` would not."""
    from scipy import stats
    lo, hi = math.log(min(fit.widths)), math.log(max(fit.widths))
    for k in range(3, cap + 1):
        lc = np.linspace(lo, hi, k)
        if stats.t.ppf(0.975, k - 2) * fit.s / math.sqrt(((lc - lc.mean()) ** 2).sum()) < 0.5:
            return k
    return None


def resolution_line(fit, trials_per_width: float, seeds: int) -> str:
    """Whether the interval tells b = -1 from b = 0, or what it would take."""
    if math.isfinite(fit.b_lo + fit.b_hi) and not (fit.b_lo <= -1 and fit.b_hi >= 0):
        return f"the interval on b tells b = -1 from b = 0 (it excludes {0 if fit.b_hi < 0 else -1})"
    k = resolving_widths(fit)
    span = f"C = {min(fit.widths):g} .. {max(fit.widths):g}"
    need = (f"about {k} widths over {span} ({k * trials_per_width:.0f} trials x {seeds} seed(s) at this probe's "
            f"{trials_per_width:.1f} trials per width), or widths over a wider range" if k else
            f"more than 64 widths over {span}: probe a wider range of widths")
    return (f"the interval on b cannot tell b = -1 from b = 0; at the spread found (s = {fit.s:.2f} in log lr_max) "
            f"that would take {need}")


def print_budget(spec, states: list[LineState], p):
    """The next round as the sweep's run table, and the probe's worst case: max_trials per width."""
    planned = [q for st in states for q in st.planned]
    if planned:
        print(run_table(dataclasses.replace(spec, runs=[q.run for q in planned]), planned, spec.device))
    table, total, how = load_table(spec.throughput), 0.0, set()
    measured = measured_runs(spec.study_dir.parent)
    for st in states:
        if not st.planned:
            continue
        est = estimate(st.planned[0].run, spec.device, table, measured)
        left = p.max_trials - len(st.search.tried)
        how.add(est.how)
        total += (est.hours or 0.0) * left * len(st.line.runs)
    print(f"budget: at most {p.max_trials} trials per width x {len(states[0].line.runs) if states else 0} seed(s); "
          f"what is left costs at most {total:.4g} device-hours ({', '.join(sorted(how)) or 'nothing left'}; a trial "
          f"judged unstable stops early, so the probe usually costs less)")


def fit_record(fit) -> dict | None:
    """probe.json's `fit`: the law's numbers (the fit keeps its profile as a function, which is not data)."""
    if fit is None:
        return None
    return {k: getattr(fit, k) for k in ("a", "b", "b_lo", "b_hi", "level", "p_negative", "s", "n")} | {
        "widths": list(fit.widths), "method": "interval-censored likelihood of the brackets, profile interval"}


def _finite(x):
    """nan (e.g. no CI with two widths) -> None, so probe.json is strict JSON."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def main(args) -> int:
    check_launch_arguments(args)
    # a ConfigError is reported by gatscale.cli
    spec = load_spec(args.spec, args.runs_dir, args.profile, args.overrides)
    p = probe_config(spec)
    states = probe_state(spec, p)
    print(f"probe {spec.name} ({spec.path}): {len(states)} widths in {spec.study_dir}; ladder from {p.lr_start:g} "
          f"x{p.factor:g} in [{p.lr_min:g}, {p.lr_max:g}], bisection to x{p.resolution:g}, <= {p.max_trials} trials "
          f"per width")
    if args.dry_run:
        print_budget(spec, states, p)
        print(format_results(result_rows(states)))
        refuse_conflicts([q for st in states for q in st.planned])
        return 0

    launcher = Launcher(spec, args, {"kind": "probe-lr"}, "gatscale probe-lr")
    stopped, rounds, t0 = "", 0, time.time()
    while True:
        planned = [q for st in states for q in st.planned]
        refuse_conflicts(planned)
        if not any(q.launch for q in planned):
            break
        rounds += 1
        print(f"round {rounds}: " + ", ".join(f"{st.line.key} at lr {st.search.next_lr:.4g}"
                                             for st in states if any(q.launch for q in st.planned)), flush=True)
        outcomes = launcher.launch(planned)
        stopped = next((o.state for o in outcomes if o.state in ("submitted", "preempted", "not-started")), "")
        if stopped:
            break
        states = probe_state(spec, p)

    rows = result_rows(states)
    print(f"probe {spec.name}: {rounds} round(s) in {time.time() - t0:.0f} s")
    print(format_results(rows))
    fit = fit_of(rows)
    print(fit.line() if fit else "lr_max ∝ C^b: needs LR_max (a bracket) at two or more widths")
    if fit and fit.n >= 3:
        seeds = len(states[0].line.runs) if states else 1
        print(resolution_line(fit, sum(r["trials"] for r in rows) / len(rows), seeds))
    narrow = min((r for r in rows if r["lo"] is not None), key=lambda r: r["width"], default=None)
    if narrow is not None:
        print(f"LR cross-check from this probe (docs/sweeps.md): settings: lr: lrN: {{optim.width_aware_lr: false, "
              f"optim.lr: {narrow['lo']:.4g}}}   # {narrow['line']}'s largest stable LR")
    result = {"study": spec.name, "spec": str(spec.path), "probe": dataclasses.asdict(p), "widths": rows,
              "fit": fit_record(fit), "updated": time.time()}
    text = json.dumps(_finite(result), indent=1)
    spec.study_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(spec.study_dir / RESULT_FILE, text)
    print(f"wrote {spec.study_dir / RESULT_FILE}")
    if launcher.parent is not None:
        from ..tracking.store import client_for
        client = client_for(launcher.tracking.uri)
        client.log_text(launcher.parent, text, f"probe/{RESULT_FILE}")
        if fit:
            client.set_tag(launcher.parent, "gatscale.probe_law", fit.line())
        if not stopped:
            launcher.end("failed" if any(r["outcome"].startswith("blocked") for r in rows) else "finished")
    if stopped:
        print(f"trials {stopped}: re-run `gatscale probe-lr {args.spec}` to continue the search")
        return {"preempted": EXIT_PREEMPTED, "not-started": 1}.get(stopped, 0)
    return 0 if not any(r["outcome"].startswith("blocked") for r in rows) else 1
