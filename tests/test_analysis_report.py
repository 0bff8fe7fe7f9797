"""`gatscale report`: one self-contained HTML page per study, checked as parsed HTML and as rendered by Chromium."""
import base64
import contextlib
import io
import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from PIL import Image

from analysis_fixtures import STUDY, write_study
from gatscale.cli import main as gatscale_main
from train_fixtures import tiny_run_dict

PROBE = [("GAT-S/2", 1e-3, "finished"), ("GAT-S/2", 2e-3, "diverged"), ("GAT-B/2", 5e-4, "finished"),
         ("GAT-B/2", 1e-3, "diverged"), ("GAT-L/2", 3.75e-4, "finished"), ("GAT-L/2", 7.5e-4, "diverged")]


def write_probe(uri: str, name: str):
    """A probe's trials in the tracker: at widths 384, 768, 1024 the largest stable LR halves as the width doubles
    (b = -1), each bracketed by a finished and a diverged trial."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.create_experiment(name)
    for size, lr, status in PROBE:
        run = client.create_run(exp, run_name=f"{size}-{lr:g}").info.run_id
        for key, value in {"model.generator.size": size, "model.discriminator.size": size, "optim.lr": lr,
                           "optim.width_aware_lr": False, "lr_g": lr, "lr_d": lr}.items():
            client.log_param(run, key, str(value))
        client.set_tag(run, "gatscale.status", status)
        client.set_terminated(run, "FAILED" if status == "diverged" else "FINISHED")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """`gatscale report` of the planted study (in ./mlflow.db) with one sample grid logged to B2-full, a spec of the
    same name whose one run the tracker has not seen, and its LR probe (--probe); two stray PNGs in figures/, as a
    notebook might leave them -> (report, printed, the stray PNGs' bytes)."""
    from mlflow import MlflowClient

    tmp_path = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = write_study(uri, "rep", tmp_path / "artifacts")
    write_probe(uri, "rep_probe")
    (tmp_path / "figures").mkdir()
    stray = []
    for name, shade in (("lr_probe", 128), ("samples", 77)):
        Image.fromarray(np.full((20, 30, 3), shade, np.uint8)).save(tmp_path / "figures" / f"{name}.png")
        stray.append((tmp_path / "figures" / f"{name}.png").read_bytes())
    grid = tmp_path / "grid" / "step-0001000.png"
    grid.parent.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(grid)
    MlflowClient(uri).log_artifact(ids["B2-full"], str(grid), "samples")
    spec = tmp_path / "rep.yaml"
    spec.write_text(yaml.safe_dump({"name": "rep", "description": "planted study",
                                    "base": tiny_run_dict(tracking={"backend": "mlflow", "uri": uri})}))
    probe = tmp_path / "rep_probe.yaml"
    probe.write_text(yaml.safe_dump({"name": "rep_probe", "probe": {"lr_start": 1e-3},
                                     "base": tiny_run_dict(tracking={"backend": "mlflow", "uri": uri})}))
    out = tmp_path / "report.html"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        argv = ["report", str(spec), "--out", str(out), "--probe", str(probe), "--cache-dir", "none"]
        assert gatscale_main(argv) == 0
    return out, printed.getvalue(), stray


FIGURES = ["lr_crosscheck", "lpips_contribution", "fid_vs_iteration_by_size", "fid_vs_iteration_by_patch",
           "fid_vs_train_compute", "fid_vs_inference_gflops", "samples"]


def captions(page: str) -> list[str]:
    return [re.split(r"[:<]", c)[0] for c in re.findall(r"<figcaption>(.*?)</figcaption>", page)]


def test_report_draws_the_studys_own_figures_and_lists_every_run(report):
    out, printed, stray = report
    assert str(out) in printed
    page = out.read_text()
    sources = re.findall(r"<img src='([^']*)'", page)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert captions(page) == FIGURES + ["lr_probe", "B2-full"]  # the probe's figure, then the one sample grid
    assert not [b for b in stray if base64.b64encode(b).decode() in page]  # figures/ is not read
    runs = re.search(r'<table[^>]*id="runs".*?</table>', page, re.S).group(0)
    rows = re.findall(r"<tr>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>", runs)
    assert {n for n, _ in rows} == {s[0] for s in STUDY} | {"S4-mng-repa-lrA-s0"}
    assert dict(rows)["B2-lrS"] == "diverged" and dict(rows)["S4-mng-repa-lrA-s0"] == "not started"
    assert "<th>fid</th>" in runs and 'id="ablation"' in page
    assert "Stand-ins: encoder, inception" in page and "planted study" in page and "description: planted" in page


def test_report_shows_the_lr_probes_table_and_law(report):
    page = report[0].read_text()
    table = re.search(r'<table[^>]*id="probe".*?</table>', page, re.S).group(0)
    rows = re.findall(r"<tr>\s*<td>(GAT-[^<]*)</td>\s*<td>(\d+)</td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>", table)
    assert rows == [("GAT-S/2", "384", "0.001", "0.002"), ("GAT-B/2", "768", "0.0005", "0.001"),
                    ("GAT-L/2", "1024", "0.000375", "0.00075")]
    law = re.search(r"<p id='probe-law'>(.*?)</p>", page).group(1)
    assert law.startswith("lr_max ∝ C^b: b = -1.00") and "3 widths" in law


def test_report_prints_a_summary_line_per_run_with_its_final_quality(report):
    _, printed, _ = report
    lines = printed.splitlines()
    assert lines[0].split() == ["run", "status", "step", "fid"]
    by_run = {line.split()[0]: line.split() for line in lines[1:] if line.split() and line.split()[0] in
              {s[0] for s in STUDY} | {"S4-mng-repa-lrA-s0"}}
    assert set(by_run) == {s[0] for s in STUDY} | {"S4-mng-repa-lrA-s0"}
    assert by_run["B2-lrS"][1] == "diverged" and by_run["S4-mng-repa-lrA-s0"][1:] == ["not", "started"]


CHECK_IMAGES = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  document.body.dataset.loaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length + '/' + imgs.length;
  document.body.dataset.runRows = document.querySelectorAll('#runs tbody tr').length;
});</script>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium_with_every_image_loaded(report, tmp_path):
    out, _, _ = report
    probe = tmp_path / "probe.html"
    probe.write_text(out.read_text().replace("</body>", CHECK_IMAGES + "</body>"))
    chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--virtual-time-budget=5000"]
    dom = subprocess.run([*chromium, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    n = len(re.findall("<img ", out.read_text()))
    assert f'data-loaded="{n}/{n}"' in dom and f'data-run-rows="{len(STUDY) + 1}"' in dom, dom[:500]
    shot = tmp_path / "report.png"
    subprocess.run([*chromium, f"--screenshot={shot}", "--window-size=1280,2400", out.as_uri()],
                   capture_output=True, timeout=120)
    assert Image.open(shot).size == (1280, 2400)
    print(f"screenshot of the report: {shot}")


def test_run_table_and_summary_show_fd_with_its_se_precision_recall_and_diversity():
    import pandas as pd

    from analysis.report import run_table, summary

    runs = pd.DataFrame({"run_id": ["a", "b"], "name": ["B2-s0", "B2-s1"], "status": "finished", "model": "GAT-B/2",
                         "mng": True, "repa": True, "width_aware_lr": True, "lr_g": 1e-3, "seed": [0, 1],
                         "gatscale.last_step": 500})
    logged = {"fd_digits": (40.0, 31.25), "fd_digits_se": (3.0, 2.5), "precision_digits": (0.9, 0.8),
              "recall_digits": (0.5, 0.4), "diversity_digits": (0.7, 0.6), "acc_digits": (0.95, 0.9),
              "fd_digits_floor": (9.0, 9.0), "fd_digits_floor_se": (4.0, 4.0), "diversity_digits_real": (0.98, 0.98)}
    histories = pd.DataFrame([(run, metric, step, value * (2 if step == 400 else 1))
                              for metric, values in logged.items() for run, value in zip("ab", values)
                              for step in (400, 500)], columns=["run_id", "metric", "step", "value"])
    table = run_table(runs, histories, ["B2-s0", "B2-s1"])
    assert table["fd_digits"].tolist() == ["40 ± 3", "31.25 ± 2.5"]  # the last evaluation's FD and its SE
    assert not any(c.endswith("_se") for c in table)
    lines = summary(table).splitlines()
    assert lines[0].split() == ["run", "status", "step", "fd_digits", "acc_digits", "precision_digits",
                                "recall_digits", "diversity_digits"]
    assert lines[2].split()[3:] == ["40", "±", "3", "0.95", "0.9", "0.5", "0.7"]  # (line 1: the rule)
    assert "fd_digits_floor 9 ± 4" in lines[-1] and "diversity_digits_real 0.98" in lines[-1]


def test_report_shows_the_law_its_backtest_and_a_prediction_or_why_not(report):
    out, _, _ = report
    section = re.search(r"<h2 id='law'>.*?</h2>\s*(<pre>.*?</pre>|<p>.*?</p>)", out.read_text(), re.S).group(1)
    assert ("gatscale predict" in section and "backtest" in section and "80 %" in section) \
        or section.startswith("<p>no prediction: ")
