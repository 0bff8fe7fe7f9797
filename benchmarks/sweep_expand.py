"""How long expanding and dry-running a 256-run spec takes, after imports.

    python benchmarks/sweep_expand.py [--repeat 5]

The spec: GAT-{S,B,L,XL}/2 x MNG {exp, off} x REPA {on, off} x LR rule {width-aware, S's} x 8 seeds on the
paper-scale base config (configs/imagenet256.yaml) with the example H100 cluster profile. Timed: load_spec
(read, expand, validate 256 RunConfigs, hash, name), plan(spec) (256 run folders read, none exist)
and the dry-run table (FLOPs and GPU-hour estimates), i.e. everything `gatscale sweep --dry-run` does but
importing and printing.
"""
import argparse
import io
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gatscale.sweep.cli import run_table  # noqa: E402
from gatscale.sweep.plan import plan  # noqa: E402
from gatscale.sweep.spec import load_spec  # noqa: E402

SIZES = ["GAT-S/2", "GAT-B/2", "GAT-L/2", "GAT-XL/2"]
SPEC = {
    "name": "bench256",
    "base_config": str(REPO / "configs" / "imagenet256.yaml"),
    "base": {"train.iterations": 50000, "tracking": {"backend": "none"}},
    "profile": str(REPO / "slurm" / "profiles" / "example-h100.yaml"),
    "settings": {"lr": {"lrA": {"optim.width_aware_lr": True},
                        "lrS": {"optim.width_aware_lr": False, "optim.lr": 4.0e-4}}},
    "zip": {"model.generator.size": SIZES, "model.discriminator.size": SIZES},
    "grid": {"method.mng": ["exp", "off"], "method.repa": [True, False], "lr": ["lrA", "lrS"]},
    "seeds": 8,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench256.yaml"
        path.write_text(yaml.safe_dump(SPEC))
        runs_dir = Path(tmp) / "runs"
        times = {"load_spec": [], "plan": [], "table": [], "total": []}
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            spec = load_spec(path, runs_dir=runs_dir)
            t1 = time.perf_counter()
            planned = plan(spec)
            t2 = time.perf_counter()
            with redirect_stdout(io.StringIO()):
                print(run_table(spec, planned, spec.device))
            t3 = time.perf_counter()
            for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                times[k].append(v)
        assert len(spec.runs) == 256 and not runs_dir.exists()
    print(f"{len(spec.runs)} runs, median of {args.repeat}: " +
          ", ".join(f"{k} {statistics.median(v) * 1e3:.0f} ms" for k, v in times.items()))


if __name__ == "__main__":
    main()
