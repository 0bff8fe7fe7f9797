"""The LR probe: for each width, the largest learning rate that still trains, and the law that links them.

A spec with a `probe:` section names the widths (its grid/zip over sizes, as any sweep spec) and the search:

    probe:
      lr_start: 2.0e-3     # first rung, for every width (G's and D's LR; width_aware_lr is off in trials)
      factor: 4            # geometric ladder: x factor up while stable, / factor down while unstable
      lr_min: 1.0e-5       # the ladder's bounds
      lr_max: 1.0
      resolution: 1.25     # bisect (in log LR) until smallest unstable / largest stable <= this
      max_trials: 8        # per width (each trial: one run per seed)
      stability: {g_loss_above: 10, logit_gap_above: 15, patience: 2}   # train.stability of every trial

A probe line is one spec run without its seed (a width, with the spec's other settings). `search` is pure and
deterministic: given the verdicts of the finished trials of a line (True = stable, False = unstable), it
replays the ladder and the bisection and names the next LR to try, or how the line ended. So resuming a
half-done probe is re-reading the trial folders and calling it again. A trial is stable when every seed
finished, unstable as soon as one diverged (non-finite values, or a train.stability mode).

A trial is one run per seed of `seeds:` (the spec's, as any sweep): it is stable only if every seed is, so more
seeds make a verdict that repeats (docs/sweeps.md measures how often one does).

The law: log LR_max = log a + b log C + N(0, s^2), fitted to the brackets themselves (lo < LR_max < hi, one-sided
for a width stable up to lr_max or unstable down to lr_min) by their interval-censored likelihood, with a profile
interval on b and P(b < 0) (gatscale/core/stats.py fit_lr_law; paper Eq. 4 says b = -1). `Search.lr_max`, the
bracket's geometric midpoint, is only the table's point estimate.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field

from gatscale.core.config import LR_RULE_KEYS, ConfigError, StabilityConfig, config_hash, from_dict, setting, validate
from gatscale.core.stats import bracket
from .plan import STOP_ACTIONS, Planned, plan_run, read_folder
from .spec import Run, Spec, _dedupe_names, join_name, lr_tag, short_float

# How a line's search ended ('' while it goes on).
BRACKETED, ABOVE, BELOW, OUT_OF_TRIALS = "bracketed", "stable up to lr_max", "unstable down to lr_min", "out of trials"


@dataclass
class ProbeConfig:
    lr_start: float = setting(2e-4, "> 0")    # the first rung, for every width
    factor: float = 4.0                         # ladder step (x); must exceed `resolution`
    lr_min: float = setting(1e-6, "> 0")
    lr_max: float = setting(1.0, "> 0")
    resolution: float = setting(1.25, "> 1 (the bracket ratio at which bisection stops, e.g. 1.25)")
    # per width; each trial runs every seed
    max_trials: int = setting(8, ">= 2 (one stable and one unstable trial make a bracket)")
    stability: StabilityConfig = field(default_factory=StabilityConfig)  # written into each trial's train.stability


def probe_config(spec: Spec) -> ProbeConfig:
    """The spec's validated `probe:` section; errors name the spec file, the key and the value."""
    source = str(spec.path)
    if not isinstance(spec.probe, dict):
        raise ConfigError(source, "probe", spec.probe, "gatscale probe-lr needs a `probe:` mapping (lr_start, factor, "
                                                       "lr_min, lr_max, resolution, max_trials, stability)")
    p = from_dict(ProbeConfig, spec.probe, source, prefix="probe.")

    def fail(key, msg):
        raise ConfigError(source, f"probe.{key}", getattr(p, key), msg)
    if not p.lr_min <= p.lr_start <= p.lr_max:
        fail("lr_start", f"must lie in [lr_min, lr_max] = [{p.lr_min:g}, {p.lr_max:g}]")
    if not p.factor > p.resolution:
        fail("factor", f"must be > resolution ({p.resolution:g}): the ladder's step")
    try:  # the stability criterion as the trainer validates it, reported under its key in the spec
        cfg = copy.deepcopy(spec.runs[0].config)
        cfg.train.stability = p.stability
        validate(cfg)
    except ConfigError as e:
        message = str(e).split(f"{e.key} = {e.value!r}: ", 1)[-1]
        raise ConfigError(source, e.key.replace("train.stability", "probe.stability"), e.value, message) from None
    return p


# ---------------------------------------------------------------------------------------------
# The search (pure)

def rung(lr: float) -> float:
    """LRs are kept to 4 significant digits, exactly as the run name writes them ('lr1.414e-3')."""
    return float(short_float(lr))


@dataclass
class Search:
    next_lr: float | None        # the LR to try next; None when the line is done
    tried: list[float]           # LRs with a verdict, in search order
    lo: float | None             # largest stable LR (below hi)
    hi: float | None             # smallest unstable LR
    outcome: str = ""            # BRACKETED, ABOVE, BELOW, OUT_OF_TRIALS; '' while it goes on

    @property
    def lr_max(self) -> float | None:
        """The estimate: the final bracket's geometric midpoint (None until the line is bracketed)."""
        return math.sqrt(self.lo * self.hi) if self.outcome == BRACKETED else None


def search(p: ProbeConfig, verdicts: dict[float, bool]) -> Search:
    """Replay the ladder and bisection over the known verdicts; stop at the first LR without one."""
    lr, tried, seen = rung(p.lr_start), [], {}
    while True:
        if lr not in verdicts:
            return Search(lr, tried, *bracket(seen))
        tried.append(lr)
        seen[lr] = verdicts[lr]
        lo, hi = bracket(seen)
        if lo is not None and hi is not None:
            if hi / lo <= p.resolution * (1 + 1e-9):
                return Search(None, tried, lo, hi, BRACKETED)
            nxt = rung(math.sqrt(lo * hi))          # bisection in log LR
        elif hi is None:                            # stable so far: climb
            if lr >= p.lr_max:
                return Search(None, tried, lo, hi, ABOVE)
            nxt = rung(min(lr * p.factor, p.lr_max))
        else:                                       # unstable so far: descend
            if lr <= p.lr_min:
                return Search(None, tried, lo, hi, BELOW)
            nxt = rung(max(lr / p.factor, p.lr_min))
        if len(tried) >= p.max_trials:
            return Search(None, tried, lo, hi, OUT_OF_TRIALS)
        lr = nxt


# ---------------------------------------------------------------------------------------------
# Lines and trials: ordinary runs of the sweep machinery

@dataclass
class Line:
    key: str                     # the spec run's name without its seed, e.g. 'B2-mng-repa'
    width: int                   # generator width C
    runs: list[Run]              # one spec run per seed


def probe_lines(spec: Spec, p: ProbeConfig) -> list[Line]:
    """The spec's runs grouped by all but their seed. Two lines whose trials are one config (the spec's axes
    differ only in the LR, which the probe sets itself) are an error naming the spec."""
    lines: dict[tuple, Line] = {}
    for run in spec.runs:
        ident = tuple(sorted((k, str(v)) for k, v in run.labels.items() if k != "seed"))
        if ident not in lines:
            key = join_name({role: part for role, part in run.name_parts.items() if role not in ("lr", "seed")})
            lines[ident] = Line(key, run.config.model.generator.arch()["hidden_size"], [])
        lines[ident].runs.append(run)
    seen: dict[str, str] = {}
    for line in lines.values():
        h = trial_run(line.runs[0], p.lr_start, p).config_hash
        if h in seen:
            raise ConfigError(str(spec.path), "grid", f"{seen[h]} / {line.key}", "these runs differ only in their "
                              f"LR ({', '.join(LR_RULE_KEYS)}), which a probe sets itself: remove that axis")
        seen[h] = line.key
    return list(lines.values())


def trial_run(run: Run, lr: float, p: ProbeConfig) -> Run:
    """The spec run at a fixed LR (G and D) with the probe's stability criterion: a run of the same study."""
    cfg = copy.deepcopy(run.config)
    cfg.optim.width_aware_lr, cfg.optim.lr = False, lr
    cfg.train.stability = copy.deepcopy(p.stability)
    validate(cfg, f"probe trial of {run.name}")
    parts = {**run.name_parts, "lr": lr_tag(cfg)}
    name = join_name(parts)
    cfg.name, cfg.run_dir = name, str(run.run_dir.parent / name)
    return Run(name=name, config=cfg, config_hash=config_hash(cfg), run_dir=run.run_dir.parent / name,
               model=run.model, resources=run.resources, labels={**run.labels, "lr": lr}, name_parts=parts)


def trials_of(line: Line, lrs, p: ProbeConfig) -> dict[float, list[Run]]:
    out = {lr: [trial_run(r, lr, p) for r in line.runs] for lr in lrs}
    _dedupe_names([t for ts in out.values() for t in ts])
    return out


def verdict(states: list[str]) -> bool | None:
    """A trial's verdict from its seeds' run states: unstable once one diverged, stable once all finished."""
    if "diverged" in states:
        return False
    return True if states and all(s == "finished" for s in states) else None


# ---------------------------------------------------------------------------------------------
# Where a probe stands: the trial folders, replayed through the search

@dataclass
class LineState:
    line: Line
    search: Search
    trials: dict[float, list[Run]]     # every LR with a verdict, and the next one's runs (one per seed)
    planned: list[Planned]             # what the sweep would do with the next LR's runs ([] when done)

    @property
    def blocked(self) -> str:
        """Why the line cannot go on (a trial gave up after max_attempts failures, needs attention, or a folder
        conflict), or ''."""
        return "; ".join(f"{p.run.name}: {p.detail}" for p in self.planned if p.action in STOP_ACTIONS)


def line_state(line: Line, p: ProbeConfig, max_attempts: int, active: dict[str, str] | None = None) -> LineState:
    """Replay the search over the verdicts its trial folders give (status.json via the sweep's plan)."""
    verdicts, trials = {}, {}
    while True:
        s = search(p, verdicts)
        if s.next_lr is None:
            return LineState(line, s, trials, [])
        runs = trials[s.next_lr] = trials_of(line, [s.next_lr], p)[s.next_lr]
        planned = [plan_run(r, read_folder(r), max_attempts, {}, active or {}) for r in runs]
        v = verdict([q.state for q in planned])
        if v is None:
            return LineState(line, s, trials, planned)
        verdicts[s.next_lr] = v


def probe_state(spec: Spec, p: ProbeConfig, active: dict[str, str] | None = None) -> list[LineState]:
    return [line_state(line, p, spec.max_attempts, active) for line in probe_lines(spec, p)]


def trials_spec(spec: Spec) -> Spec:
    """The spec with its runs replaced by the probe's trials so far and the next ones (`gatscale status`)."""
    p = probe_config(spec)
    runs = [r for st in probe_state(spec, p) for rs in st.trials.values() for r in rs]
    return dataclasses.replace(spec, runs=runs)
