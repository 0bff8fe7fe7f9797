"""`gatscale figures`: regenerate every paper figure whose data the runs recorded (in MLflow, or `--run-dirs`: their
folders alone); say why the others are not."""
from __future__ import annotations

from gatscale.core.config import ConfigError
from gatscale.core.errors import InputError
from gatscale.sweep.spec import load_spec  # a study command: the spec names the study
from . import figures
from .load import (
    DEFAULT_CACHE_DIR,
    DEFAULT_TRACKING_URI,
    MissingData,
    load_experiment,
    load_histories,
    load_lpips,
    load_run_folders,
)


def add_arguments(parser):
    parser.add_argument("--experiment", help="MLflow experiment name (default: from --spec)")
    parser.add_argument("--tracking-uri",
                        help=f"MLflow tracking URI (default: from --spec, else {DEFAULT_TRACKING_URI})")
    parser.add_argument("--parent-run-id", help="only the runs of this sweep (its MLflow parent run)")
    parser.add_argument("--spec", help="sweep spec YAML: its name is the experiment; the tracking URI is its runs' "
                                       "tracking.uri")
    parser.add_argument("--run-dirs", nargs="+", metavar="RUN_DIR",
                        help="read these run folders alone, without MLflow (e.g. runs trained with "
                             "tracking.backend none)")
    parser.add_argument("--out", default="figures", help="output folder (default: figures)")
    parser.add_argument("--step", type=int, help="iteration at which FIDs are compared (default: the last one all "
                                                 "non-diverged runs reached)")
    parser.add_argument("--metric", help="Frechet-distance metric to plot (default: fid, else fd_digits; e.g. "
                                          "fid_50k_psi0.3 as logged by gatscale eval)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR),
                        help="metric-history cache (default: %(default)s)")
    parser.add_argument("--refresh", action="store_true", help="fetch every history again, ignoring the cache")


def study_spec(path):
    """The sweep spec, read as `gatscale sweep` reads it (its runs' tracking.uri from base_config and base, a relative
    store taken from the spec's project root); a bad spec is MissingData."""
    try:
        return load_spec(path)
    except ConfigError as e:
        raise MissingData(f"sweep spec {e}") from None


def read_spec(path) -> tuple[str, str]:
    """(experiment, tracking uri) of a sweep spec: the study's name and its runs' tracking.uri."""
    spec = study_spec(path)
    return spec.name, spec.tracking.uri


# The figures that plot a Frechet distance: none of them can exist when every run turns FID off on purpose.
FD_FIGURES = ("fid_vs_iteration_by_size", "fid_vs_iteration_by_patch", "fid_vs_train_compute",
              "fid_vs_inference_gflops", "ablation")
FIGURES = ("lr_crosscheck", "lpips_contribution", "fid_vs_iteration_by_size", "fid_vs_iteration_by_patch",
           "fid_vs_train_compute", "fid_vs_inference_gflops", "ablation", "samples", "lr_probe")


def figure_names(runs, probe: bool = False) -> tuple[list[str], str | None]:
    """The figures a study has -> (names, the one line saying what is skipped and why, or None).

    An LR probe's trials (a spec with a `probe:` section) make the probe's figure alone: they are short runs at
    fixed LRs, stopped by the probe's own criterion, not a cross-check or a scaling study. A study whose every
    run has eval.fid_every 0 has no FD figure (it turned FID off on purpose). Other studies: lr_probe only when
    their fixed-LR runs bracket an LR at some width."""
    if probe:
        return ["lr_probe"], None
    names = [n for n in FIGURES if n != "lr_probe" or len(figures.lr_probe_data(runs))]
    every = runs.get("eval.fid_every")
    if every is not None and len(runs) and (every == 0).all():  # not logged (nan): not known to be off
        return [n for n in names if n not in FD_FIGURES], (f"skipped the FD figures ({', '.join(FD_FIGURES)}): every "
                                                           f"run of the study has eval.fid_every 0 (FID off)")
    return names, None


def regenerate(runs, histories, lpips, out_dir=None, step=None, metric=None, only=None):
    """Draw the figures and the ablation table named in `only` (default: the study's, figure_names) -> (made {name:
    Figure, or the ablation DataFrame}, missing {name: reason}). Given `out_dir` each is written there too
    (`fig.files`, the table's `attrs["files"]`)."""
    jobs = {
        "lr_crosscheck": lambda: figures.lr_crosscheck(runs, histories, out_dir),
        "lpips_contribution": lambda: figures.lpips_contribution(lpips, runs, out_dir=out_dir),
        "fid_vs_iteration_by_size": lambda: figures.fid_curves(runs, histories, "size", out_dir=out_dir, metric=metric),
        "fid_vs_iteration_by_patch": lambda: figures.fid_curves(runs, histories, "patch", out_dir=out_dir,
                                                                metric=metric),
        "fid_vs_train_compute": lambda: figures.fid_vs_compute(runs, histories, "train", step, out_dir, metric),
        "fid_vs_inference_gflops": lambda: figures.fid_vs_compute(runs, histories, "inference", step, out_dir, metric),
        "ablation": lambda: figures.ablation_table(runs, histories, step, out_dir, metric),
        "samples": lambda: figures.samples_sheet(runs, out_dir),
        "lr_probe": lambda: figures.lr_probe(runs, out_dir),
    }
    if only is None:
        only = figure_names(runs)[0]
    made, missing = {}, {}
    for name in only:
        try:
            made[name] = jobs[name]()
        except MissingData as e:
            missing[name] = str(e).removeprefix(f"{name}: ")
    return made, missing


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
        spec = study_spec(args.spec) if args.spec else None
        experiment, uri = (spec.name, spec.tracking.uri) if spec else (None, None)
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
    return _write(runs, histories, lpips, args, probe=spec is not None and spec.probe is not None)


def _write(runs, histories, lpips, args, probe: bool = False) -> int:
    names, skipped = figure_names(runs, probe)
    made, missing = regenerate(runs, histories, lpips, args.out, args.step, args.metric, only=names)
    for name, result in made.items():
        files = result.attrs["files"] if name == "ablation" else result.files
        print(f"wrote {name}: {', '.join(map(str, files))}")
        if getattr(result, "note", None):
            print(f"{name}: {result.note}")  # e.g. the FD-vs-compute exponent with its 95% CI, or 'no trend'
    for name, reason in missing.items():
        print(f"missing {name}: {reason}")
    if skipped:
        print(skipped)
    return 0 if made else 1
