"""The paper's figures, each a function of the frames from `analysis.load`.

Each figure is two steps: `<name>_data(runs, histories, ...) -> DataFrame` picks the runs it needs from whatever
it is given and computes what is drawn (raising `MissingData`, saying what to run, when they are not there), and
`plot_<name>(data, out_dir=None)` draws that frame; `<name>(...)` does both. The Figure keeps its frame
(`fig.data`) and, given `out_dir`, is written as PNG + PDF with the frame as CSV beside them (the table function
returns the DataFrame and writes CSV + LaTeX).

    lr_crosscheck         Fig. 5b: losses, gradient norms and FID against iteration, width-aware LR vs not
    lpips_contribution    Fig. 4b: per-block LPIPS contribution of G, with and without MNG
    fid_curves            scaling Fig. (a)/(b): FID against iteration per model size / per patch size
    fid_vs_compute        scaling Fig. (c): FID against GFLOPs with a fitted power law FID = a * F^b
    ablation_table        MNG x REPA x width-aware LR -> FID at a matched iteration
    lr_probe              `gatscale probe-lr`: largest stable LR per width, the fit lr_max ∝ C^b against b = -1
    samples_sheet         the final sample grid of each model size side by side (from the run folders)

Every FD figure draws the real-data floor (metric `<fd>_floor`, e.g. fd_digits_floor, logged once per run)
as a dashed line: real images score that much with the same number of samples.
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from gatscale.core import stats
from gatscale.core.atomic import atomic_write_text
from gatscale.core.stats import bracket, fit_lr_law
from gatscale.tracking.metrics_log import FD_METRICS
from . import style
from .load import MissingData

SWITCHES = ["mng", "repa", "width_aware_lr"]


# ---------------------------------------------------------------------------------------------
# Shared helpers

def fid_metric(histories: pd.DataFrame, metric: str | None = None) -> str:
    """`metric` if logged; else 'fid' (Inception) or 'fd_digits' (digits extractor), whichever more runs logged."""
    if metric is not None:
        if not (histories["metric"] == metric).any():
            logged = sorted(m for m in histories["metric"].unique() if m.startswith(("fid", "fd_")))
            raise MissingData(f"no metric {metric!r} logged; Frechet-distance metrics logged: "
                              f"{', '.join(logged) or 'none'}")
        return metric
    counts = {m: histories.loc[histories["metric"] == m, "run_id"].nunique() for m in FD_METRICS}
    if not any(counts.values()):
        raise MissingData("no FID logged (metric 'fid' or 'fd_digits'): train with eval.fid_every > 0")
    return max(FD_METRICS, key=counts.get)


def series(histories: pd.DataFrame, run_id: str, metric: str, x: str = "step"):
    """(x, value) of one run's metric, finite values only, in step order."""
    h = histories[(histories["run_id"] == run_id) & (histories["metric"] == metric)]
    h = h[np.isfinite(h["value"])].sort_values("step")
    return h[x].to_numpy(float), h["value"].to_numpy(float)


def diverged_step(run, histories: pd.DataFrame):
    """Step at which a diverged run stopped (tag gatscale.diverged_step, else its last logged step), or None."""
    if run.status != "diverged":
        return None
    if np.isfinite(run.diverged_step):
        return float(run.diverged_step)
    steps = histories.loc[histories["run_id"] == run.run_id, "step"]
    return float(steps.max()) if len(steps) else None


def stop_label(run) -> str:
    """Why a run stopped early, in a few words for a legend, from the reason the trainer recorded (tag
    gatscale.divergence_reason): 'diverged: non-finite loss/d' or, for a train.stability mode, 'stopped: G loss >
    10' (the threshold, not the value seen, and no step)."""
    reason = re.sub(r" at step \d+$", "", str(getattr(run, "divergence_reason", "") or ""))
    if reason.startswith("unstable: "):
        reason = re.sub(r" -?[\d.]+(?:e[-+]?\d+)?(?= [<>] )", "", reason.removeprefix("unstable: "))
        return "stopped: " + re.sub(r" its first value [\d.e+-]+", " its first value", reason)
    if reason.startswith("non-finite"):
        return f"diverged: {reason}"
    return f"{run.status}: {reason}" if reason else str(run.status)


def mark_divergence(ax, steps, values, at, x=None):
    """A red x at iteration `at` (drawn at `x` on an axis in other units, e.g. its epoch), at the height
    of the last finite value logged at or before it."""
    keep = steps <= at
    if not keep.any():
        return None
    (line,) = ax.plot([at if x is None else x], [values[keep][-1]], **style.DIVERGED)
    return line


def main_method(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the full method (MNG-exp, REPA, width-aware LR); else of the most common switch setting."""
    full = runs[(runs["mng"] == "exp") & runs["repa"] & runs["width_aware_lr"]]
    if len(full) or runs.empty:
        return full
    combo = runs.groupby(SWITCHES).size().idxmax()
    return runs[(runs[SWITCHES] == pd.Series(combo, index=SWITCHES)).all(axis=1)]


def switches_of(runs: pd.DataFrame) -> str:
    """The switch setting shared by `runs` in words (for a legend title), or '' when they differ."""
    combos = runs[SWITCHES].drop_duplicates()
    return style.method_label(*combos.iloc[0]) if len(combos) == 1 else ""


def _once(seen: set, label: str) -> str:
    """Label a line only the first time (seeds of one setting share a legend entry)."""
    if label in seen:
        return "_nolegend_"
    seen.add(label)
    return label


def floor_value(runs: pd.DataFrame, histories: pd.DataFrame, metric: str) -> float:
    """The real-data floor of `metric` (its `<metric>_floor`, mean over `runs`); nan if not logged."""
    h = histories[(histories["metric"] == f"{metric}_floor") & histories["run_id"].isin(runs["run_id"])]
    h = h[np.isfinite(h["value"]) & (h["value"] > 0)]
    return float(h["value"].mean()) if len(h) else np.nan


def draw_floor(ax, floor: float):
    """The real-data floor (floor_value) as a dashed line; None if there is none."""
    if not np.isfinite(floor):
        return None
    return ax.axhline(floor, **style.FLOOR, label="real data (same number of samples)")


def matched_fid(runs: pd.DataFrame, histories: pd.DataFrame, metric: str, step: int | None = None):
    """FID of each run at one common iteration -> (frame run_id/at_step/value/train_flops, step).

    Default `step`: the last iteration every non-diverged run has a FID for. A run takes part if its
    FID history reaches `step`; its value is the one logged at the last step <= `step` (column at_step).
    """
    h = histories[(histories["metric"] == metric) & histories["run_id"].isin(runs["run_id"])]
    h = h[np.isfinite(h["value"])]
    last = h.groupby("run_id")["step"].max()
    if last.empty:
        raise MissingData(f"no finite {metric} values logged by the selected runs")
    if step is None:
        alive = last[last.index.isin(runs.loc[runs["status"] != "diverged", "run_id"])]
        step = int((alive if len(alive) else last).min())
    rows = []
    for run_id, g in h.groupby("run_id"):
        g = g[g["step"] <= step].sort_values("step")
        if last[run_id] >= step and len(g):
            rows.append((run_id, int(g["step"].iloc[-1]), float(g["value"].iloc[-1]), float(g["train_flops"].iloc[-1])))
    return pd.DataFrame(rows, columns=["run_id", "at_step", "value", "train_flops"]), step


# What a figure's CSV leaves out: the config keys and tags ("model.generator.size", "gatscale.status": any name with
# a dot) and the runs table's bookkeeping. Those are in MLflow and the run folders; the CSV keeps each run's identity
# (name, model, size, patch, width, method, seed, status) and what the figure computed.
CSV_LEAVES_OUT = ("run_dir", "folder", "fingerprint", "start_time", "parent_run_id", "world_size", "params_g",
                  "params_d", "gflops_g", "gflops_d", "dataset_images", "images_per_step", "flops_per_step",
                  "epochs_per_step", "lr_d", "model_d", "width_d", "batch_size")


def _finish(fig, runs, out_dir, stem, footnote=True, data: pd.DataFrame | None = None):
    """Add the stand-in footnote (unless the figure added its own: footnote=False) and save: PNG and PDF, and the
    figure's data (its `*_data` frame, less CSV_LEAVES_OUT) as CSV beside them."""
    if footnote:
        style.add_footnote(fig, runs)
    fig.data = data
    if out_dir is not None:
        fig.files = style.save(fig, out_dir, stem)
        if data is not None:
            csv = Path(out_dir) / f"{stem}.csv"
            keep = [c for c in data.columns if "." not in c and c not in CSV_LEAVES_OUT]
            atomic_write_text(csv, data[keep].to_csv(index=False))
            fig.files.append(csv)
    return fig


# ---------------------------------------------------------------------------------------------
# Fig. 5b: LR cross-check

def crosscheck_runs(runs: pd.DataFrame):
    """Runs for the LR cross-check -> (runs, wide model, narrow model, shared LR keys).

    Needs, among runs with the same MNG and REPA setting, a model trained at two LRs, one of them the
    LR of a narrower model (paper: GAT-B/2 at its width-aware LR and at GAT-S/2's LR, plus GAT-S/2).
    """
    key = runs["lr_g"].map(lambda v: f"{v:.6g}")
    width = runs.groupby("model")["width"].first()
    patch = runs.groupby("model")["patch"].first()
    groups = sorted(runs.groupby(["mng", "repa"]), key=lambda kv: kv[0] != ("exp", True))  # full method first
    for _, group in groups:
        lrs = {m: set(key[group.index][group["model"] == m]) for m in group["model"].unique()}
        for wide in sorted(lrs, key=lambda m: -width[m]):
            narrower = [m for m in lrs if width[m] < width[wide] and lrs[m] & lrs[wide]]
            if len(lrs[wide]) < 2 or not narrower:
                continue
            narrow = min(narrower, key=lambda m: (patch[m] != patch[wide], -width[m]))
            shared = lrs[wide] & lrs[narrow]
            keep = (group["model"] == wide) | ((group["model"] == narrow) & key[group.index].isin(shared))
            return group[keep], wide, narrow, shared
    found = "; ".join(f"{m} at lr_G {', '.join(sorted(set(key[runs['model'] == m])))}" for m in runs["model"].unique())
    raise MissingData("lr_crosscheck: needs runs of two widths with the wider model trained at two learning rates, "
                      "one of them the narrower model's (e.g. GAT-B/2 with its width-aware LR and with GAT-S/2's LR, "
                      f"plus GAT-S/2); found {found}")


# metric, panel title, y label, log y
CROSSCHECK_PANELS = (("loss/d", "D loss", "loss", False), ("loss/g", "G loss", "loss", False),
                     ("grad_norm/d", "D gradient norm", "L2 norm before clipping", True),
                     ("grad_norm/g", "G gradient norm", "L2 norm before clipping", True))


def lr_crosscheck_data(runs: pd.DataFrame, histories: pd.DataFrame) -> pd.DataFrame:
    """The cross-check's runs (crosscheck_runs) and their panel metrics, one row per (run, metric, step), with
    `on_shared` (the wide model at the narrow one's LR), `note` (its LR in words), `diverged_step` and the FID's
    real-data `floor`; attrs: wide, narrow, fid (None if not logged)."""
    sel, wide, narrow, shared = crosscheck_runs(runs)
    try:
        fid = fid_metric(histories[histories["run_id"].isin(sel["run_id"])])
    except MissingData:
        fid = None
    sel = sel.assign(on_shared=(sel["model"] == wide) & sel["lr_g"].map(lambda v: f"{v:.6g}").isin(shared))
    sel["note"] = [f"{narrow}'s LR" if on else ("width-aware LR" if wa else "fixed LR")
                   for on, wa in zip(sel["on_shared"], sel["width_aware_lr"])]
    stops = [diverged_step(run, histories) for run in sel.itertuples()]
    sel["diverged_step"] = [np.nan if stop is None else stop for stop in stops]
    sel["stop"] = [stop_label(run) if stop is not None else "" for run, stop in zip(sel.itertuples(), stops)]
    metrics = [m for m, *_ in CROSSCHECK_PANELS] + ([fid] if fid else [])
    h = histories[histories["run_id"].isin(sel["run_id"]) & histories["metric"].isin(metrics)]
    h = h[np.isfinite(h["value"])][["run_id", "metric", "step", "value"]]
    columns = ["run_id", "name", "model", "size", "lr_g", *SWITCHES, "on_shared", "note", "diverged_step", "stop",
               "stand_in",
               *[c for c in ("eval.fid_samples",) if c in sel]]
    order = {r: i for i, r in enumerate(sel["run_id"])}
    data = h.merge(sel[columns], on="run_id").sort_values(["run_id", "metric", "step"],
                                                          key=lambda c: c.map(order) if c.name == "run_id" else c)
    data = data.reset_index(drop=True)
    data["floor"] = floor_value(sel, histories, fid) if fid else np.nan
    data.attrs.update(wide=wide, narrow=narrow, fid=fid)
    return data


def plot_lr_crosscheck(data: pd.DataFrame, out_dir=None):
    """Fig. 5b from lr_crosscheck_data: does the width-aware LR (Eq. 4) matter? A run that stopped early ends in a red
    x at its last step; the legend says why it stopped (stop_label), per setting."""
    sel, fid = data.drop_duplicates("run_id"), data.attrs["fid"]
    if fid:
        panels = CROSSCHECK_PANELS + ((fid, style.fid_short_label(fid, sel), style.fid_label(fid, sel), True),)
    else:
        panels = CROSSCHECK_PANELS + ((None, "FID", "FID (not logged)", True),)
    fig, axes = style.new_figure(9.0, 5.2, 2, 3)
    axes = axes.ravel()
    seen, stopped = set(), {}  # stop label -> the settings that stopped so
    for run in sel.itertuples():
        setting = rf"{run.model}, $\eta_G$ = {run.lr_g:.1e}"
        label = _once(seen, f"{setting} ({run.note})")
        stop = run.diverged_step if np.isfinite(run.diverged_step) else None
        for ax, (metric, *_) in zip(axes, panels):
            x, y = series(data, run.run_id, metric) if metric else (np.array([]), np.array([]))
            sparse = metric in FD_METRICS  # evaluated every fid_every steps: show the points
            ax.plot(x, y, color=style.size_color(run.size), linestyle="--" if run.on_shared else "-", label=label,
                    marker="o" if sparse else None, markersize=3)
            if stop is not None and mark_divergence(ax, x, y, stop) is not None:
                stopped.setdefault(run.stop, []).append(setting)
    floor = draw_floor(axes[len(panels) - 1], data["floor"].iloc[0] if len(data) else np.nan)
    for i, (ax, (metric, title, ylabel, log)) in enumerate(zip(axes, panels)):
        is_fid = i == len(panels) - 1  # its long, honest name goes on top, the short one on the axis
        ax.set_title(ylabel if is_fid else title, fontsize=9 if is_fid else None)
        ax.set_ylabel(title if is_fid else ylabel)
        style.iteration_axis(ax, "iteration")
        if log and ax.has_data():
            style.log_axis(ax)
        if metric is None:
            ax.text(0.5, 0.5, "no FID logged", transform=ax.transAxes, ha="center", va="center", color="grey")
    legend_ax = axes[-1]
    legend_ax.axis("off")
    handles, labels = axes[0].get_legend_handles_labels()
    for stop, settings in stopped.items():
        handles.append(Line2D([], [], **style.DIVERGED))
        labels.append(f"{stop} ({'; '.join(dict.fromkeys(settings))})")
    if floor is not None:
        handles.append(floor)
        labels.append(floor.get_label())
    legend_ax.legend(handles, labels, loc="center", frameon=False, title=switches_of(sel), fontsize=7.5,
                     title_fontsize=7.5)
    fig.suptitle("LR cross-check: width-aware LR (Eq. 4) vs a narrower model's LR")
    return _finish(fig, sel, out_dir, "lr_crosscheck", data=data)


def lr_crosscheck(runs: pd.DataFrame, histories: pd.DataFrame, out_dir=None):
    """Fig. 5b: plot_lr_crosscheck(lr_crosscheck_data(runs, histories))."""
    return plot_lr_crosscheck(lr_crosscheck_data(runs, histories), out_dir)


# ---------------------------------------------------------------------------------------------
# Fig. 4b: per-block LPIPS contribution

def lpips_contribution_data(lpips: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The LPIPS tables (load_lpips) of the runs, one row per (run, block), with the run's model, size and MNG."""
    if lpips is None or lpips.empty:
        raise MissingData("no LPIPS tables: run gatscale analyze lpips-contribution "
                          "(it logs eval/lpips_contribution.csv to each run)")
    columns = ["run_id", "name", "model", "size", "mng", "stand_in"]
    return lpips.drop(columns="name", errors="ignore").merge(runs[columns], on="run_id")


def plot_lpips_contribution(data: pd.DataFrame, column: str = "contribution", out_dir=None):
    """Fig. 4b from lpips_contribution_data: how much each generator block changes the image (LPIPS), with and
    without MNG."""
    fig, axes = style.new_figure(6.0, 3.2)
    ax, seen = axes[0, 0], set()
    for _, g in data.groupby("run_id", sort=False):
        g, run = g.sort_values("block"), g.iloc[0]
        mng_on = run["mng"] != "off"
        label = _once(seen, f"{run['model']}, {'MNG-' + run['mng'] if mng_on else 'no MNG'}")
        ax.plot(g["block"], g[column], color=style.size_color(run["size"]), linestyle="-" if mng_on else "--",
                marker="o" if mng_on else "s", markersize=4, label=label)
    backbones = ", ".join(sorted(data["backbone"].dropna().astype(str).unique())) if "backbone" in data else ""
    ax.set_xlabel("generator block index (0 = first)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    what = "normalized LPIPS contribution" if column == "normalized" else "LPIPS contribution"
    ax.set_ylabel(f"{what} ({backbones})" if backbones else what)
    ax.set_ylim(bottom=0)
    style.legend_outside(fig, ax, "model, MNG")
    ax.set_title("Per-block contribution to the image (block removed)")
    random_backbones = [f"LPIPS backbone {b}" for b in backbones.split(", ") if "stand-in" in b or "random" in b]
    style.add_footnote(fig, data.drop_duplicates("run_id"), random_backbones)
    return _finish(fig, data.drop_duplicates("run_id"), out_dir, "lpips_contribution", footnote=False, data=data)


def lpips_contribution(lpips: pd.DataFrame, runs: pd.DataFrame, column: str = "contribution", out_dir=None):
    """Fig. 4b: plot_lpips_contribution(lpips_contribution_data(lpips, runs))."""
    return plot_lpips_contribution(lpips_contribution_data(lpips, runs), column, out_dir)


# ---------------------------------------------------------------------------------------------
# Scaling (a)/(b): FID against iteration

def _epoch_per_step(runs):
    """The epochs-per-iteration ratio (analysis.load) if all runs share it (same batch and data set), else None."""
    ratios = runs["epochs_per_step"].astype(float)
    if ratios.empty or not np.isfinite(ratios).all():
        return None
    return float(ratios.mean()) if np.allclose(ratios, ratios.mean(), rtol=0.01) and ratios.mean() > 0 else None


def at_ladder_patch(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs at the size ladder's patch size: 2 where any run has it, else the commonest. The per-size curves, the
    FD-vs-compute law and the ladder finding (gatscale/sweep/findings.py) all read one patch size, so another patch's
    cheaper, worse runs (the patch contrast) never bend the law."""
    if runs.empty:
        return runs
    patch = 2 if (runs["patch"] == 2).any() else runs["patch"].mode().iloc[0]
    return runs[runs["patch"] == patch]


def fid_curves_data(runs: pd.DataFrame, histories: pd.DataFrame, by: str = "size", x: str = "step",
                    metric: str | None = None) -> pd.DataFrame:
    """The FID points of the runs a curve figure shows, one row per (run, step): the run's model, size, patch and
    switches, `x` (the step or its epoch), `value`, the run's `diverged_step` (and `diverged_x`) and the real-data
    `floor`; attrs: metric, by, x, epochs_per_step (if all runs share it).

    by='size': the full-method runs at patch 2 (or the commonest patch), one colour per size.
    by='patch': every size trained at two or more patch sizes, colour = size, line style = patch.
    """
    metric = fid_metric(histories, metric)
    stem = f"fid_vs_{'iteration' if x == 'step' else 'epoch'}_by_{by}"
    have = histories.loc[histories["metric"] == metric, "run_id"].unique()
    sel = main_method(runs[runs["run_id"].isin(have)])
    if by == "size":
        sel = at_ladder_patch(sel)
    elif by == "patch":
        patches = sel.groupby("size")["patch"].nunique()
        if patches.empty or patches.max() < 2:
            raise MissingData(f"{stem}: needs one model size at two or more patch sizes (e.g. GAT-B/2 and "
                              f"GAT-B/4) with {metric} logged; found {', '.join(sel['model'].unique()) or 'none'}")
        sel = sel[sel["size"].isin(patches[patches >= 2].index)]
    else:
        raise ValueError(f"fid_curves: by = {by!r}; valid: 'size', 'patch'")
    if x == "epoch" and histories.loc[histories["run_id"].isin(sel["run_id"]), "epoch"].isna().all():
        raise MissingData(f"{stem}: the runs logged no params images_per_step and dataset_images (epochs)")
    h = histories[(histories["metric"] == metric) & histories["run_id"].isin(sel["run_id"])]
    h = h[np.isfinite(h["value"])]
    columns = ["run_id", "name", "model", "size", "patch", *SWITCHES, "status", "stand_in", "epochs_per_step",
               *[c for c in ("eval.fid_samples",) if c in sel]]  # the sample count: the FID's label (style)
    data = h[["run_id", "step", "epoch", "value"]].merge(sel[columns], on="run_id")
    data["x"] = data["step"] if x == "step" else data["epoch"]
    stops = {run.run_id: diverged_step(run, histories) for run in sel.itertuples()}
    data["diverged_step"] = data["run_id"].map(lambda r: stops[r] if stops[r] is not None else np.nan)
    data["diverged_x"] = data["diverged_step"] * (1 if x == "step" else data["epochs_per_step"])
    data["floor"] = floor_value(sel, histories, metric)
    order = {m: i for i, m in enumerate(sel["model"].unique())}
    data = data.sort_values(["model", "run_id", "step"], key=lambda c: c.map(order) if c.name == "model" else c)
    data = data.reset_index(drop=True)
    data.attrs.update(metric=metric, by=by, x=x, epochs_per_step=_epoch_per_step(sel))
    return data


def plot_fid_curves(data: pd.DataFrame, out_dir=None):
    """FID against iteration or epoch (the frame of fid_curves_data), one curve per model: mean over seeds, band =
    min..max; a diverged run ends in a red x at its divergence step."""
    metric, by, x = data.attrs["metric"], data.attrs["by"], data.attrs["x"]
    stem = f"fid_vs_{'iteration' if x == 'step' else 'epoch'}_by_{by}"
    fig, axes = style.new_figure(6.0, 3.4)
    ax = axes[0, 0]
    for model, group in data.groupby("model", sort=False):
        size, patch = group["size"].iloc[0], group["patch"].iloc[0]
        curves = group.pivot_table(index="step", columns="run_id", values="value")
        xs = group.groupby("step")["x"].mean().reindex(curves.index).to_numpy(float)
        seeds = group["run_id"].nunique()
        color, ls = style.size_color(size), style.patch_linestyle(patch)
        ax.plot(xs, curves.mean(axis=1), color=color, linestyle=ls, marker=style.patch_marker(patch),
                markersize=3, label=f"{model}{f' ({seeds} seeds)' if seeds > 1 else ''}")
        if seeds > 1:
            ax.fill_between(xs, curves.min(axis=1), curves.max(axis=1), color=color, alpha=0.15, linewidth=0)
        for _, run in group[np.isfinite(group["diverged_step"])].groupby("run_id"):
            stop = run["diverged_step"].iloc[0]
            mark_divergence(ax, run["step"].to_numpy(float), run["value"].to_numpy(float), stop,
                            run["diverged_x"].iloc[0] if x == "epoch" else None)
    draw_floor(ax, data["floor"].iloc[0] if len(data) else np.nan)
    style.log_axis(ax)
    runs = data.drop_duplicates("run_id")
    ax.set_ylabel(style.fid_label(metric, runs))
    if x == "epoch":
        ax.set_xlabel("epoch")
    else:
        style.iteration_axis(ax)
        ratio = data.attrs.get("epochs_per_step")
        if ratio:
            top = ax.secondary_xaxis("top", functions=(lambda s: s * ratio, lambda e: e / ratio))
            top.set_xlabel("epoch")
    style.legend_outside(fig, ax, switches_of(runs))
    per = "model size" if by == "size" else "patch size"
    ax.set_title(f"{style.fid_short_label(metric)} during training, per {per}")
    return _finish(fig, runs, out_dir, stem, data=data)


def fid_curves(runs: pd.DataFrame, histories: pd.DataFrame, by: str = "size", x: str = "step", out_dir=None,
               metric: str | None = None):
    """FID against iteration (x='step') or epoch, per model size or patch: plot_fid_curves(fid_curves_data(...))."""
    return plot_fid_curves(fid_curves_data(runs, histories, by, x, metric), out_dir)


# ---------------------------------------------------------------------------------------------
# Scaling (c): FID against compute, power-law fit

class PowerLaw(stats.ScalingLaw):
    """FID = a * F^b (F: compute) over the size ladder (gatscale.core.stats.fit_scaling_law: every seed, each size's
    seeds as its replicates), with the verdict the figure prints."""

    @property
    def trend(self) -> str | None:
        """None when FID falls with compute with confidence; else the plain reason it does not."""
        lo, hi = self.b_ci
        if self.b >= 0:
            return (f"no scaling trend: the fitted exponent is {self.b:+.3f} "
                    f"(the Fréchet distance does not fall with compute)")
        if not np.isfinite(lo):
            return f"no confidence interval with {self.runs} runs: the exponent {self.b:+.3f} is not established"
        if hi >= 0:
            return f"no clear scaling trend: the exponent's 95% CI [{lo:+.3f}, {hi:+.3f}] includes 0"
        return None


def ladder(c, fid, se=None):
    """Per-run (compute, value[, se]) -> the ladder stats.fit_scaling_law takes: sizes ascending, each with its
    runs' values and standard errors (None for a size without one)."""
    c, fid = np.asarray(c, float), np.asarray(fid, float)
    se = np.full(len(c), np.nan) if se is None else np.asarray(se, float)
    xs = np.unique(c)
    ses = [se[c == x] for x in xs]
    return (list(xs), [list(fid[c == x]) for x in xs],
            [list(e) if np.isfinite(e).all() else None for e in ses] if np.isfinite(se).any() else None)


def fit_power_law(c, fid, se=None) -> PowerLaw:
    """The seed-aware law over per-run (compute, FID) pairs: runs at one compute are one size's seeds."""
    x, values, ses = ladder(c, fid, se)
    return stats.fit_scaling_law(x, values, se=ses, cls=PowerLaw)


def backtest_of(c, fid, se=None):
    """stats.backtest over per-run (compute, FID): the law without the largest compute, against its runs."""
    return stats.backtest(*ladder(c, fid, se))


def _sci(v: float) -> str:
    e = int(np.floor(np.log10(abs(v))))
    return f"{v:.3g}" if -2 <= e <= 2 else rf"{v / 10 ** e:.2f}\times10^{{{e}}}"


def fid_vs_compute_data(runs: pd.DataFrame, histories: pd.DataFrame, compute: str = "train", step: int | None = None,
                        metric: str | None = None) -> pd.DataFrame:
    """One row per full-method run at the ladder's patch size (`at_ladder_patch`) with its FID (`value`) at a matched
    iteration (`at_step`) and its compute `c`, plus the runs' columns and the real-data `floor`; attrs: metric, step,
    compute.

    compute='train': c = training GFLOPs to that iteration (param flops_per_step, column train_flops);
    compute='inference': c = the generator's forward GFLOPs per image (param gflops_g).
    """
    metric = fid_metric(histories, metric)
    sel = main_method(runs[runs["run_id"].isin(histories.loc[histories["metric"] == metric, "run_id"])])
    sel = at_ladder_patch(sel)
    at, step = matched_fid(sel, histories, metric, step)
    pts = sel.merge(at, on="run_id")
    if compute == "train":
        pts["c"] = pts["train_flops"] / 1e9
        stem, why = "fid_vs_train_compute", "param flops_per_step"
    elif compute == "inference":
        pts["c"] = pts["gflops_g"]
        stem, why = "fid_vs_inference_gflops", "param gflops_g"
    else:
        raise ValueError(f"fid_vs_compute: compute = {compute!r}; valid: 'train', 'inference'")
    pts = pts[(pts["c"] > 0) & (pts["value"] > 0)].reset_index(drop=True)
    if pts["c"].nunique() < 2:
        raise MissingData(f"{stem}: needs {metric} at iteration {step:,} and {why} for runs of at least two "
                          f"compute budgets; found {len(pts)} usable run(s)")
    pts["floor"] = floor_value(pts, histories, metric)
    pts["se"] = metric_se(pts, histories, metric)
    pts.attrs.update(metric=metric, step=step, compute=compute)
    return pts


def metric_se(pts: pd.DataFrame, histories: pd.DataFrame, metric: str) -> np.ndarray:
    """Each run's `<metric>_se` (the metric's own sampling error, where the run logged it) at its `at_step`; nan
    where not logged."""
    h = histories[(histories["metric"] == f"{metric}_se") & histories["run_id"].isin(pts["run_id"])]
    if h.empty:
        return np.full(len(pts), np.nan)
    at = dict(zip(h["run_id"] + "@" + h["step"].astype(int).astype(str), h["value"]))
    return np.array([at.get(f"{r}@{int(s)}", np.nan) for r, s in zip(pts["run_id"], pts["at_step"])], float)


def plot_fid_vs_compute(pts: pd.DataFrame, out_dir=None):
    """FID against compute (the frame of fid_vs_compute_data), per model its seeds, their geometric mean and range,
    the seed-aware power law FID = a * F^b (gatscale.core.stats) with its 95% band, and the leave-largest-out backtest.
    Compute is F on the figure: C is a model's width wherever gatscale names a size ('GAT-B/2 (d=4, C=32)')."""
    metric, step, compute = pts.attrs["metric"], pts.attrs["step"], pts.attrs["compute"]
    if compute == "train":
        xlabel, stem = f"training compute F to iteration {step:,} (GFLOPs)", "fid_vs_train_compute"
    else:
        xlabel, stem = "generator inference compute F (GFLOPs per image)", "fid_vs_inference_gflops"
    se = pts["se"] if "se" in pts else None
    fit = fit_power_law(pts["c"], pts["value"], se)
    fd = "FD" if metric.startswith("fd_") else "FID"
    fig, axes = style.new_figure(8.4, 3.8)
    ax = axes[0, 0]
    # per model: every seed (small dots), their geometric mean (the marker) and range (the bar); the fit uses
    # every run, each model's seeds as its replicates
    for model, g in pts.groupby("model", sort=False):
        size, patch, c, v = g["size"].iloc[0], g["patch"].iloc[0], float(g["c"].mean()), g["value"].to_numpy(float)
        mean, color = float(np.exp(np.log(v).mean())), style.size_color(size)
        seeds = f" ({len(v)} seeds: mean, range)" if len(v) > 1 else ""
        ax.plot([c], [mean], linestyle="none", marker=style.patch_marker(patch), markersize=6, color=color,
                label=f"{model}{seeds}")
        if len(v) > 1:
            ax.errorbar([c], [mean], yerr=[[mean - v.min()], [v.max() - mean]], linestyle="none", capsize=3,
                        color=color)
            ax.plot([c] * len(v), v, linestyle="none", marker=".", markersize=3, color=color, alpha=0.6,
                    label="_nolegend_")
    means = pts.groupby("model", sort=False).agg(c=("c", "mean"), value=("value", lambda v: np.exp(np.log(v).mean())))
    means = means.reset_index()
    lo, hi = np.log10(pts["c"].min()), np.log10(pts["c"].max())
    cs = np.logspace(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), 100)
    # the fit and its correlation go in the legend (outside the axes), so they never cover a point
    ci = f", 95% CI [{fit.b_ci[0]:.3f}, {fit.b_ci[1]:.3f}]" if np.isfinite(fit.b_ci[0]) else ""
    ax.plot(cs, fit(cs), color="black", linewidth=1,
            label=rf"fit: $\mathrm{{{fd}}} = {_sci(fit.a)}\,F^{{{fit.b:.3f}}}$" + "\n"
                  + f"exponent {fit.b:.3f}{ci}\nPearson r (log F, log {fd}) = {fit.r:.3f}, {fit.n} sizes, "
                    f"{fit.runs} runs")
    if fit.df >= 1:
        ax.fill_between(cs, *fit.band(cs), color="grey", alpha=0.2, linewidth=0, label="95% confidence band")
    bt = backtest_of(pts["c"], pts["value"], se)
    fig.backtest = bt
    draw_backtest(ax, bt, cs)
    draw_floor(ax, pts["floor"].iloc[0])
    fig.note = (fit.trend or f"{fd} falls with compute: exponent {fit.b:.3f}{ci}") + (
        f"; {bt.line()}" if bt else "; no backtest: fewer than three runs below the largest size")
    style.log_axis(ax, "x")
    style.log_axis(ax, "y")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(style.fid_label(metric, pts))
    # an absent trend is said in the title, where no reader misses it
    title = f"{style.fid_short_label(metric)} at iteration {step:,} against compute"
    if fit.trend:
        trend = textwrap.fill(fit.trend[0].upper() + fit.trend[1:], 64)  # within the axes' width
        ax.set_title(f"{title}\n{trend}", color="#8B0000", fontsize=8)
    else:
        ax.set_title(title)
    style.legend_outside(fig, ax, switches_of(pts))
    style.add_footnote(fig, pts)
    style.annotate_points(ax, means["c"], means["value"],  # 'B/2': the legend has the rest ('(d=4, C=32)')
                          [m.removeprefix("GAT-").split(" (")[0] for m in means["model"]])
    fig.power_law = fit
    return _finish(fig, pts, out_dir, stem, footnote=False, data=pts)


def draw_backtest(ax, bt, cs):
    """The law fitted without the largest size (dashed, up to it), its 80 % and 95 % prediction intervals there
    (thick and thin bars beside the point) and, in the legend (never over a point or the floor), whether the
    size's runs landed inside."""
    if bt is None:
        ax.plot([], [], linestyle="none", label="backtest: needs three runs below the largest size")
        return
    off = bt.x * 1.06
    where = "inside its 80% interval" if bt.inside80 else ("inside the 95%, outside the 80%" if bt.inside95
                                                             else "OUTSIDE its 95% interval")
    ax.plot([off, off], [bt.lo95, bt.hi95], color="#1f5fa8", linewidth=1, label="backtest (fit without the largest "
            f"size): 95% prediction interval;\nits {len(bt.values)} run(s) (mean {bt.truth:.3g}) landed {where}")
    ax.plot([off, off], [bt.lo80, bt.hi80], color="#1f5fa8", linewidth=4, alpha=0.6, label="... and 80%")
    ax.plot([off], [bt.predicted], marker="_", markersize=10, color="#1f5fa8", label="_nolegend_")


def fid_vs_compute(runs: pd.DataFrame, histories: pd.DataFrame, compute: str = "train", step: int | None = None,
                   out_dir=None, metric: str | None = None):
    """FID against compute with FID = a * F^b: plot_fid_vs_compute(fid_vs_compute_data(...))."""
    return plot_fid_vs_compute(fid_vs_compute_data(runs, histories, compute, step, metric), out_dir)


# ---------------------------------------------------------------------------------------------
# Ablation table: MNG x REPA x width-aware LR

def ablation_table(runs: pd.DataFrame, histories: pd.DataFrame, step: int | None = None, out_dir=None,
                   metric: str | None = None) -> pd.DataFrame:
    """FID at a matched iteration for every (model, MNG, REPA, width-aware LR, LR) setting; mean and std over seeds."""
    metric = fid_metric(histories, metric)
    settings = runs.groupby("model")[SWITCHES].apply(lambda g: len(g.drop_duplicates()))
    models = settings[settings >= 2].index
    if models.empty:
        raise MissingData("ablation: needs runs of one model that differ in method.mng, method.repa or "
                          "optim.width_aware_lr; every model here has a single setting "
                          f"({switches_of(runs) or 'mixed'})")
    sel = runs[runs["model"].isin(models)]
    at, step = matched_fid(sel, histories, metric, step)
    data = sel.merge(at, on="run_id", how="left")
    rows = []
    data["lr_g"] = data["lr_g"].round(12)  # 2e-4 * 768 / 384 and 4e-4 are one LR
    for (model, mng, repa, wa, lr_g), g in data.groupby(["model"] + SWITCHES + ["lr_g"], sort=False):
        values = g["value"].dropna()
        diverged = g[g["status"] == "diverged"]
        rows.append({"model": model, "mng": mng, "repa": repa, "width_aware_lr": wa, "lr_g": lr_g,
                     f"{metric}_mean": values.mean(), f"{metric}_std": values.std(ddof=1),
                     "runs": len(g), "evaluated": len(values), "diverged": len(diverged),
                     "first_diverged_step": diverged["diverged_step"].min(), "iteration": step,
                     "stand_in": ",".join(sorted({s for s in g["stand_in"] if s}))})
    table = pd.DataFrame(rows)
    table["_off"] = ((table["mng"] == "off").astype(int) + (~table["repa"]).astype(int)
                     + (~table["width_aware_lr"]).astype(int))
    order = {m: i for i, m in enumerate(runs["model"].unique())}  # load_runs sorts by size, patch
    table = table.sort_values(["model", "_off", "mng"], key=lambda c: c.map(order) if c.name == "model" else c)
    table = table.drop(columns="_off").reset_index(drop=True)
    if out_dir is not None:
        csv, tex = Path(out_dir) / "ablation.csv", Path(out_dir) / "ablation.tex"
        atomic_write_text(csv, table.to_csv(index=False))
        atomic_write_text(tex, ablation_latex(table, metric, runs))
        table.attrs["files"] = [csv, tex]
    return table


def ablation_latex(table: pd.DataFrame, metric: str, runs=None) -> str:
    """booktabs tabular (needs \\usepackage{booktabs,amssymb}); the best FID per model in bold."""
    mean, std = table[f"{metric}_mean"], table[f"{metric}_std"]
    best = mean.groupby(table["model"]).transform("min")
    lines = [r"% generated by `gatscale figures` from MLflow; needs \usepackage{booktabs,amssymb}",
             r"\begin{tabular}{lcccc r}", r"\toprule",
             rf"Model & MNG & REPA & Width-aware LR & $\eta_G$ & {style.fid_short_label(metric, runs)} $\downarrow$ \\",
             r"\midrule"]
    yes = lambda v: r"$\checkmark$" if v else "--"
    for i, row in table.iterrows():
        if np.isnan(mean[i]):
            at = row["first_diverged_step"]
            cell = ("diverged" + (f" (it. {at:,.0f})" if np.isfinite(at) else "")) if row["diverged"] else "--"
        else:
            cell = f"{mean[i]:.2f}" + (rf" $\pm$ {std[i]:.2f}" if row["evaluated"] > 1 else "")
            cell = rf"\textbf{{{cell}}}" if mean[i] == best[i] else cell
        mng = "--" if row["mng"] == "off" else row["mng"]
        lr = f"{row['lr_g']:.1e}".replace("e-0", "e-")
        lines.append(f"{row['model']} & {mng} & {yes(row['repa'])} & {yes(row['width_aware_lr'])} & {lr} & {cell} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}",
              f"% {style.fid_label(metric, runs)} at iteration {int(table['iteration'].iloc[0]):,}; "
              "mean $\\pm$ std over seeds; bold: best per model"]
    stand_in = sorted({p for s in table["stand_in"] for p in s.split(",") if p})
    if stand_in:
        lines.append(f"% STAND-IN: random weights for {', '.join(stand_in)}; not comparable to the paper")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Samples: the final grid of each model size side by side

def samples_sheet_data(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model (full method, first seed, in size order): the run and its run folder's samples/final.png."""
    sel = main_method(runs)
    found = []
    for model, group in sel.groupby("model", sort=False):
        for _, run in group.sort_values("seed", na_position="last").iterrows():
            folder = run.get("gatscale.run_dir")
            path = Path(folder) / "samples" / "final.png" if isinstance(folder, str) else None
            if path is not None and path.is_file():
                found.append((run["run_id"], run["name"], model, run["stand_in"], str(path)))
                break
    if not found:
        raise MissingData("samples: no run folder with samples/final.png (tag gatscale.run_dir); train to the end "
                          "on this machine, or run `gatscale figures` where the run folders are")
    return pd.DataFrame(found, columns=["run_id", "name", "model", "stand_in", "path"])


def plot_samples_sheet(data: pd.DataFrame, out_dir=None):
    """One panel per row of samples_sheet_data: the model's final sample grid."""
    from PIL import Image

    fig, axes = style.new_figure(2.2 * len(data), 2.6, 1, len(data))
    for ax, run in zip(axes[0], data.itertuples()):
        ax.imshow(np.asarray(Image.open(run.path).convert("RGB")), interpolation="nearest")
        ax.set_title(run.model, fontsize=8)
        ax.axis("off")
    fig.suptitle("Final samples (EMA generator), one row per class")
    return _finish(fig, data, out_dir, "samples", data=data)


def samples_sheet(runs: pd.DataFrame, out_dir=None):
    """The final sample grid of each model size side by side: plot_samples_sheet(samples_sheet_data(runs))."""
    return plot_samples_sheet(samples_sheet_data(runs), out_dir)


# LR probe: the largest stable LR per width (gatscale probe-lr)

def lr_probe_data(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model, from its fixed-LR runs: (lo, hi) = largest stable LR below the smallest unstable one, as
    `gatscale probe-lr` decides (an LR is unstable once one seed diverged, stable when all finished)."""
    fixed = runs[~runs["width_aware_lr"].astype(bool) & runs["status"].isin(["finished", "diverged"])]
    rows = []
    for model, g in fixed.groupby("model", sort=False):
        verdicts = {float(lr): bool((s != "diverged").all()) for lr, s in g.groupby(g["lr_g"].round(12))["status"]}
        if len(verdicts) < 2:
            continue
        lo, hi = bracket(verdicts)
        rows.append({"model": model, "size": g["size"].iloc[0], "width": float(g["width"].iloc[0]), "lo": lo, "hi": hi,
                     "lr_max": np.sqrt(lo * hi) if lo and hi else np.nan, "trials": len(verdicts)})
    return pd.DataFrame(rows, columns=["model", "size", "width", "lo", "hi", "lr_max", "trials"])


def plot_lr_probe(table: pd.DataFrame, out_dir=None, runs: pd.DataFrame | None = None):
    """Largest stable LR against width (log-log) from lr_probe_data's table: brackets as error bars, the fit with
    its 95 % band and the paper's slope -1 (Eq. 4) through the points' mean for reference; an unbracketed width as
    an arrow. `runs`: for the stand-in footnote."""
    done = table[np.isfinite(table["lr_max"].astype(float))]
    known = table[table["lo"].notna() | table["hi"].notna()]
    if done["width"].nunique() < 2 and known["width"].nunique() < 3:
        raise MissingData("lr_probe: needs runs at fixed LRs (optim.width_aware_lr off) that bracket the largest "
                          "stable LR (one finished, one diverged above it) at two or more widths: run "
                          f"`gatscale probe-lr SPEC`; found {len(done)} bracketed width(s)")
    fit = fit_lr_law(known["width"], known["lo"], known["hi"])
    fig, axes = style.new_figure(7.0, 3.6)
    ax = axes[0, 0]
    for r in done.itertuples():
        ax.errorbar([r.width], [r.lr_max], yerr=[[r.lr_max - r.lo], [r.hi - r.lr_max]], fmt="o", capsize=3,
                    color=style.size_color(r.size), label=f"{r.model} ({r.trials} LRs)")
    # censored: stable up to / unstable down to
    for r in table[~np.isfinite(table["lr_max"].astype(float))].itertuples():
        at, mark = (r.lo, "^") if r.lo else (r.hi, "v")
        ax.plot([r.width], [at], marker=mark, linestyle="none", color=style.size_color(r.size),
                label=f"{r.model}: {'stable up to' if r.lo else 'unstable down to'} {at:.3g}")
    cs = np.geomspace(table["width"].min() / 1.15, table["width"].max() * 1.15, 100)
    ci = (f"\n95% CI {fit.b_lo:.2f} .. {fit.b_hi:.2f}, P(b < 0) = {fit.p_negative:.2f}" if np.isfinite(fit.b_lo)
          else " (no interval: 2 widths)")
    ax.plot(cs, fit(cs), color="black", linewidth=1, label=f"fit to the brackets: lr_max ∝ C^b, b = {fit.b:.2f}{ci}")
    # the y-axis follows the data (brackets and the fit), never the band, which is clipped to it
    seen = np.concatenate([known["lo"].dropna().to_numpy(float), known["hi"].dropna().to_numpy(float), fit(cs)])
    ylo, yhi = seen.min() / 2, seen.max() * 2
    if fit.n >= 3 and np.isfinite(fit.b_lo):
        lo, hi = fit.band(cs)
        ax.fill_between(cs, np.clip(lo, ylo, yhi), np.clip(hi, ylo, yhi), color="grey", alpha=0.2, linewidth=0,
                        label="95% band (lines with b in the CI; clipped)")
    anchor_c = np.exp(np.log(known["width"].astype(float)).mean())
    anchor_lr = float(fit(anchor_c))
    ax.plot(cs, anchor_lr * anchor_c / cs, color="grey", linestyle="--", linewidth=1,
            label="paper Eq. 4: lr ∝ 1/C (b = -1)")
    ax.set_ylim(ylo, yhi)
    style.log_axis(ax, "x")
    style.log_axis(ax, "y")
    ax.set_xlabel("width C (hidden size)")
    ax.set_ylabel("largest stable LR (G and D)")
    ax.set_title("Largest stable LR per width (gatscale probe-lr)")
    style.legend_outside(fig, ax, "bars: stable .. unstable LR")
    fig.lr_law, fig.table = fit, table
    return _finish(fig, runs[runs["model"].isin(table["model"])] if runs is not None else None, out_dir, "lr_probe",
                   data=table)


def lr_probe(runs: pd.DataFrame, out_dir=None):
    """The largest stable LR per width: plot_lr_probe(lr_probe_data(runs))."""
    return plot_lr_probe(lr_probe_data(runs), out_dir, runs)


# ---------------------------------------------------------------------------------------------
# The study's findings (gatscale/sweep/findings.py): a forest plot of the comparisons' effects

VERDICT_COLORS = {"A better": "#1a7f37", "B better": "#1a7f37", "no difference": "#0969da", "unresolved": "#9a6700"}


def findings_data(findings) -> pd.DataFrame:
    """One row per comparison finding (pairs and declared; trends and laws are exponents, not ratios): its effect
    as the % change of A against B with the interval, and the verdict."""
    rows = [{"finding": f.name, "a": f.a, "b": f.b, "metric": f.metric, "effect": f.effect, "lo": f.lo, "hi": f.hi,
             "change": np.expm1(f.effect), "change_lo": np.expm1(f.lo), "change_hi": np.expm1(f.hi),
             "n_a": f.n_a, "n_b": f.n_b, "level": f.level, "delta": f.delta, "verdict": f.verdict,
             "verdict_text": f.verdict_text()}
            for f in findings if f.kind in ("pair", "declared") and np.isfinite(f.effect)]
    if not rows:
        raise MissingData("findings: no comparison has a finished run on both sides; run `gatscale sweep SPEC`")
    return pd.DataFrame(rows)


def plot_findings(data: pd.DataFrame, out_dir=None):
    """Forest plot: each comparison's log-ratio A/B with its interval, the ±δ band, coloured by verdict."""
    fig, axes = style.new_figure(7.5, 1.0 + 0.5 * len(data))
    ax = axes[0, 0]
    y = np.arange(len(data))[::-1]
    for yi, row in zip(y, data.itertuples()):
        color = VERDICT_COLORS.get(row.verdict, "#555")
        lo, hi = (row.lo, row.hi) if np.isfinite(row.lo) else (row.effect, row.effect)
        ax.plot([lo, hi], [yi, yi], color=color, lw=2)
        ax.plot([row.effect], [yi], "o", color=color)
        text = row.verdict_text.replace(" would resolve it", "")   # "unresolved: about N more seeds per side"
        ax.annotate(text, (max(hi, row.effect), yi), xytext=(5, 0), textcoords="offset points", va="center",
                    fontsize=7, color=color, annotation_clip=False)
    delta = float(data["delta"].max())
    ends = data[["effect", "lo", "hi"]].to_numpy(float)
    ends = ends[np.isfinite(ends)]
    ax.set_xlim(max(-3.0, ends.min() - 0.2), min(3.0, ends.max() + 0.2) + 1.5)  # room for the verdicts; wider: clipped
    ax.axvspan(-delta, delta, color="#0969da", alpha=0.08, lw=0)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, [f"{r.finding}\n({r.n_a}/{r.n_b} seeds)" for r in data.itertuples()], fontsize=7)
    ax.set_xlabel(f"log({data['metric'].iloc[0]} of A / B): < 0, A lower  (interval at {data['level'].min():.4g}; "
                  f"band: ±δ)")
    ax.set_title("findings: effect of A against B", fontsize=9)
    return _finish(fig, None, out_dir, "findings", footnote=False, data=data)
