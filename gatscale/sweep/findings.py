"""A study's findings: each conclusion its spec can test, with its effect, interval and one verdict
(docs/findings.md).

    pair      two run sets that differ in exactly one factor (MNG, REPA, the patch size, the LR, any grid axis),
              compared on the metric's final values at equal iterations: the effect is log(A / B), read as
              "A's FD is x % lower", from `stats.compare` (Welch on log values, the study's pooled spread, or
              paired by seed)
    trend     the size ladder (sizes at one patch size, all else equal): the exponent b of metric ∝ compute^b from
              `stats.fit_scaling_law`, its sign the finding
    law       a probe's LR law lr_max ∝ C^b (`probe_cli.fit_of`, the probe's own fit) against the paper's b = -1
    declared  the spec's `findings.compare` entries: two sides, a metric, its direction and the δ that matters

The verdicts: "A better", "B better", "no difference larger than δ" (the interval inside ±δ), or "unresolved" with
about how many seeds per side would resolve it at the spread seen. A run counts once it has finished; a diverged
run has no final value and is named in the finding's note.

Peeking: `gatscale sweep --until-resolved` looks at the findings after every round of seeds. Its design (the
first look's seeds per side and max_seeds) is recorded in `<study>/findings_design.json`, and every finding of a
study that has one is computed at `stats.spent_level(level, looks)`: Bonferroni over the looks the design allows,
so a verdict stays valid however many rounds were run. Without a record (a fixed design) there is one look.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field

from gatscale.core import stats
from gatscale.core.atomic import atomic_write_text
from gatscale.core.config import LR_RULE_KEYS, NON_RESULT_KEYS, _fields_but, effective_lr
from gatscale.core.sizes import parse_model_name, size_letter
from gatscale.models.flops import run_flops
from ..tracking.metrics_log import FD_METRICS, metric_histories
from ..train.status import read_status
from .progress import format_table
from .spec import SIZE_KEYS, Run, Spec, run_set_key, with_seed

DESIGN_FILE = "findings_design.json"
PAIR_DELTA = 0.1   # the default δ of a comparison: no difference larger than ~10 % (log-ratio)
LAW_DELTA = 0.25   # the default δ of an exponent: b within ±0.25 of the paper's -1
HIGHER_IS_BETTER = ("acc", "is", "precision", "recall")  # metric name prefixes; everything else (fid, fd_*) lower


def lower_is_better(metric: str) -> bool:
    return not metric.startswith(HIGHER_IS_BETTER)


# ---------------------------------------------------------------------------------------------
# The design record of --until-resolved: the seeds it added and the looks its intervals allow for.

@dataclass
class Design:
    max_seeds: int
    first_look: int                              # seeds per side at the first look
    added: dict = field(default_factory=dict)    # run name -> {"from": the spec run it copies, "seed": s}
    rounds: int = 0

    @property
    def looks(self) -> int:
        """Looks that can reach a verdict: one per seed count from max(first_look, 2) to max_seeds."""
        return max(1, self.max_seeds - max(self.first_look, 2) + 1)


def read_design(spec: Spec) -> Design | None:
    try:
        return Design(**json.loads((spec.study_dir / DESIGN_FILE).read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def write_design(spec: Spec, design: Design):
    """Atomically (a killed controller leaves the old record or the new one)."""
    spec.study_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(spec.study_dir / DESIGN_FILE, json.dumps(asdict(design), indent=1))


def study_runs(spec: Spec, design: Design | None = None) -> list[Run]:
    """The spec's runs and the seeds --until-resolved added to them (in the design record)."""
    design = design if design is not None else read_design(spec)
    by_name = {r.name: r for r in spec.runs}
    extra = [with_seed(by_name[a["from"]], a["seed"]) for a in (design.added.values() if design else [])
             if a.get("from") in by_name]
    return spec.runs + [r for r in extra if r.name not in by_name]


# ---------------------------------------------------------------------------------------------
# Run sets and their final values

@dataclass
class RunSet:
    key: str
    runs: list[Run]

    @property
    def config(self):
        return self.runs[0].config

    @property
    def seeds(self) -> list[int]:
        return sorted(r.config.train.seed for r in self.runs)

    @property
    def name(self) -> str:
        return self.runs[0].name.removesuffix(f"-s{self.config.train.seed}")


def run_sets(runs: list[Run]) -> list[RunSet]:
    sets: dict[str, RunSet] = {}
    for r in runs:
        sets.setdefault(run_set_key(r.config), RunSet(run_set_key(r.config), [])).runs.append(r)
    return list(sets.values())


@dataclass
class Outcome:
    """What a run's folder says about one metric: its value at `step`, or why there is none."""
    value: float | None
    step: int | None
    status: str


def outcome(run: Run, metric: str, step: int | None = None) -> Outcome:
    """The metric at `step` (None: the last logged) of a finished run; diverged, running and missing runs have none."""
    status = (read_status(run.run_dir) or {}).get("status", "new")
    if status != "finished":
        return Outcome(None, None, status)
    history = metric_histories(run.run_dir, [metric]).get(metric, {})
    if not history:
        return Outcome(None, None, f"no {metric}")
    at = max(history) if step is None else max((s for s in history if s <= step), default=None)
    return Outcome(None if at is None else history[at], at, status)


def default_metric(runs: list[Run]) -> str:
    """The in-training FD: fid (Inception) when any finished run logged it, else fd_digits."""
    fid, fd_digits = FD_METRICS
    return fid if any(outcome(r, fid).value is not None for r in runs) else fd_digits


# ---------------------------------------------------------------------------------------------
# What the two sets of a pair differ in

def factor_of(key: str) -> str:
    if key.startswith(("model.generator.", "model.discriminator.")):
        return "size"
    if key in LR_RULE_KEYS:
        return "lr"
    return key


def factors(a, b) -> set[str]:
    """The factors in which two configs differ (seeds aside); LRs compared as G's and D's effective LRs."""
    fa, fb = (_fields_but(c, NON_RESULT_KEYS + ("train.seed",)) for c in (a, b))
    out = {factor_of(k) for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)}
    if "lr" in out and all(math.isclose(effective_lr(a, n), effective_lr(b, n))
                           for n in ("generator", "discriminator")):
        out.discard("lr")
    return out


def _patch(cfg) -> int:
    return parse_model_name(cfg.model.generator.size)["patch_size"]


def describe(s: RunSet, factor: str) -> str:
    """One side of a pair by its value of the factor, in the paper's words."""
    cfg = s.config
    if factor == "method.repa":
        return "REPA" if cfg.method.repa else "no REPA"
    if factor == "method.mng":
        return {"exp": "MNG", "off": "no MNG"}.get(cfg.method.mng, f"MNG {cfg.method.mng}")
    if factor == "size":
        return f"patch {_patch(cfg)}"
    if factor == "lr":
        label = s.runs[0].labels.get("lr")
        lr = f"lr {effective_lr(cfg, 'generator'):.3g}"
        if isinstance(label, str):
            return f"{label} ({lr})"
        return ("width-aware " if cfg.optim.width_aware_lr else "") + lr
    fa = _fields_but(cfg, NON_RESULT_KEYS)
    value = fa.get(factor, s.runs[0].labels.get(factor))
    return f"{factor.rsplit('.', 1)[-1]} {value}"


def _where(s: RunSet) -> str:
    return s.config.model.generator.size.removeprefix("GAT-")


# ---------------------------------------------------------------------------------------------
# Findings

VERDICTS = ("A better", "B better", "no difference", "unresolved")


@dataclass
class Finding:
    kind: str                 # pair | trend | law | declared
    name: str                 # e.g. "REPA vs no REPA at B/2"
    a: str                    # the sides' labels (a trend: the ladder; a law: the probe)
    b: str
    metric: str
    lower_better: bool
    delta: float
    level: float
    verdict: str              # one of VERDICTS
    effect: float = math.nan  # log(A / B) (pair); the exponent b (trend, law)
    lo: float = math.nan
    hi: float = math.nan
    n_a: int = 0              # seeds per side (trend: the fewest of any size; law: seeds per trial)
    n_b: int = 0
    p_a_better: float = math.nan
    seeds_needed: int | None = None   # per side, in all, to resolve at the spread seen (unresolved only)
    step: int | None = None
    paired: bool = False
    runs_a: list[str] = field(default_factory=list)
    runs_b: list[str] = field(default_factory=list)
    values_a: dict = field(default_factory=dict)   # a pair's {seed: metric value at `step`} per side, as judged
    values_b: dict = field(default_factory=dict)
    note: str = ""
    figure: str = ""          # the figure that shows it (analysis/figures.py's file stem)

    @property
    def resolved(self) -> bool:
        return self.verdict != "unresolved"

    @property
    def directional(self) -> bool:
        return self.verdict in ("A better", "B better")

    def verdict_text(self) -> str:
        if self.kind == "law" and self.verdict != "unresolved":
            return law_verdict_text(self)
        if self.verdict == "A better":
            return f"{self.a} better"
        if self.verdict == "B better":
            return f"{self.b} better"
        if self.verdict == "no difference":
            return f"no difference larger than {self.delta_text()}"
        unit = "per trial" if self.kind == "law" else "per size" if self.kind == "trend" else "per side"
        if self.seeds_needed is None:
            if not math.isfinite(self.lo) and self.note:
                return f"unresolved: {self.note}"
            return f"unresolved: more than 100 seeds {unit} at the spread seen"
        more = max(1, self.seeds_needed - min(self.n_a, self.n_b))
        return f"unresolved: about {more} more seed{'s' * (more > 1)} {unit} would resolve it"

    def delta_text(self) -> str:
        return f"±{self.delta:g} in b" if self.kind in ("trend", "law") else f"{(math.exp(self.delta) - 1) * 100:.0f} %"

    def effect_text(self) -> str:
        if not math.isfinite(self.effect):
            return "-"
        if self.kind in ("trend", "law"):
            ci = f" [{self.lo:+.2f}, {self.hi:+.2f}]" if math.isfinite(self.lo) else ""
            return f"b = {self.effect:+.2f}{ci}"
        ci = f" [{_pct(self.lo)}, {_pct(self.hi)}]" if math.isfinite(self.lo) else " (no interval: 1 seed)"
        return f"{_pct(self.effect)}{ci}"

    def row(self) -> list:
        p = f"{self.p_a_better:.2f}" if math.isfinite(self.p_a_better) else "-"
        seeds = f"{self.n_a}/{self.n_b}" + (" paired" if self.paired else "")
        return [self.name, f"{self.a} vs {self.b}", self.effect_text(), seeds, p, self.verdict_text()]


def _pct(log_ratio: float) -> str:
    return f"{(math.exp(log_ratio) - 1) * 100:+.0f}%"


HEADERS = ["finding", "A vs B", "effect: A vs B, % change [CI] (trend/law: exponent)", "seeds A/B", "P(A better)",
           "verdict"]


def format_findings(findings: list[Finding], level_note: str = "") -> str:
    if not findings:
        return "no findings: the spec has no two run sets that differ in one factor, no size ladder and no probe"
    return format_table(HEADERS, [f.row() for f in findings]) + (f"\n{level_note}" if level_note else "")


def level_note(findings: list[Finding], design: Design | None) -> str:
    lv = findings[0].level if findings else 0.95
    looks = f"spent over the {design.looks} looks of --until-resolved (Bonferroni: {design.first_look} .. " \
            f"{design.max_seeds} seeds per side)" if design and design.looks > 1 else "one look (a fixed design)"
    resolved = sum(f.resolved for f in findings)
    return (f"{resolved} of {len(findings)} findings resolved. Intervals at {lv:.4g} confidence, {looks}; the "
            f"effect is the change of A's metric against B's (geometric means over seeds); P(A better) under a flat "
            f"prior on the log effect. docs/findings.md")


def compare_sides(name: str, a: RunSet | list[Run], b: RunSet | list[Run], labels: tuple[str, str], metric: str,
                  lower_better: bool, delta: float, level: float, pairing: str, spread: stats.Spread | None,
                  kind: str = "pair", figure: str = "") -> Finding:
    """One pair finding from the finished runs of both sides, at the last step all of them reached."""
    runs_a = a.runs if isinstance(a, RunSet) else a
    runs_b = b.runs if isinstance(b, RunSet) else b
    first = {r.name: outcome(r, metric) for r in runs_a + runs_b}
    steps = [o.step for o in first.values() if o.value is not None]
    step = min(steps) if steps else None
    at = {n: (o if o.step == step or o.value is None else outcome(r, metric, step))
          for r in runs_a + runs_b for n, o in [(r.name, first[r.name])]}
    va = {r.config.train.seed: at[r.name].value for r in runs_a if at[r.name].value is not None}
    vb = {r.config.train.seed: at[r.name].value for r in runs_b if at[r.name].value is not None}
    missing = Counter(o.status for o in at.values() if o.value is None)
    note = ", ".join(f"{n} {s}" for s, n in sorted(missing.items()))
    f = judge(va, vb, lower_better, delta, level, pairing, spread)
    f.kind, f.name, f.a, f.b, f.metric, f.step, f.figure = kind, name, labels[0], labels[1], metric, step, figure
    f.runs_a, f.runs_b = [r.name for r in runs_a], [r.name for r in runs_b]
    f.values_a, f.values_b = va, vb
    if not f.n_a or not f.n_b:
        f.note = note or "no finished runs"
    elif note:
        f.note = note + ("; " + f.note if f.note else "")
    return f


def judge(va: dict, vb: dict, lower_better: bool = True, delta: float = PAIR_DELTA, level: float = 0.95,
          pairing: str = "unpaired", spread: stats.Spread | None = None) -> Finding:
    """The verdict on two sides' values ({seed: metric value}): what every pair finding, the controller and the
    synthetic oracle (benchmarks/findings_oracle.py) decide with. pairing 'pooled': unpaired, on the study's
    `spread` (stats.compare) when there is one, else Welch."""
    shared = sorted(va.keys() & vb.keys())
    paired = pairing == "paired" or (pairing == "auto" and len(shared) >= 2)
    if paired:
        va, vb = {s: va[s] for s in shared}, {s: vb[s] for s in shared}
    f = Finding("pair", "", "A", "B", "", lower_better, delta, level, "unresolved", n_a=len(va), n_b=len(vb),
                paired=paired)
    if not va or not vb:
        return f
    c = stats.compare([va[s] for s in sorted(va)], [vb[s] for s in sorted(vb)], paired=paired, level=level,
                      spread=spread if pairing == "pooled" else None)
    f.effect, f.lo, f.hi = c.effect, c.lo, c.hi
    p_lower = c.p_a_lower
    f.p_a_better = p_lower if lower_better else 1 - p_lower
    v = c.verdict(delta)
    f.verdict = {"A lower": "A better" if lower_better else "B better",
                 "B lower": "B better" if lower_better else "A better", "equivalent": "no difference"}.get(v, v)
    if f.verdict == "unresolved":
        f.seeds_needed = stats.seeds_needed(c, delta, spread)
        if f.seeds_needed is None and (f.n_a < 2 or f.n_b < 2):
            f.note = "one seed a side and no spread to borrow"
    return f


def ladder_finding(group: list[RunSet], metric: str, delta: float, level: float) -> Finding | None:
    """The size ladder's trend: metric ∝ (training compute)^b over the sizes, each size once (its seeds' mean)."""
    xs, values, names, ns = [], [], [], []
    for s in sorted(group, key=lambda s: run_flops(s.config).iteration):
        got = [o.value for r in s.runs if (o := outcome(r, metric)).value is not None]
        if got:
            xs.append(float(run_flops(s.config).iteration) * s.config.train.iterations)
            values.append(got)
            names.append(size_letter(s.config.model.generator.size))
            ns.append(len(got))
    patch = _patch(group[0].config)
    sizes = "/".join(size_letter(s.config.model.generator.size)
                     for s in sorted(group, key=lambda s: run_flops(s.config).iteration))
    f = Finding("trend", f"size ladder {sizes} (patch {patch})", "larger", "smaller", metric,
                lower_is_better(metric), delta, level, "unresolved", n_a=min(ns, default=0), n_b=min(ns, default=0),
                runs_a=[r.name for s in group for r in s.runs], figure="fid_vs_train_compute")
    if len(xs) < 3:
        f.note = f"{len(xs)} sizes finished; an interval needs 3"
        return f
    law = stats.fit_scaling_law(xs, values, level)
    f.effect, f.lo, f.hi = law.b, law.b_lo, law.b_hi
    better_up = (law.b_hi < 0) if f.lower_better else (law.b_lo > 0)
    better_down = (law.b_lo > 0) if f.lower_better else (law.b_hi < 0)
    f.verdict = "A better" if better_up else "B better" if better_down else "unresolved"
    if f.verdict == "unresolved" and math.isfinite(law.b_hi) and law.b != 0:
        # the interval's half-width shrinks as 1/sqrt(seeds per size) if the scatter about the line is seed noise
        half = (law.b_hi - law.b_lo) / 2
        f.seeds_needed = math.ceil(f.n_a * (half / abs(law.b)) ** 2) + 1
        f.seeds_needed = f.seeds_needed if f.seeds_needed <= 100 else None
    return f


def law_finding(spec: Spec, fit, delta: float, why: str = "") -> Finding:
    """A probe's LR law against the paper's b = -1 (Eq. 4), from the probe's own fit (`probe_cli.fit_of`, passed in
    by the caller: None when it has none, `why` says why)."""
    seeds = len({r.config.train.seed for r in spec.runs})
    f = Finding("law", "LR law lr_max ∝ C^b against b = -1", "b", "-1", "lr_max", True, delta, 0.95, "unresolved",
                n_a=seeds, n_b=seeds, figure="lr_probe", note=why)
    if fit is None:
        f.note = f.note or "fewer than two widths bracketed"
        return f
    f.effect, f.lo, f.hi = fit.b, fit.b_lo, fit.b_hi
    if not (math.isfinite(fit.b_lo) and math.isfinite(fit.b_hi)):
        f.note = "two widths: no interval"
        return f
    if fit.b_hi < -1 or fit.b_lo > -1:
        f.verdict = "A better"   # b differs from -1; the verdict text says which way
    elif -1 - delta < fit.b_lo and fit.b_hi < -1 + delta:
        f.verdict = "no difference"
    else:
        half = (fit.b_hi - fit.b_lo) / 2
        gap = max(abs(fit.b + 1), delta / 2)
        f.seeds_needed = math.ceil(seeds * (half / gap) ** 2) + 1
        f.seeds_needed = f.seeds_needed if f.seeds_needed <= 100 else None
    return f


def law_verdict_text(f: Finding) -> str:
    """A law's verdict: b away from -1 (the interval excludes it), b = -1 within δ, or unresolved."""
    if f.verdict == "A better":
        return f"b {'>' if f.lo > -1 else '<'} -1 (LR falls {'more slowly' if f.lo > -1 else 'faster'} than 1/C)"
    return f"b = -1 within ±{f.delta:g}"


def derive(spec: Spec, runs: list[Run] | None = None, design: Design | None = None, law=None,
           law_why: str = "") -> list[Finding]:
    """Every finding of the study (see the module docstring), in the spec's order: pairs, the ladder, declared. A
    probe's study has one, its law (`law`: the probe's fit, from findings_cli.study_findings)."""
    cfg = spec.findings
    design = design if design is not None else read_design(spec)
    level = stats.spent_level(cfg.level, design.looks) if design else cfg.level
    if spec.probe is not None:
        return [law_finding(spec, law, cfg.delta if cfg.delta is not None else LAW_DELTA, law_why)]
    runs = runs if runs is not None else study_runs(spec, design)
    metric = cfg.metric or default_metric(runs)
    lower = lower_is_better(metric)
    delta = cfg.delta if cfg.delta is not None else PAIR_DELTA
    sets = run_sets(runs)
    spread = stats.pooled_spread([v for s in sets if len(v := [o.value for r in s.runs
                                                                if (o := outcome(r, metric)).value]) >= 2])
    out: list[Finding] = []
    if cfg.derive:
        out += pair_findings(sets, runs, metric, lower, delta, level, cfg.pairing, spread)
        for group in ladders(sets):
            f = ladder_finding(group, metric, delta, level)
            if f:
                out.append(f)
    by_name = {r.name: r for r in runs}
    for d in cfg.compare:
        m = d.metric or metric
        lb = (d.direction == "lower") if d.direction else lower_is_better(m)
        side = lambda names: [r for r in runs if r.name in names or any(  # noqa: E731 - the added seeds count too
            run_set_key(r.config) == run_set_key(by_name[n].config) for n in names if n in by_name)]
        out.append(compare_sides(d.name, side(d.a_runs), side(d.b_runs), (_sel(d.a), _sel(d.b)), m, lb,
                                 d.delta if d.delta is not None else delta, level, cfg.pairing, spread, "declared"))
    return out


def _sel(selector: dict) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in selector.items())


FIGURE_OF = {"method.repa": "ablation", "method.mng": "ablation", "size": "fid_vs_iteration_by_patch",
             "lr": "lr_crosscheck"}


def pair_findings(sets, runs, metric, lower, delta, level, pairing, spread) -> list[Finding]:
    """Every two sets that differ in exactly one factor; a size pair only when it is a patch contrast (same size
    letter, other patch): sizes at one patch size are the ladder's."""
    out = []
    for i, s in enumerate(sets):
        for t in sets[i + 1:]:
            diff = factors(s.config, t.config)
            if len(diff) != 1:
                continue
            factor = next(iter(diff))
            if factor == "size" and not _patch_contrast(s.config, t.config):
                continue
            a, b = _orient(s, t, factor, runs)
            at = _where(a) if factor != "size" else size_letter(a.config.model.generator.size)
            name = f"{describe(a, factor)} vs {describe(b, factor)} at {at}"
            out.append(compare_sides(name, a, b, (describe(a, factor), describe(b, factor)), metric, lower, delta,
                                     level, pairing, spread, figure=FIGURE_OF.get(factor, "")))
    return out


def _patch_contrast(a, b) -> bool:
    ga, gb = a.model.generator.size, b.model.generator.size
    return size_letter(ga) == size_letter(gb) and _patch(a) != _patch(b)


def _orient(s: RunSet, t: RunSet, factor: str, runs: list[Run]) -> tuple[RunSet, RunSet]:
    """A: the side whose value of the factor most runs of the study share (the full method, the base LR)."""
    count = Counter(describe(RunSet("", [r]), factor) for r in runs)
    return (s, t) if count[describe(s, factor)] >= count[describe(t, factor)] else (t, s)


def ladders(sets: list[RunSet]) -> list[list[RunSet]]:
    """Groups of three or more sizes at one patch size that differ in nothing but the size."""
    groups: list[list[RunSet]] = []
    for s in sets:
        for g in groups:
            if factors(g[0].config, s.config) <= {"size"} and _patch(g[0].config) == _patch(s.config) and \
                    size_letter(s.config.model.generator.size) not in {size_letter(x.config.model.generator.size)
                                                                       for x in g}:
                g.append(s)
                break
        else:
            groups.append([s])
    return [g for g in groups if len(g) >= 3]


def to_json(findings: list[Finding]) -> str:
    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v
    rows = [{k: clean(v) for k, v in asdict(f).items()} | {"verdict_text": f.verdict_text(), "effect_text":
                                                           f.effect_text()} for f in findings]
    return json.dumps(rows, indent=1)


__all__ = ["Finding", "derive", "format_findings", "study_runs", "read_design", "write_design", "Design", "SIZE_KEYS"]
