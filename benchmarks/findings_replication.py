"""Would a re-run of a finished study, with other seeds, reach the same verdicts? A bootstrap over measured seeds.

    python benchmarks/findings_replication.py SPEC [SPEC ...] [--max-seeds 3 4 5 6] [--first-look 2]

Each SPEC is one realisation of the same study, finished (e.g. sweeps/demo.yaml and copies of its compared sets with
seeds shifted by 100 and 200: docs/demo.md). Per pair finding, matched by name across the specs, the final values
of every seed of each side are pooled. A simulated re-run draws its seeds from those values (without replacement:
distinct seeds, as a re-run has; the seed distribution as measured, a seed that starts late included, which a
log-normal model leaves out) and follows
the --until-resolved rule (benchmarks/findings_oracle.py `rounds`: the first look at `first_look` seeds per side,
one more per round, up to max_seeds, each look at the spent level). Printed per finding and max_seeds: the share
of re-runs that resolve in the direction of the pooled values, stay unresolved, or resolve the other way, and the
mean runs. max_seeds can be at most the seeds pooled per side; near it, re-runs share most of their seeds, so the
shares are optimistic there (a re-run on truly new seeds varies more).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from findings_oracle import rounds  # noqa: E402

from gatscale.sweep.findings import derive  # noqa: E402
from gatscale.sweep.spec import load_spec  # noqa: E402


def side_values(spec_path: str) -> dict[str, tuple[list[float], list[float], bool]]:
    """{finding name: (A's final values, B's, lower is better)} of one finished study's pair findings."""
    return {f.name: (list(f.values_a.values()), list(f.values_b.values()), f.lower_better)
            for f in derive(load_spec(spec_path)) if f.kind == "pair"}


def pool(specs: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray, bool]]:
    pooled: dict[str, tuple[list, list, bool]] = {}
    for path in specs:
        for name, (a, b, lower) in side_values(path).items():
            pa, pb, _ = pooled.setdefault(name, ([], [], lower))
            pa += a
            pb += b
    return {k: (np.array(a), np.array(b), lower) for k, (a, b, lower) in pooled.items() if len(a) and len(b)}


def replicate(rng, a: np.ndarray, b: np.ndarray, lower_better: bool, first_look: int, max_seeds: int,
              studies: int) -> dict:
    """Shares of simulated re-runs resolving the pooled direction ('same'), the other ('reversed'), neither."""
    a_lower = np.median(np.log(a)) < np.median(np.log(b))
    expected = "A better" if a_lower == lower_better else "B better"
    if max_seeds > min(len(a), len(b)):
        raise ValueError(f"max_seeds {max_seeds} is more than the {min(len(a), len(b))} seeds pooled per side")
    verdicts, runs = [], []
    for _ in range(studies):
        r = rounds(rng.choice(a, max_seeds, replace=False), rng.choice(b, max_seeds, replace=False), first_look,
                   max_seeds)
        verdicts.append(r.verdict)
        runs.append(r.runs)
    share = lambda pred: sum(map(pred, verdicts)) / studies  # noqa: E731
    return {"expected": expected, "same": share(lambda v: v == expected),
            "reversed": share(lambda v: v in ("A better", "B better") and v != expected),
            "unresolved": share(lambda v: v == "unresolved"), "mean_runs": float(np.mean(runs))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="+", help="finished realisations of one study (sweep spec YAMLs)")
    parser.add_argument("--max-seeds", type=int, nargs="+", default=[3, 4, 5, 6])
    parser.add_argument("--first-look", type=int, default=2)
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    pooled = pool(args.specs)
    print(f"re-runs drawn from the pooled seeds of {len(args.specs)} realisation(s), {args.studies} per row, "
          f"--until-resolved from {args.first_look} seeds per side")
    for name, (a, b, lower) in pooled.items():
        effect = float(np.mean(np.log(a)) - np.mean(np.log(b)))
        print(f"\n{name}: {len(a)} vs {len(b)} seeds pooled, mean log ratio {effect:+.2f} "
              f"({math.expm1(effect):+.0%}), log-sd {np.std(np.log(a), ddof=1):.2f} / {np.std(np.log(b), ddof=1):.2f}")
        for k in [k for k in args.max_seeds if k <= min(len(a), len(b))]:
            r = replicate(rng, a, b, lower, args.first_look, k, args.studies)
            print(f"  max_seeds {k}: {r['expected']} {r['same']:.0%}, unresolved {r['unresolved']:.0%}, "
                  f"reversed {r['reversed']:.1%}, mean runs {r['mean_runs']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
