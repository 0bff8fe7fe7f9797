"""`gatscale report SPEC --out report.html [--probe PROBE_SPEC]`: a study on one self-contained HTML page, from the
tracker.

The page opens with the study's findings (gatscale/sweep/findings.py: each conclusion with its verdict, colour-coded,
its effect and interval, and a forest plot of the effects), then the run table (status, step, final quality metrics:
each Fréchet distance as `value ± se`, its bootstrap standard error; precision, recall, the per-class diversity),
the ablation table, the law and its prediction, the study's figures (drawn here from the tracker, as `gatscale
figures` draws them for this spec: never whatever PNGs a folder holds), the LR probe's figure, table and law when
`--probe` names it, each run's latest sample grid (its `samples/` artifact), the stand-in labels, the spec's text
and the git commits. Images are embedded as base64 data URIs: the file can be mailed or archived on its own.
"""
from __future__ import annotations

import base64
import html
import re
import tempfile
import time
from pathlib import Path

import pandas as pd

from gatscale.core.atomic import atomic_write_text
from gatscale.core.errors import InputError
from gatscale.sweep.progress import format_table
from .load import DEFAULT_CACHE_DIR, MissingData, _client, load_experiment, no_progress_bar
from .style import png_bytes

QUALITY_PREFIXES = ("fid", "fd_", "acc_", "is_", "precision", "recall", "diversity_")  # shown as final values
SUMMARY_METRICS = ("fid", "fd_digits", "fd_dinov2", "acc_digits", "precision", "recall", "precision_digits",
                   "recall_digits", "diversity_digits")
REAL_DATA = ("fid_floor", "fd_digits_floor", "acc_digits_real", "precision_digits_real", "recall_digits_real",
             "diversity_digits_real")
SE = re.compile(r"_se(?=_|$)")  # fd_digits_se -> fd_digits, fid_se_50k_psi0.3 -> fid_50k_psi0.3
RUN_COLUMNS = {"name": "run", "status": "status", "model": "model", "mng": "MNG", "repa": "REPA",
               "width_aware_lr": "width-aware LR", "lr_g": "lr G", "seed": "seed", "step": "step"}


def add_arguments(parser):
    parser.add_argument("spec", help="sweep spec YAML: its name is the experiment, its runs' tracking.uri the store")
    parser.add_argument("--out", default="report.html", help="the HTML file to write (default: report.html)")
    parser.add_argument("--probe", metavar="PROBE_SPEC", help="the study's LR probe (a spec with a probe: section): "
                                                              "its figure, table and law on the page")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the spec's)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR),
                        help="metric-history cache (default: %(default)s)")


def main(args) -> int:
    try:
        out, table = write_report(args.spec, args.out, args.tracking_uri,
                                  None if args.cache_dir in ("", "none") else args.cache_dir, args.probe)
    except MissingData as e:  # no such spec, store or experiment: bad input, reported by gatscale.cli
        raise InputError(str(e)) from None
    print(summary(table))
    if table.attrs.get("findings"):
        print(table.attrs["findings"])
    print(f"wrote the study report {Path(out).resolve()}")
    return 0


def summary(table: pd.DataFrame) -> str:
    """The run table in a few console lines: per run its status and final quality (FD or FID ± its standard error,
    acc_digits, precision, recall, diversity), then the real-data floor (what real images score with the same
    number of samples)."""
    columns = ["run", "status", "step", *(c for c in SUMMARY_METRICS if c in table)]
    lines = [format_table(columns, table[columns].fillna("").values.tolist())]
    floors = [f"{c} {next(v for v in table[c] if v)}" for c in REAL_DATA if c in table and any(table[c])]
    if floors:
        lines.append("real data (same number of samples against the reference): " + ", ".join(floors))
    return "\n".join(lines)


def write_report(spec_path, out, tracking_uri: str | None = None, cache_dir=DEFAULT_CACHE_DIR,
                 probe_path=None) -> tuple[Path, pd.DataFrame]:
    """Write the report; returns its path and the run table it shows."""
    from gatscale.tracking.labels import code_version
    from .cli import study_spec
    from .load import load_lpips

    spec = study_spec(spec_path)
    uri = tracking_uri or spec.tracking.uri
    runs, histories = load_experiment(spec.name, uri, cache_dir=cache_dir)
    table = run_table(runs, histories, [r.name for r in spec.runs])
    findings_html, findings_text, supports = _findings(spec)
    table.attrs["findings"] = findings_text
    commits = sorted({c for c in runs.get("gatscale.git_commit", pd.Series(dtype=str)).dropna() if c})
    stand_ins = sorted({s for v in runs["stand_in"] if v for s in str(v).split(",")})
    sections = [
        f"<h1>Study {_e(spec.name)}</h1>",
        f"<p>{_e(spec.description)}</p>" if spec.description else "",
        f"<p class='meta'>spec {_e(spec.path)} &middot; experiment {_e(spec.name)!s} at {_e(uri)} &middot; "
        f"written {time.strftime('%Y-%m-%d %H:%M:%S %Z')} &middot; report code {_e(_commit(code_version()))} "
        f"&middot; runs trained by {_e(', '.join(c[:12] for c in commits) or 'unknown')}</p>",
        _stand_in_note(stand_ins),
        "<h2 id='findings'>Findings</h2>", findings_html,
        "<h2>Runs</h2>", table.to_html(index=False, table_id="runs", na_rep="", border=0, escape=True),
        "<h2>Ablation</h2>", _ablation(runs, histories),
        "<h2 id='law'>Scaling law, backtest and prediction</h2>", _law(spec, runs, histories),
        "<h2 id='figures'>Figures</h2>", _figures(spec, runs, histories, load_lpips(runs, uri), supports),
        *(["<h2 id='probe'>LR probe</h2>", _probe(probe_path, tracking_uri)] if probe_path else []),
        "<h2>Latest samples</h2>", _samples(runs, uri),
        "<h2>Spec</h2>", f"<pre>{_e(Path(spec.path).read_text())}</pre>",
    ]
    page = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>gatscale study {_e(spec.name)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(s for s in sections if s) + "\n</body></html>\n")
    atomic_write_text(Path(out), page)
    return Path(out), table


def _law(spec, runs, histories) -> str:
    """The seed-aware FD-vs-compute law, its leave-largest-out backtest and what it predicts for the next size up
    (analysis/predict.py, as `gatscale predict SPEC --size ...` prints it), or why it cannot."""
    from gatscale.core.sizes import GAT_SIZES
    from . import figures
    from .predict import CannotPredict, answer, size_run
    trained = {r.config.model.generator.size for r in spec.runs}
    patch = 2 if any(s.endswith("/2") for s in trained) else int(sorted(trained)[0].split("/")[1])
    order = list(GAT_SIZES)
    letters = [s for s in order if f"GAT-{s}/{patch}" in trained]
    if not letters:
        return "<p>no size ladder in this study</p>"
    size = f"GAT-{order[min(order.index(letters[-1]) + 1, len(order) - 1)]}/{patch}"   # the next size up
    try:
        pts = figures.fid_vs_compute_data(runs, histories, "train")
        lines = answer(spec, size_run(spec, size), pts, size)
    except (MissingData, CannotPredict, ValueError) as e:
        return f"<p>no prediction: {_e(str(e))}</p>"
    return "<pre>" + _e("\n".join([f"gatscale predict {spec.path} --size {size}"] + lines)) + "</pre>"


# ---------------------------------------------------------------------------------------------
# The findings (issue 26): the table, the forest plot, and which figure supports which finding

VERDICT_CLASS = {"A better": "resolved", "B better": "resolved", "no difference": "equivalent",
                 "unresolved": "unresolved"}


def _findings(spec) -> tuple[str, str, dict]:
    """(HTML section, console text, {figure stem: [(finding index, name)]}) of the study's findings."""
    from gatscale.sweep.findings import format_findings, level_note
    from gatscale.sweep.findings_cli import study_findings
    from .figures import findings_data, plot_findings

    findings, design = study_findings(spec)
    note = level_note(findings, design)
    text = "findings:\n" + format_findings(findings, note)
    rows = "".join(
        f"<tr id='finding-{i}' class='{VERDICT_CLASS[f.verdict]}'><td>{_e(f.name)}</td><td>{_e(f.a)} vs {_e(f.b)}</td>"
        f"<td>{_e(f.effect_text())}</td><td>{f.n_a}/{f.n_b}</td>"
        f"<td>{'' if f.p_a_better != f.p_a_better else f'{f.p_a_better:.2f}'}</td>"
        f"<td class='verdict'>{_e(f.verdict_text())}</td></tr>" for i, f in enumerate(findings))
    table = (f"<table id='findings-table'><tr><th>finding</th><th>A vs B</th><th>effect: A vs B, % change [CI] "
             f"(trend/law: exponent)</th><th>seeds A/B</th><th>P(A better)</th><th>verdict</th></tr>{rows}</table>"
             f"<p class='meta'>{_e(note)}</p>")
    try:
        forest = _image(png_bytes(plot_findings(findings_data(findings))), "findings: forest plot of the effects")
    except MissingData as e:
        forest = f"<p class='missing'>{_e(e)}</p>"
    supports: dict = {}
    for i, f in enumerate(findings):
        if f.figure:
            supports.setdefault(f.figure, []).append((i, f.name))
    return table + forest, text, supports


def run_table(runs: pd.DataFrame, histories: pd.DataFrame, spec_runs: list[str]) -> pd.DataFrame:
    """One row per run of the study: the tracker's runs with their final quality metrics, then the spec's runs
    the tracker has not seen yet ('not started')."""
    table = runs.assign(step=runs.get("gatscale.last_step"))[list(RUN_COLUMNS)].rename(columns=RUN_COLUMNS)
    quality = histories[histories["metric"].str.startswith(QUALITY_PREFIXES)]
    if len(quality):
        final = quality.sort_values("step").groupby(["run_id", "metric"])["value"].last().unstack()
        table = pd.concat([table, with_se(final.reindex(runs["run_id"]).reset_index(drop=True))], axis=1)
    missing = [n for n in spec_runs if n not in set(runs["name"])]
    if missing:
        table = pd.concat([table, pd.DataFrame({"run": missing, "status": "not started"})], ignore_index=True)
    return table.map(_fmt)


def with_se(final: pd.DataFrame) -> pd.DataFrame:
    """Each metric with a standard error `<name>_se` (same protocol suffix) shown as one column '12.3 ± 0.41'."""
    final = final.copy()
    for se in [c for c in final if SE.search(c) and SE.sub("", c, count=1) in final]:
        base = SE.sub("", se, count=1)
        final[base] = [v if pd.isna(e) or pd.isna(v) else f"{v:.4g} ± {e:.2g}"
                       for v, e in zip(final[base], final.pop(se))]
    return final


def _fmt(v):
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return ""
    return f"{v:.4g}" if isinstance(v, float) else v


def _ablation(runs, histories) -> str:
    from .figures import ablation_table

    try:
        table = ablation_table(runs, histories)
    except MissingData as e:
        return f"<p class='missing'>{_e(e)}</p>"
    return table.map(_fmt).to_html(index=False, table_id="ablation", na_rep="", border=0)


def _figures(spec, runs, histories, lpips, supports: dict) -> str:
    """The study's figures, drawn from the tracker's runs as `gatscale figures --spec` draws them (analysis/cli.py
    figure_names; the ablation is the table above), each with what it found (its note) and a link to the
    findings it supports; then what could not be drawn, and why."""
    from .cli import figure_names, regenerate

    names, skipped = figure_names(runs, spec.probe is not None)
    made, missing = regenerate(runs, histories, lpips, only=[n for n in names if n != "ablation"])
    shown = [_image(png_bytes(fig), name + (f": {fig.note}" if getattr(fig, "note", None) else ""),
                    links=supports.get(name, [])) for name, fig in made.items()]
    shown += [f"<p class='missing'>{_e(name)}: {_e(reason)}</p>" for name, reason in missing.items()]
    return "\n".join(shown + ([f"<p class='missing'>{_e(skipped)}</p>"] if skipped else []))


def _probe(probe_path, tracking_uri: str | None = None) -> str:
    """The LR probe's figure, its table (per width: largest stable and smallest unstable LR, LR_max) and the law
    lr_max ∝ C^b with its interval, from the probe's trials in the tracker (analysis/figures.py lr_probe)."""
    from . import figures
    from .cli import study_spec
    from .load import load_runs

    try:
        probe = study_spec(probe_path)
        uri = tracking_uri or probe.tracking.uri
        fig = figures.lr_probe(load_runs(probe.name, uri))
    except MissingData as e:
        return f"<p class='missing'>{_e(e)}</p>"
    table = fig.table.rename(columns={"width": "C", "lo": "largest stable LR", "hi": "smallest unstable LR",
                                      "lr_max": "LR_max (geometric mean)", "trials": "LRs tried"}).drop(columns="size")
    return "\n".join([
        f"<p class='meta'>probe spec {_e(probe.path)} &middot; experiment {_e(probe.name)} at {_e(uri)}</p>",
        table.map(_fmt).to_html(index=False, table_id="probe", na_rep="", border=0),
        f"<p id='probe-law'>{_e(fig.lr_law.line())} (paper Eq. 4: b = -1)</p>",
        _image(png_bytes(fig), "lr_probe: largest stable LR per width")])


def _samples(runs: pd.DataFrame, uri: str) -> str:
    """Each run's newest `samples/step-*.png` artifact."""
    client, shown = _client(uri), []
    with tempfile.TemporaryDirectory() as tmp, no_progress_bar():
        for run in runs.itertuples():
            grids = sorted(f.path for f in client.list_artifacts(run.run_id, "samples") if f.path.endswith(".png"))
            if grids:
                local = client.download_artifacts(run.run_id, grids[-1], tmp)
                shown.append(_image(Path(local).read_bytes(), f"{run.name}: {Path(grids[-1]).stem}", "sample"))
    return "\n".join(shown) or "<p class='missing'>no run logged a sample grid (artifact samples/*.png)</p>"


def _image(data: bytes, caption: str, kind: str = "figure", links=()) -> str:
    src = "data:image/png;base64," + base64.b64encode(data).decode()
    shows = "".join(f"<br>supports <a href='#finding-{i}'>{_e(name)}</a>" for i, name in links)
    return (f"<figure class='{kind}'><img src='{src}' alt='{_e(caption)}'><figcaption>{_e(caption)}{shows}"
            f"</figcaption></figure>")


def _stand_in_note(stand_ins: list[str]) -> str:
    if not stand_ins:
        return ""
    return (f"<p class='stand-in'>Stand-ins: {_e(', '.join(stand_ins))}. These runs used random or small "
            f"substitutes for pretrained networks (e.g. DINOv2, Inception): their numbers are not comparable to "
            f"the paper's.</p>")


def _commit(version: dict) -> str:
    commit = version.get("gatscale.git_commit", "unknown")
    return commit[:12] + (" (with uncommitted changes)" if version.get("gatscale.git_dirty") == "true" else "")


def _e(text) -> str:
    return html.escape(str(text), quote=True)


STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 80em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: left; }
th { background: #f3f3f3; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure.figure img { max-width: 38em; }
figure.sample img { width: 12em; image-rendering: pixelated; }
figcaption { font-size: 0.8em; color: #555; }
.meta { color: #555; font-size: 0.85em; }
.stand-in { color: #b00; font-weight: bold; }
.missing { color: #777; font-style: italic; }
#findings-table tr.resolved td.verdict { background: #dafbe1; color: #1a7f37; font-weight: bold; }
#findings-table tr.equivalent td.verdict { background: #ddf4ff; color: #0969da; font-weight: bold; }
#findings-table tr.unresolved td.verdict { background: #fff8c5; color: #9a6700; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.8em; }
"""
