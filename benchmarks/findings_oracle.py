"""The synthetic oracle of the findings (docs/findings.md): simulated studies whose truth is known, judged by the
findings code and the --until-resolved rule, without training.

    python benchmarks/findings_oracle.py [--studies 2000] [--sd 0.13] [--effect -0.68] [--max-seeds 5]

Two arms A and B; a run's final FD is exp(log 25 + sd * N(0, 1)) for B and the same plus the true effect for A, i.e.
log-normal seed noise. The spread: 0.13, the pooled log-sd of the seed sets in issue 26's table and docs/demo.md
(B full method 5 + 5 seeds, 2-seed sets of B, no REPA and no MNG, the bimodal no-MNG pair 15.9 / 189.7 left out:
with it 0.52). REPA's effect: log(27.1 / 53.3) = -0.68 in the realisation of the current code (-1.24 and -0.52 in
the two others).

Each simulated study is what `gatscale sweep --until-resolved` does to one comparison: the first look at
`first_look` seeds per side, then one more seed on both sides per round while unresolved, up to max_seeds, every
look at `stats.spent_level(0.95, looks)` (findings.judge, the function every pair finding is decided by). Printed:
- identical arms: the share of studies ending with a directional verdict ("false resolved"), peeking included;
- a true effect as large as REPA's: the share resolved the right way, and the mean runs used, against a fixed
  design of max_seeds seeds per side (2 * max_seeds runs, judged once at level 0.95).
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gatscale.core import stats  # noqa: E402
from gatscale.sweep.findings import Design, judge  # noqa: E402

SEED_SD = 0.13        # pooled log-sd of the demo's seed sets (see the module docstring)
REPA_EFFECT = -0.68   # log(27.1 / 53.3): B with REPA against B without, 2 seeds each, the current code


@dataclass
class Result:
    verdict: str
    runs: int        # both sides together
    looks: int


def sequential(rng, effect: float, sd: float, first_look: int = 2, max_seeds: int = 5, delta: float = 0.1,
               pairing: str = "unpaired", rho: float = 0.0, median: float = 25.0, arms: int = 2,
               other_sd: float | None = None) -> Result:
    """One comparison under the --until-resolved rule with log-normal seed noise. rho: the correlation of
    seed-matched runs' log values (a shared seed effect). arms: the study's sets with seeds, the compared two among
    them; the others (log-sd `other_sd`, default `sd`) only lend their spread to pairing 'pooled'."""
    shared = rng.standard_normal(max_seeds)
    own = rng.standard_normal((2, max_seeds))
    noise = sd * (math.sqrt(rho) * shared + math.sqrt(1 - rho) * own)
    a_all = np.exp(math.log(median) + effect + noise[0])
    b_all = np.exp(math.log(median) + noise[1])
    others = np.exp(math.log(median) + (sd if other_sd is None else other_sd) * rng.standard_normal((arms - 2,
                                                                                                   max_seeds)))
    return rounds(a_all, b_all, first_look, max_seeds, delta, pairing, others)


def rounds(a_all, b_all, first_look: int, max_seeds: int, delta: float = 0.1, pairing: str = "unpaired",
           others=()) -> Result:
    """Judge the first n values of each side at n = first_look .. max_seeds, every look at the spent level; stop at
    the first resolved verdict (what --until-resolved does to one comparison). others: the study's other sets, their
    first n values pooled with both sides' into the spread of pairing 'pooled' (every set seeded alike: each look
    is one for all of them)."""
    level = stats.spent_level(0.95, Design(max_seeds=max_seeds, first_look=first_look).looks)
    n, looks = first_look, 0
    while True:
        spread = stats.pooled_spread([a_all[:n], b_all[:n], *[o[:n] for o in others]])
        f = judge(dict(enumerate(a_all[:n])), dict(enumerate(b_all[:n])), delta=delta, level=level, pairing=pairing,
                  spread=spread)
        looks += n >= 2
        if f.resolved or n >= max_seeds:
            return Result(f.verdict, 2 * n, looks)
        n += 1


def fixed(rng, effect: float, sd: float, seeds: int = 5, delta: float = 0.1, median: float = 25.0,
          pairing: str = "unpaired", arms: int = 2, other_sd: float | None = None) -> Result:
    """The fixed design: `seeds` per side, one look at level 0.95."""
    a = np.exp(math.log(median) + effect + sd * rng.standard_normal(seeds))
    b = np.exp(math.log(median) + sd * rng.standard_normal(seeds))
    others = np.exp(math.log(median) + (sd if other_sd is None else other_sd) * rng.standard_normal((arms - 2, seeds)))
    f = judge(dict(enumerate(a)), dict(enumerate(b)), delta=delta, level=0.95, pairing=pairing,
              spread=stats.pooled_spread([a, b, *others]))
    return Result(f.verdict, 2 * seeds, 1)


def summary(results: list[Result], right: str | None = None) -> dict:
    out = {"studies": len(results),
           "directional": sum(r.verdict in ("A better", "B better") for r in results) / len(results),
           "resolved": sum(r.verdict != "unresolved" for r in results) / len(results),
           "mean_runs": sum(r.runs for r in results) / len(results)}
    if right:
        out["right"] = sum(r.verdict == right for r in results) / len(results)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--sd", type=float, default=SEED_SD)
    parser.add_argument("--effect", type=float, default=REPA_EFFECT)
    parser.add_argument("--max-seeds", type=int, default=5)
    parser.add_argument("--first-look", type=int, default=2)
    parser.add_argument("--pairing", default="unpaired", choices=["unpaired", "pooled"])
    parser.add_argument("--arms", type=int, default=2, help="the study's seeded sets (pooled: they share one spread)")
    parser.add_argument("--other-sd", type=float, help="the other sets' log-sd (default --sd): a spread that differs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    k, n0, n = args.max_seeds, args.first_look, args.studies
    kw = dict(pairing=args.pairing, arms=args.arms, other_sd=args.other_sd)
    spread = (f"{args.pairing}" + (f" over {args.arms} sets" if args.pairing == "pooled" else "")
              + (f", the other sets' sd {args.other_sd:g}" if args.other_sd is not None else ""))
    print(f"synthetic oracle: {n} studies per row, log-normal seed noise sd {args.sd:g}, --until-resolved from "
          f"{n0} to {k} seeds per side at level {stats.spent_level(0.95, Design(k, n0).looks):.4g} per look "
          f"(Bonferroni over {Design(k, n0).looks} looks), delta 0.1, {spread}")
    rows = []
    for label, effect, kind in [("identical arms", 0.0, "seq"), ("identical arms, fixed", 0.0, "fix"),
                                (f"true effect {args.effect:+.2f}", args.effect, "seq"),
                                (f"true effect {args.effect:+.2f}, fixed", args.effect, "fix")]:
        sim = [sequential(rng, effect, args.sd, n0, k, **kw) if kind == "seq" else fixed(rng, effect, args.sd, k, **kw)
               for _ in range(n)]
        s = summary(sim, None if effect == 0 else "A better")
        rows.append((label, s))
        right = f", resolved the right way {s['right']:.1%}" if "right" in s else ""
        print(f"  {label:<28} false/any directional {s['directional']:.1%}, resolved {s['resolved']:.1%}{right}, "
              f"mean runs {s['mean_runs']:.2f}")
    null, effect_seq, effect_fixed = rows[0][1], rows[2][1], rows[3][1]
    print(f"false resolved on identical arms (peeking included): {null['directional']:.1%} (goal <= 5 %)")
    print(f"true effect {args.effect:+.2f}: {effect_seq['mean_runs']:.2f} runs on average against {2 * k} for a fixed "
          f"{k} seeds per side (resolved {effect_seq['resolved']:.1%} against {effect_fixed['resolved']:.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
