"""Does a probe trial's verdict repeat with another seed? Replays stability rules over recorded trials.

Input: the run folders of a grid of fixed-LR trials, widths x LRs x seeds, trained with train.stability off (so each
records its whole 40-iteration history; a non-finite value still stops it as diverged). For every candidate rule
(train.stability: g_loss_above, logit_gap_above, patience) the trainer's own StabilityWatch replays each run's
metrics.jsonl and gives its verdict; per (width, LR) cell the seeds' verdicts are compared. Prints per rule: how
often two seeds of one cell agree, the share of cells where all seeds agree, and whether every width still has a
stable and an unstable LR (a rule that calls everything stable repeats trivially and brackets nothing).

    gatscale sweep SPEC --runs-dir DIR     # the grid: sweeps/lr_probe_demo.yaml's base, lr axis, seeds [0, 1, 2]
    python benchmarks/probe_verdicts.py DIR/<study>
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
from collections import defaultdict
from pathlib import Path

from gatscale.core.config import StabilityConfig
from gatscale.train.stability import StabilityWatch


def read_run(folder: Path):
    """(width tag, lr, seed, diverged by a non-finite value?, [metrics per log tick])."""
    status = json.loads((folder / "status.json").read_text())
    cfg_lr = status["metrics"].get("lr/g")
    ticks = []
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "metrics" in rec and "loss/g" in rec["metrics"]:
            ticks.append(rec["metrics"])
    width = folder.name.split("-")[0]
    seed = int(re.search(r"-s(\d+)$", folder.name).group(1))
    return width, cfg_lr, seed, status["status"] == "diverged", ticks


def verdict(rule: StabilityConfig, nonfinite: bool, ticks) -> bool:
    """True = stable, as the trainer would judge it under `rule`."""
    if nonfinite:
        return False
    watch = StabilityWatch(rule)
    return not (watch.enabled and any(watch.check(t) for t in ticks))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("study", type=Path)
    args = ap.parse_args()
    runs = [read_run(f) for f in sorted(args.study.iterdir()) if (f / "status.json").is_file()]
    cells = defaultdict(list)
    for width, lr, seed, nonfinite, ticks in runs:
        cells[(width, lr)].append((nonfinite, ticks))
    print(f"{len(runs)} runs, {len(cells)} (width, LR) cells, "
          f"{sum(n for n, *_ in [(r[3],) for r in runs])} stopped by a non-finite value")
    rows = []
    for g, gap, patience in itertools.product((0, 5, 10, 20), (0, 10, 15, 30, 60), (1, 2, 3, 4)):
        rule = StabilityConfig(g_loss_above=g, logit_gap_above=gap, patience=patience)
        pairs = agree = unanimous = 0
        per_width = defaultdict(set)
        table = {}
        for (width, lr), seeds in cells.items():
            v = [verdict(rule, *s) for s in seeds]
            table[(width, lr)] = v
            for a, b in itertools.combinations(v, 2):
                pairs += 1
                agree += a == b
            unanimous += len(set(v)) == 1
            per_width[width].add(sum(v) * 2 > len(v))
        brackets = all(len(s) == 2 for s in per_width.values())
        rows.append((agree / pairs, unanimous / len(cells), brackets, g, gap, patience, table))
    rows.sort(key=lambda r: (r[2], r[0], r[1]), reverse=True)
    print(f"{'g_loss_above':>12} {'logit_gap_above':>15} {'patience':>8} {'pairs agree':>11} {'cells unanimous':>15} "
          f"{'brackets every width':>20}")
    for agree, unanimous, brackets, g, gap, patience, _ in rows[:12] + [r for r in rows if r[3:6] == (10, 15, 2)]:
        print(f"{g:>12} {gap:>15} {patience:>8} {agree:>11.0%} {unanimous:>15.0%} {str(brackets):>20}")
    best = rows[0]
    print(f"best rule that still brackets every width: g_loss_above {best[3]}, logit_gap_above {best[4]}, patience "
          f"{best[5]}; its verdicts (S = stable, U = unstable, one letter per seed):")
    for (width, lr), v in sorted(best[6].items()):
        print(f"  {width:>4} lr {lr:<6g} {''.join('S' if s else 'U' for s in v)}")


if __name__ == "__main__":
    main()
