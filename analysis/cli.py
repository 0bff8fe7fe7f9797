"""`gatscale figures`: regenerate every paper figure whose data the runs recorded (in MLflow, or `--run-dirs`: their
folders alone); say why the others are not."""
from __future__ import annotations

import sys

from gatscale.core.config import ConfigError
from gatscale.core.errors import InputError
from gatscale.sweep.spec import load_spec  # a study command: the spec names the study

from . import figures
from .load import (DEFAULT_CACHE_DIR, DEFAULT_TRACKING_URI, MissingData, load_experiment, load_histories, load_lpips,
                   load_run_folders)


def add_arguments(parser):
    parser.add_argument("--experiment", help="MLflow experiment name (default: from --spec)")
    parser.add_argument("--tracking-uri", help=f"MLflow tracking URI (default: from --spec, else {DEFAULT_TRACKING_URI})")
    parser.add_argument("--parent-run-id", help="only the runs of this sweep (its MLflow parent run)")
    parser.add_argument("--spec", help="sweep spec YAML: its name is the experiment; the tracking URI is its runs' tracking.uri")
    parser.add_argument("--run-dirs", nargs="+", metavar="RUN_DIR", help="read these run folders alone, without MLflow "
                                                                         "(e.g. runs trained with tracking.backend none)")
    parser.add_argument("--out", default="figures", help="output folder (default: figures)")
    parser.add_argument("--step", type=int, help="iteration at which FIDs are compared (default: the last one all "
                                                 "non-diverged runs reached)")
    parser.add_argument("--metric", help="Frechet-distance metric to plot (default: fid, else fd_digits; e.g. "
                                          "fid_50k_psi0.3 as logged by gatscale eval)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR), help="metric-history cache (default: %(default)s)")
    parser.add_argument("--refresh", action="store_true", help="fetch every history again, ignoring the cache")


def read_spec(path) -> tuple[str, str]:
    """(experiment, tracking uri) of a sweep spec, read as `gatscale sweep` reads it: the study's name and its
    runs' tracking.uri (from base_config and base)."""
    try:
        spec = load_spec(path)
    except ConfigError as e:
        raise MissingData(f"sweep spec {e}") from None
    return spec.name, spec.tracking.uri


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
        "samples": lambda: figures.samples_sheet(runs, out_dir),
    }
    if len(figures.lr_probe_data(runs)):  # a probe's trials (fixed LRs per width): not asked of other studies
        jobs["lr_probe"] = lambda: figures.lr_probe(runs, out_dir)
    written, missing = {}, {}
    for name, make in jobs.items():
        try:
            result = make()
        except MissingData as e:
            missing[name] = str(e).removeprefix(f"{name}: ")
            continue
        written[name] = result.attrs["files"] if name == "ablation" else result.files
        if getattr(result, "note", None):
            print(f"{name}: {result.note}")  # e.g. the FD-vs-compute exponent with its 95% CI, or 'no trend
    return written, missing


def main(args) -> int:
    if args.run_dirs:
        try:
            runs = load_run_folders(args.run_dirs)
            histories, lpips = load_histories(runs), load_lpips(runs)
        except MissingData as e:  # the folders named hold no runs: bad input, reported by gatscale.cli
            raise InputError(str(e)) from None
        print(f"{len(runs)} runs from their run folders")
        return _write(runs, histories, lpips, args)
    try:
        experiment, uri = read_spec(args.spec) if args.spec else (None, None)
        experiment = args.experiment or experiment
        uri = args.tracking_uri or uri or DEFAULT_TRACKING_URI
        if not experiment:
            raise InputError("pass --experiment NAME or --spec SWEEP.yaml")
        cache = None if args.cache_dir in ("", "none") else args.cache_dir
        runs, histories = load_experiment(experiment, uri, args.parent_run_id, cache_dir=cache, refresh=args.refresh)
        lpips = load_lpips(runs, uri)
    except MissingData as e:  # no such spec, store or experiment: bad input, reported by gatscale.cli
        raise InputError(str(e)) from None
    print(f"{len(runs)} runs of experiment {experiment!r} at {uri}"
          + (f" (sweep {args.parent_run_id})" if args.parent_run_id else ""))
    return _write(runs, histories, lpips, args)


def _write(runs, histories, lpips, args) -> int:
    written, missing = regenerate(runs, histories, lpips, args.out, args.step, args.metric)
    for name, paths in written.items():
        print(f"wrote {name}: {', '.join(map(str, paths))}")
    for name, reason in missing.items():
        print(f"missing {name}: {reason}")
    return 0 if written else 1
