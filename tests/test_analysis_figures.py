"""The figure functions on frames with planted values (no MLflow): what is drawn is what was planted."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from analysis import figures, style
from analysis.load import MissingData
from analysis_fixtures import (
    ABLATION_FACTOR,
    DIVERGED_AT,
    FID_A,
    FID_B,
    FID_STEPS,
    planted_fid,
    study_frames,
    train_gflops,
)


@pytest.fixture(scope="module")
def study():
    return study_frames()


def line_by_label(ax, label):
    return next(line for line in ax.get_lines() if line.get_label() == label)


def diverged_markers(ax):
    return [line for line in ax.get_lines() if line.get_marker() == "x" and line.get_color() == "red"]


def test_power_law_fit_recovers_planted_exponent():
    rng = np.random.default_rng(0)
    c = np.logspace(5, 8, 12)
    fid = 3.52e5 * c ** -0.456 * rng.lognormal(0, 0.03, c.size)
    fit = figures.fit_power_law(c, fid)
    assert fit.b == pytest.approx(-0.456, abs=0.02)
    assert fit.a == pytest.approx(3.52e5, rel=0.5)
    assert fit.r < -0.99
    lo, hi = fit.band(c)
    assert np.all(lo < fit(c)) and np.all(fit(c) < hi)


def test_fid_vs_compute_draws_the_planted_power_law(study, tmp_path):
    runs, histories, _ = study
    fig = figures.fid_vs_compute(runs, histories, compute="train", out_dir=tmp_path)
    ax = fig.axes[0]
    fit_line = next(line for line in ax.get_lines() if line.get_label().startswith("fit: "))
    x, y = fit_line.get_data()
    slope = np.polyfit(np.log10(x), np.log10(y), 1)[0]
    assert slope == pytest.approx(FID_B, abs=1e-6)
    assert fig.power_law.a == pytest.approx(FID_A, rel=1e-6)
    # one point per full-method run at the ladder's patch size (the /4 runs are the patch contrast, not the law's),
    # at the matched iteration, at its training GFLOPs
    full = runs[(runs["mng"] == "exp") & runs["repa"] & runs["width_aware_lr"] & (runs["patch"] == 2)]
    assert (runs["patch"] == 4).any()
    points = {line.get_label(): line.get_data() for line in ax.get_lines() if line.get_label().startswith("GAT-")}
    assert set(points) == set(full["model"])
    for model, (px, py) in points.items():
        assert px[0] == pytest.approx(train_gflops(model, max(FID_STEPS)))
        assert py[0] == pytest.approx(planted_fid(model, ("exp", True, True), max(FID_STEPS)))
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "training compute" in ax.get_xlabel() and "GFLOPs" in ax.get_xlabel()
    assert f"{FID_B:.3f}" in fit_line.get_label() and "Pearson r (log F, log FID) = -1.000" in fit_line.get_label()
    assert all((tmp_path / f"fid_vs_train_compute.{ext}").stat().st_size > 1000 for ext in ("png", "pdf"))
    table = pd.read_csv(tmp_path / "fid_vs_train_compute.csv")  # the figure's data, beside it
    assert sorted(table["model"]) == sorted(full["model"]) and (table["at_step"] == max(FID_STEPS)).all()
    assert sorted(table["c"]) == pytest.approx(sorted(train_gflops(m, max(FID_STEPS)) for m in full["model"]))
    assert not [c for c in table.columns if "." in c]  # each run's identity and the figure's numbers, not every param


def test_every_figure_is_its_data_frame_then_a_plot_of_it(study):
    runs, histories, _ = study
    data = figures.fid_curves_data(runs, histories, by="size")
    assert set(data["run_id"]) == set(figures.main_method(runs).query("patch == 2")["run_id"])
    assert set(data["step"]) == set(FID_STEPS) and data.attrs["metric"] == "fid"
    drawn = figures.plot_fid_curves(data.assign(value=data["value"] * 2)).axes[0]  # the plot shows the frame it gets
    line = next(ln for ln in drawn.get_lines() if ln.get_label().startswith("GAT-S/2"))
    s2 = data[data["model"] == "GAT-S/2"].sort_values("step")
    assert list(line.get_ydata()) == pytest.approx(list(2 * s2["value"]))


def test_fid_vs_inference_gflops_uses_the_param(study):
    runs, histories, _ = study
    ax = figures.fid_vs_compute(runs, histories, compute="inference").axes[0]
    assert line_by_label(ax, "GAT-L/2").get_xdata()[0] == pytest.approx(80.7)
    assert "inference" in ax.get_xlabel() and "per image" in ax.get_xlabel()


def test_lr_crosscheck_marks_divergence_at_its_step(study):
    runs, histories, _ = study
    fig = figures.lr_crosscheck(runs, histories)
    loss_d, grad_d = fig.axes[0], fig.axes[2]
    for ax, metric in ((loss_d, "loss/d"), (grad_d, "grad_norm/d")):
        (marker,) = diverged_markers(ax)
        h = histories[(histories["name"] == "B2-lrS") & (histories["metric"] == metric)].dropna(subset=["value"])
        assert marker.get_xdata()[0] == DIVERGED_AT
        assert marker.get_ydata()[0] == pytest.approx(h.sort_values("step")["value"].iloc[-1])
    labels = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert labels == [r"GAT-S/2, $\eta_G$ = 4.0e-04 (width-aware LR)", r"GAT-B/2, $\eta_G$ = 2.0e-04 (width-aware LR)",
                      r"GAT-B/2, $\eta_G$ = 4.0e-04 (GAT-S/2's LR)",
                      r"diverged: non-finite loss/d, grad_norm/d (GAT-B/2, $\eta_G$ = 4.0e-04)"]
    assert grad_d.get_yscale() == "log"


def test_lr_crosscheck_legend_says_why_each_run_stopped(study):
    runs, histories, _ = study
    runs = runs.copy()
    runs.loc[runs["name"] == "B2-lrS", "divergence_reason"] = "unstable: G loss 46.5 > 10 at step 350"
    legend = [t.get_text() for t in figures.lr_crosscheck(runs, histories).axes[-1].get_legend().get_texts()]
    assert legend[-1] == r"stopped: G loss > 10 (GAT-B/2, $\eta_G$ = 4.0e-04)" and "non-finite" not in " ".join(legend)


@pytest.mark.parametrize("reason, label", [
    ("non-finite loss/g at step 12", "diverged: non-finite loss/g"),
    ("unstable: G loss 25.3 > 20; logit gap |real - fake| 31 > 30 on 2 ticks in a row at step 35",
     "stopped: G loss > 20; logit gap |real - fake| > 30 on 2 ticks in a row"),
    ("unstable: fd_digits 40.1 > 1.5 x its first value 20.3 at step 300", "stopped: fd_digits > 1.5 x its first value"),
    ("", "diverged")])
def test_stop_label_keeps_the_rule_not_the_values(reason, label):
    from types import SimpleNamespace
    assert figures.stop_label(SimpleNamespace(status="diverged", divergence_reason=reason)) == label


def test_lr_crosscheck_needs_two_widths(study):
    runs, histories, _ = study
    with pytest.raises(MissingData, match="lr_crosscheck: needs runs of two widths"):
        figures.lr_crosscheck(runs[runs["model"] == "GAT-B/2"], histories)


def test_lpips_contribution_plots_each_table_against_block(study):
    runs, _, lpips = study
    ax = figures.lpips_contribution(lpips, runs).axes[0]
    for label, run in (("GAT-B/2, MNG-exp", "B2-full"), ("GAT-B/2, no MNG", "B2-nomng")):
        x, y = line_by_label(ax, label).get_data()
        table = lpips[lpips["run_id"] == run]
        np.testing.assert_array_equal(x, table["block"])
        np.testing.assert_allclose(y, table["contribution"])
    assert "block index" in ax.get_xlabel() and "alex" in ax.get_ylabel()
    with pytest.raises(MissingData, match="no LPIPS tables: run gatscale analyze lpips-contribution"):
        figures.lpips_contribution(lpips.iloc[:0], runs)


def test_fid_curves_per_size_use_size_colours_and_log_scale(study):
    runs, histories, _ = study
    ax = figures.fid_curves(runs, histories, by="size").axes[0]
    assert ax.get_yscale() == "log"
    curves = {line.get_label(): line for line in ax.get_lines()}
    assert set(curves) == {"GAT-S/2", "GAT-B/2", "GAT-L/2"}  # full method, patch 2 only
    for model, line in curves.items():
        assert to_hex(line.get_color()) == to_hex(style.SIZE_COLORS[model[4]])
        np.testing.assert_array_equal(line.get_xdata(), FID_STEPS)
        np.testing.assert_allclose(line.get_ydata(), [planted_fid(model, ("exp", True, True), s) for s in FID_STEPS])
    by_epoch = figures.fid_curves(runs, histories, by="size", x="epoch").axes[0]
    assert by_epoch.get_xlabel() == "epoch"
    assert by_epoch.get_lines()[0].get_xdata()[-1] == pytest.approx(1000 * 64 / 1797)


def test_fid_curves_mark_divergence_at_the_epoch_on_an_epoch_axis(study):
    runs, histories, _ = study
    runs = runs.copy()
    stop = 610  # past L2-full's last logged step (600), as in training: it stops before logging that step
    runs.loc[runs["name"] == "L2-full", ["status", "diverged_step"]] = ["diverged", float(stop)]
    histories = histories[(histories["run_id"] != "L2-full") | (histories["step"] <= 600)]
    height = planted_fid("GAT-L/2", ("exp", True, True), 500)
    for x, at in (("step", stop), ("epoch", stop * 64 / 1797)):
        (marker,) = diverged_markers(figures.fid_curves(runs, histories, by="size", x=x).axes[0])
        assert marker.get_xdata()[0] == pytest.approx(at)
        assert marker.get_ydata()[0] == pytest.approx(height)


def test_fid_curves_per_patch_use_patch_linestyles(study):
    runs, histories, _ = study
    ax = figures.fid_curves(runs, histories, by="patch").axes[0]
    styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    assert styles == {"GAT-S/2": "-", "GAT-B/2": "-", "GAT-S/4": "--", "GAT-B/4": "--"}
    with pytest.raises(MissingData, match="two or more patch sizes"):
        figures.fid_curves(runs[runs["patch"] == 2], histories, by="patch")


def test_digits_distance_is_never_labelled_fid(study):
    runs, histories, _ = study
    digits = histories.replace({"metric": {"fid": "fd_digits"}})
    label = figures.fid_curves(runs, digits).axes[0].get_ylabel()
    assert label == "FD-digits-5K (digits features, not FID)"


def test_an_eval_protocol_metric_can_be_chosen(study):
    runs, histories, _ = study
    fid50k = histories.replace({"metric": {"fid": "fid_50k_psi0.3"}})
    ax = figures.fid_curves(runs, fid50k, metric="fid_50k_psi0.3").axes[0]
    assert ax.get_ylabel() == "FID-50K (ψ = 0.3)"
    with pytest.raises(MissingData, match="no metric 'fid_50k' logged; .* logged: fid_50k_psi0.3"):
        figures.fid_vs_compute(runs, fid50k, metric="fid_50k")


def test_stand_in_runs_get_a_footnote(study):
    runs, histories, _ = study
    texts = [t.get_text() for t in figures.fid_curves(runs, histories).texts]
    assert any("Stand-in" in t and "encoder, inception" in t for t in texts)
    clean = runs.assign(stand_in="")
    assert not figures.fid_curves(clean, histories).texts


def test_ablation_table_reports_fid_at_the_matched_iteration(study, tmp_path):
    runs, histories, _ = study
    table = figures.ablation_table(runs, histories, out_dir=tmp_path)
    assert set(table["model"]) == {"GAT-B/2"}  # the only model trained with several switch settings
    assert list(table.iloc[0][["mng", "repa", "width_aware_lr"]]) == ["exp", True, True]  # full method first
    assert (table["iteration"] == max(FID_STEPS)).all()
    for row in table.itertuples():
        switches = (row.mng, row.repa, row.width_aware_lr)
        if row.diverged:  # B2-lrS stopped before the matched iteration
            assert np.isnan(row.fid_mean) and row.evaluated == 0
        else:
            assert row.fid_mean == pytest.approx(planted_fid("GAT-B/2", switches, max(FID_STEPS)))
    assert len(table) == len(ABLATION_FACTOR)
    csv = pd.read_csv(tmp_path / "ablation.csv")
    np.testing.assert_allclose(csv["fid_mean"], table["fid_mean"])
    tex = (tmp_path / "ablation.tex").read_text()
    best = planted_fid("GAT-B/2", ("exp", True, True), max(FID_STEPS))
    assert r"\toprule" in tex and rf"\textbf{{{best:.2f}}}" in tex and "diverged" in tex and "STAND-IN" in tex


def test_ablation_needs_runs_that_differ_in_a_switch(study):
    runs, histories, _ = study
    with pytest.raises(MissingData, match="ablation: needs runs of one model that differ"):
        figures.ablation_table(figures.main_method(runs), histories)


def with_floor(histories, runs, metric="fid", value=5.0):
    rows = pd.DataFrame({"run_id": runs["run_id"], "name": runs["name"], "metric": f"{metric}_floor", "step": 0,
                         "epoch": 0.0, "value": value})
    return pd.concat([histories, rows], ignore_index=True)


def test_fd_figures_draw_the_real_data_floor_as_a_dashed_line(study):
    runs, histories, _ = study
    histories = with_floor(histories, runs)
    for fig in (figures.fid_curves(runs, histories, by="size"), figures.fid_vs_compute(runs, histories)):
        floor = line_by_label(fig.axes[0], "real data (same number of samples)")
        assert floor.get_linestyle() == "--" and list(floor.get_ydata()) == [5.0, 5.0]
    drawn = figures.fid_curves(runs, study[1], by="size").axes[0].get_lines()
    assert "real data (same number of samples)" not in [ln.get_label() for ln in drawn]


def test_fid_vs_compute_averages_seeds_with_error_bars_and_prints_the_exponent_ci(study):
    runs, histories, _ = study
    again = runs.assign(run_id=runs["run_id"] + "-s1", name=runs["name"] + "-s1", seed=1)
    h = histories.assign(run_id=histories["run_id"] + "-s1")
    h.loc[h["metric"] == "fid", "value"] *= 1.1
    fig = figures.fid_vs_compute(pd.concat([runs, again]), pd.concat([histories, h]))
    ax = fig.axes[0]
    b2 = line_by_label(ax, "GAT-B/2 (2 seeds: mean, range)")
    planted = planted_fid("GAT-B/2", ("exp", True, True), max(FID_STEPS))
    assert b2.get_ydata()[0] == pytest.approx(planted * 1.1 ** 0.5)        # the geometric mean of the seeds
    assert fig.power_law.runs == 2 * fig.power_law.n                         # the fit uses every seed
    assert len(ax.containers) == 3  # one error bar per full-method model at patch 2 (S, B, L)
    lo, hi = fig.power_law.b_ci
    assert lo < FID_B < hi < 0 and fig.power_law.trend is None
    fit = next(ln.get_label() for ln in ax.get_lines() if ln.get_label().startswith("fit"))
    assert f"95% CI [{lo:.3f}, {hi:.3f}]" in fit
    assert "falls with compute" in fig.note


def test_fid_vs_compute_says_plainly_when_there_is_no_scaling_trend(study):
    runs, histories, _ = study
    h = histories.copy()
    worse = h["metric"] == "fid"
    h.loc[worse, "value"] = 1e4 / h.loc[worse, "value"]  # FID now grows with compute
    fig = figures.fid_vs_compute(runs, h)
    assert fig.power_law.b > 0 and fig.note.startswith("no scaling trend")
    assert "No scaling trend" in fig.axes[0].get_title()


def test_samples_sheet_puts_each_sizes_final_grid_side_by_side(study, tmp_path):
    from PIL import Image

    runs, _, _ = study
    runs = runs.copy()
    runs["gatscale.run_dir"] = [str(tmp_path / name) for name in runs["name"]]
    for name in ("S2-full", "B2-full"):
        (tmp_path / name / "samples").mkdir(parents=True)
        Image.new("RGB", (40, 30), "white").save(tmp_path / name / "samples" / "final.png")
    fig = figures.samples_sheet(runs, out_dir=tmp_path / "figures")
    assert [ax.get_title() for ax in fig.axes] == ["GAT-S/2", "GAT-B/2"]
    assert fig.axes[0].get_images()[0].get_array().shape == (30, 40, 3)
    assert (tmp_path / "figures" / "samples.png").is_file()
    with pytest.raises(MissingData, match="samples/final.png"):
        figures.samples_sheet(runs.drop(columns="gatscale.run_dir"))


def test_compute_is_f_on_the_scaling_figures_and_point_labels_stay_inside_the_axes(study):
    runs, histories, _ = study
    for compute in ("train", "inference"):
        fig = figures.fid_vs_compute(runs, histories, compute=compute)
        ax = fig.axes[0]
        fig.draw_without_rendering()
        assert " F " in ax.get_xlabel() and " C " not in ax.get_xlabel()
        assert not [line for line in ax.get_lines() if "C^" in line.get_label() or "log C" in line.get_label()]
        frame, names = ax.get_window_extent(), {m.removeprefix("GAT-") for m in runs["model"]}
        labels = [t for t in ax.texts if t.get_text() in names]
        assert len(labels) == fig.data["model"].nunique() == 3  # one per patch-2 size; L/2 at the right edge
        for text in labels:
            box = text.get_window_extent()
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, text


def test_point_labels_at_the_edges_are_moved_inside_the_axes():
    fig, axes = style.new_figure(4, 3)
    ax = axes[0, 0]
    ax.plot([0, 5, 10], [10, 5, 0], "o")
    ax.set_xlim(-0.1, 10.1)
    ax.set_ylim(-0.1, 10.1)
    style.annotate_points(ax, [0, 5, 10], [10, 5, 0], ["GAT-S/2 (d=4, C=16)", "B/2", "GAT-XL/2 (d=4, C=48)"])
    fig.draw_without_rendering()
    frame = ax.get_window_extent()
    for text in ax.texts:
        box = text.get_window_extent()
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, text


def test_a_study_that_turns_fid_off_skips_the_fd_figures_in_one_line(study):
    from analysis.cli import FD_FIGURES, figure_names

    runs, _, _ = study
    names, skipped = figure_names(runs.assign(**{"eval.fid_every": 0}))
    assert not set(names) & set(FD_FIGURES) and "lr_crosscheck" in names and "eval.fid_every 0" in skipped
    names, skipped = figure_names(runs.assign(**{"eval.fid_every": [0] + [100] * (len(runs) - 1)}))
    assert set(FD_FIGURES) <= set(names) and skipped is None
    assert figure_names(runs, probe=True) == (["lr_probe"], None)


def test_the_fit_label_writes_large_and_small_prefactors_as_powers_of_ten():
    assert figures._sci(523.4) == "523" and figures._sci(0.0123) == "0.0123"
    assert figures._sci(3060.0) == r"3.06\times10^{3}"          # not matplotlib's "3.06e+03"
    assert figures._sci(4.2e-4) == r"4.20\times10^{-4}"
