"""One look for every figure: colours per model size, line styles per patch size, axis labels, saving.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot state), so they render headless
(Agg) in scripts, tests and notebooks alike.
"""
from __future__ import annotations

import io
import textwrap
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from gatscale.core.atomic import atomic_open

# Okabe-Ito colour-blind-safe colours; red is kept free for the divergence marker.
SIZE_COLORS = {"S": "#0072B2", "B": "#E69F00", "L": "#009E73", "XL": "#CC79A7"}
OTHER_COLOR = "#555555"
PATCH_LINESTYLES = {2: "-", 4: "--", 8: ":"}
PATCH_MARKERS = {2: "o", 4: "s", 8: "^"}
DIVERGED = dict(marker="x", color="red", markersize=9, markeredgewidth=2.2, linestyle="none", zorder=6)
FLOOR = dict(color="black", linestyle="--", linewidth=1.0, alpha=0.7, zorder=1)  # the real-data floor

matplotlib.rcParams.update({
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3,
    "grid.linewidth": 0.5, "lines.linewidth": 1.4, "axes.spines.top": False, "axes.spines.right": False,
    "savefig.dpi": 200, "pdf.fonttype": 42,  # TrueType in PDFs (editable text, accepted by publishers)
})


def size_color(size: str) -> str:
    return SIZE_COLORS.get(size, OTHER_COLOR)


def patch_linestyle(patch) -> str:
    return PATCH_LINESTYLES.get(patch, "-.")


def patch_marker(patch) -> str:
    return PATCH_MARKERS.get(patch, "D")


def new_figure(width: float = 6.5, height: float = 3.2, nrows: int = 1, ncols: int = 1):
    """A Figure (inches; 6.5 in = a two-column paper's text width) and its axes array, constrained layout."""
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def iteration_axis(ax, label: str = "training iteration"):
    """x axis in iterations, ticks as 10k, 20k, ..."""
    ax.set_xlabel(label)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True, steps=[1, 2, 2.5, 5, 10]))  # few, round ticks
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}"))


def log_axis(ax, axis: str = "y"):
    """Log scale with plain tick labels (20, 50, 100 rather than 2x10^1); 1-2-5 ticks when under ~2 decades."""
    getattr(ax, f"set_{axis}scale")("log")
    lo, hi = getattr(ax, f"get_{axis}lim")()
    decades = np.log10(hi / lo)
    subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if decades < 1.2 else (1.0, 2.0, 5.0) if decades < 2.5 else (1.0,)
    target = getattr(ax, f"{axis}axis")
    target.set_major_locator(LogLocator(base=10, subs=subs))
    target.set_major_formatter(FuncFormatter(_plain_or_power))
    target.set_minor_formatter(NullFormatter())


def _plain_or_power(v, _=None) -> str:
    """20, 0.5, 5000 plainly; 2e6 as 2x10^6."""
    if v <= 0 or 1e-3 <= v < 1e5:
        return f"{v:g}"
    e = int(np.floor(np.log10(v) + 1e-9))
    m = round(v / 10 ** e, 2)
    return rf"$10^{{{e}}}$" if m == 1 else rf"${m:g}\times10^{{{e}}}$"


def annotate_points(ax, xs, ys, labels, fontsize: float = 7):
    """Label scatter points, each on the first side (right/left, above/below) free of other labels and points, and
    always inside the axes: a label that would cross an edge is moved back in (never drawn over the legend or cut
    off at the figure's border)."""
    fig = ax.figure
    fig.draw_without_rendering()  # final layout, so display coordinates are the saved ones
    px, frame = fig.dpi / 72, ax.get_window_extent()
    points = ax.transData.transform(np.column_stack([xs, ys]))
    marks = [(x - 4 * px, y - 4 * px, x + 4 * px, y + 4 * px) for x, y in points]
    placed = list(marks)
    for i, ((x, y), label) in enumerate(zip(points, labels)):
        w, h = 0.62 * fontsize * len(label) * px, fontsize * px

        def inside(o):  # the offset (points) moved so the label's box lies within the axes
            dx = min(max(o[0] * px, frame.x0 + 2 * px - x), frame.x1 - 2 * px - w - x)
            dy = min(max(o[1] * px, frame.y0 + 2 * px - y), frame.y1 - 2 * px - h - y)
            return dx / px, dy / px

        def box(o):
            return (x + o[0] * px, y + o[1] * px, x + o[0] * px + w, y + o[1] * px + h)
        options = [inside(o) for o in ((5, 3), (5, -3 - fontsize), (-5 - w / px, 3), (-5 - w / px, -3 - fontsize))]
        free = [o for o in options if not any(_overlap(box(o), b) for j, b in enumerate(placed) if j != i)]
        dx, dy = (free or options)[0]
        placed.append(box((dx, dy)))
        ax.annotate(label, ax.transData.inverted().transform((x, y)), xytext=(dx, dy), textcoords="offset points",
                    fontsize=fontsize, ha="left", va="bottom")


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def legend_outside(fig: Figure, ax, title: str = "", **kw):
    """The legend right of the axes, so it never covers data."""
    handles, labels = ax.get_legend_handles_labels()
    return fig.legend(handles, labels, loc="outside right upper", title=title or None, title_fontsize=7.5,
                      frameon=False, **kw)


def method_label(mng: str, repa: bool, width_aware_lr: bool) -> str:
    """The switches of a run as the paper names them: 'MNG-exp, REPA, width-aware LR'."""
    return ", ".join([f"MNG-{mng}" if mng not in (None, "off") else "no MNG",
                      "REPA" if repa else "no REPA",
                      "width-aware LR" if width_aware_lr else "fixed LR"])


def fid_label(metric: str, runs=None) -> str:
    """Axis label of a Frechet-distance metric, never calling the digits distance FID.

    'fid' -> 'FID-5K' (sample count from param eval.fid_samples); 'fd_digits' -> 'FD-digits-5K (digits
    features, not FID)'; `gatscale eval` protocol names: 'fid_50k_psi0.3' -> 'FID-50K (psi = 0.3)'.
    """
    base = "fd_digits" if metric.startswith("fd_digits") else "fid"
    parts = [p for p in metric[len(base):].split("_") if p]
    samples = [p for p in parts if p[:-1].isdigit() and p.endswith("k")]
    if samples:
        k = f"-{samples[0][:-1]}K"
    else:
        n = runs["eval.fid_samples"].dropna().unique() if runs is not None and "eval.fid_samples" in runs else []
        ok = len(n) == 1 and isinstance(n[0], (int, float, np.integer, np.floating))
        k = "" if not ok else f"-{n[0] / 1000:g}K" if n[0] >= 1000 else f"-{int(n[0])}"
    notes = [f"ψ = {p[3:]}" for p in parts if p.startswith("psi")] + [p for p in parts if p not in samples
                                                                       and not p.startswith("psi")]
    if base == "fd_digits":
        notes.append("digits features, not FID")
    return f"{'FD-digits' if base == 'fd_digits' else 'FID'}{k}" + (f" ({', '.join(notes)})" if notes else "")


def fid_short_label(metric: str, runs=None) -> str:
    """`fid_label` without its notes in parentheses: 'FID-5K', 'FD-digits-5K' (for titles and table heads)."""
    return fid_label(metric, runs).split(" ")[0]


def add_footnote(fig: Figure, runs, extra=()) -> str | None:
    """Say on the figure when any plotted run used random stand-in weights (tag gatscale.stand_in, or `extra`
    parts such as an LPIPS backbone labelled '<net>-random-stand-in')."""
    tagged = runs["stand_in"].dropna() if runs is not None and "stand_in" in runs else []
    parts = sorted({p.strip() for s in tagged for p in str(s).split(",") if p.strip()} | set(extra))
    if not parts:
        return None
    text = (f"Stand-in: random weights for {', '.join(parts)}; "
            "values are not comparable to the paper's.")
    width, height = fig.get_size_inches()
    text = textwrap.fill(text, width=int(width * 17))  # ~17 characters per inch at 7 pt
    strip = (0.12 + 0.13 * text.count("\n") + 0.05) / height  # inches of footnote -> figure fraction
    fig.get_layout_engine().set(rect=(0, strip, 1, 1 - strip))  # keep a strip free below the axes
    fig.text(0.01, 0.01, text, fontsize=7, color="#8B0000", ha="left", va="bottom")
    return text


def png_bytes(fig: Figure) -> bytes:
    """The figure as a PNG in memory (what `save` writes to stem.png), e.g. to embed in a page."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def save(fig: Figure, out_dir, stem: str) -> list[Path]:
    """Write `stem`.png and `stem`.pdf atomically; returns the paths."""
    paths = [Path(out_dir) / f"{stem}.{fmt}" for fmt in ("png", "pdf")]
    for path in paths:
        with atomic_open(path) as f:
            fig.savefig(f, format=path.suffix[1:])
    return paths
