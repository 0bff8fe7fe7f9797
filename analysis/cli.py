"""`gatscale figures`: regenerate every paper figure whose data are in the tracker; say why the others are not."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from . import figures
from .load import DEFAULT_CACHE_DIR, DEFAULT_TRACKING_URI, MissingData, load_experiment, load_lpips


def add_arguments(parser):
    parser.add_argument("--experiment", help="MLflow experiment name (default: from --spec)")
    parser.add_argument("--tracking-uri", help=f"MLflow tracking URI (default: from --spec, else {DEFAULT_TRACKING_URI})")
    parser.add_argument("--parent-run-id", help="only the runs of this sweep (its MLflow parent run)")
    parser.add_argument("--spec", help="sweep spec YAML: experiment and tracking URI from base.tracking (or its name)")
    parser.add_argument("--out", default="figures", help="output folder (default: figures)")
    parser.add_argument("--step", type=int, help="iteration at which FIDs are compared (default: the last one all "
                                                 "non-diverged runs reached)")
    parser.add_argument("--metric", help="Frechet-distance metric to plot (default: fid, else fd_digits; e.g. "
                                          "fid_50k_psi0.3 as logged by gatscale eval)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR), help="metric-history cache (default: %(default)s)")
    parser.add_argument("--refresh", action="store_true", help="fetch every history again, ignoring the cache")


def read_spec(path) -> tuple[str | None, str | None]:
    """(experiment, tracking uri) of a sweep spec: base.tracking.{experiment,uri}, else the spec's name.

    `base` may be a mapping or the path of a run config (relative to the spec); a top-level
    `tracking` section is accepted too.
    """
    def load(p, what):
        try:
            data = yaml.safe_load(Path(p).read_text()) or {}
        except FileNotFoundError:
            raise MissingData(f"{what} {p}: file not found") from None
        except yaml.YAMLError as e:
            raise MissingData(f"{what} {p}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise MissingData(f"{what} {p}: expected a mapping at the top level, got {type(data).__name__}")
        return data

    spec = load(path, "sweep spec")
    base = spec.get("base") or {}
    if isinstance(base, str):
        base = load(Path(path).parent / base, f"{path}: base =")
    tracking = (base.get("tracking") if isinstance(base, dict) else None) or spec.get("tracking") or {}
    if not isinstance(tracking, dict):
        raise MissingData(f"{path}: base.tracking = {tracking!r}: expected a mapping with experiment/uri")
    return tracking.get("experiment") or spec.get("name"), tracking.get("uri")


def regenerate(runs, histories, lpips, out_dir, step=None, metric=None):
    """Make every figure and table -> (written {name: [paths]}, missing {name: reason})."""
    jobs = {
        "lr_crosscheck": lambda: figures.lr_crosscheck(runs, histories, out_dir),
        "lpips_contribution": lambda: figures.lpips_contribution(lpips, runs, out_dir=out_dir),
        "fid_vs_iteration_by_size": lambda: figures.fid_curves(runs, histories, "size", out_dir=out_dir, metric=metric),
        "fid_vs_iteration_by_patch": lambda: figures.fid_curves(runs, histories, "patch", out_dir=out_dir, metric=metric),
        "fid_vs_train_compute": lambda: figures.fid_vs_compute(runs, histories, "train", step, out_dir, metric),
        "fid_vs_inference_gflops": lambda: figures.fid_vs_compute(runs, histories, "inference", step, out_dir, metric),
        "ablation": lambda: figures.ablation_table(runs, histories, step, out_dir, metric),
    }
    written, missing = {}, {}
    for name, make in jobs.items():
        try:
            result = make()
        except MissingData as e:
            missing[name] = str(e).removeprefix(f"{name}: ")
            continue
        written[name] = result.attrs["files"] if name == "ablation" else result.files
    return written, missing


def main(args) -> int:
    try:
        experiment, uri = read_spec(args.spec) if args.spec else (None, None)
        experiment = args.experiment or experiment
        uri = args.tracking_uri or uri or DEFAULT_TRACKING_URI
        if not experiment:
            where = f"{args.spec}: neither base.tracking.experiment nor name is set; " if args.spec else ""
            print(f"gatscale figures: {where}pass --experiment NAME or --spec SWEEP.yaml", file=sys.stderr)
            return 2
        cache = None if args.cache_dir in ("", "none") else args.cache_dir
        runs, histories = load_experiment(experiment, uri, args.parent_run_id, cache_dir=cache, refresh=args.refresh)
        lpips = load_lpips(runs, uri)
    except MissingData as e:
        print(f"gatscale figures: {e}", file=sys.stderr)
        return 1
    print(f"{len(runs)} runs of experiment {experiment!r} at {uri}"
          + (f" (sweep {args.parent_run_id})" if args.parent_run_id else ""))
    written, missing = regenerate(runs, histories, lpips, args.out, args.step, args.metric)
    for name, paths in written.items():
        print(f"wrote {name}: {', '.join(map(str, paths))}")
    for name, reason in missing.items():
        print(f"missing {name}: {reason}")
    return 0 if written else 1
