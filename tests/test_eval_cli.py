"""`gatscale eval` and `gatscale analyze` on a run folder with a tiny random checkpoint."""
import csv
import json

import numpy as np
import torch

from eval_fixtures import run_with_checkpoint
from gatscale.cli import main


def test_eval_writes_metrics_json_and_adm_npz(tmp_path, eval_cache):
    run_dir, _, _ = run_with_checkpoint(tmp_path / "run", step=100)
    rc = main(["eval", str(run_dir), "--num-samples", "40", "--batch-size", "16", "--device", "cpu",
               "--npz-out", str(tmp_path / "samples.npz")])
    assert rc == 0
    record = json.loads((run_dir / "eval" / "metrics-0000100.json").read_text())
    assert set(record["metrics"]) == {"fd_digits", "acc_digits", "is_digits", "is_std_digits", "precision_digits",
                                      "recall_digits"}
    assert record["step"] == 100 and record["num_samples"] == 40 and record["feature_extractor"] == "digits"
    samples = np.load(tmp_path / "samples.npz")
    assert samples["arr_0"].shape == (40, 16, 16, 3) and np.bincount(samples["arr_1"]).tolist() == [4] * 10


class RecordingTracker:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))


def test_eval_logs_to_the_runs_tracker_with_a_protocol_suffix_and_keeps_its_status(tmp_path, eval_cache, monkeypatch):
    import gatscale.tracking

    run_dir, _, _ = run_with_checkpoint(tmp_path / "run", step=100)
    (run_dir / "tracking.json").write_text(json.dumps({"run_id": "abc"}))
    (run_dir / "status.json").write_text(json.dumps({"status": "finished"}))
    tracker = RecordingTracker()
    monkeypatch.setattr(gatscale.tracking, "build_tracker", lambda cfg: tracker)
    assert main(["eval", str(run_dir), "--num-samples", "40", "--metrics", "fid", "--truncation-psi", "0.5",
                 "--device", "cpu"]) == 0
    (logged,) = [c for c in tracker.calls if c[0] == "log_metrics"]
    assert set(logged[1]) == {"fd_digits_40_psi0.5", "acc_digits_40_psi0.5"} and logged[2] == 100  # not the FID-k curve of training
    assert tracker.calls[-1] == ("finish", "finished")
    assert (run_dir / "eval" / "metrics-0000100-psi0.5.json").exists()

    monkeypatch.setattr(gatscale.tracking, "build_tracker", lambda cfg: 1 / 0)   # a broken tracker is only a warning
    assert main(["eval", str(run_dir), "--num-samples", "200", "--metrics", "fid", "--device", "cpu"]) == 0
    assert (run_dir / "eval" / "metrics-0000100.json").exists()


def test_eval_without_inception_weights_fails_before_generating(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    run_dir, _, _ = run_with_checkpoint(tmp_path / "run", step=5)
    rc = main(["eval", str(run_dir), "--feature-extractor", "inception", "--num-samples", "10", "--device", "cpu",
               "--npz-out", str(tmp_path / "samples.npz")])
    assert rc == 2
    assert "weights-inception-2015-12-05-6726825d.pth" in capsys.readouterr().err
    assert not (run_dir / "eval").exists() and not (tmp_path / "samples.npz").exists()


def test_analyze_writes_lpips_contribution_csv_and_pca_png(tmp_path):
    run_dir, _, _ = run_with_checkpoint(tmp_path / "run", step=7)
    assert main(["analyze", "lpips-contribution", str(run_dir / "checkpoints" / "ckpt-0000007.pt"),
                 "--num-samples", "6", "--random-backbone", "--normalize", "--device", "cpu"]) == 0
    rows = list(csv.DictReader((run_dir / "eval" / "lpips_contribution.csv").open()))
    assert [r["block"] for r in rows] == ["0", "1", "2", "3"]
    assert {r["backbone"] for r in rows} == {"alex-random-stand-in"} and {r["num_samples"] for r in rows} == {"6"}
    assert max(float(r["normalized"]) for r in rows) == 1.0
    assert main(["analyze", "pca", str(run_dir), "--blocks", "0,1", "--num-samples", "3", "--device", "cpu"]) == 0
    from PIL import Image
    assert Image.open(run_dir / "eval" / "pca-0000007.png").size == (3 * 64, 3 * 64)


def test_analyze_lpips_contribution_on_digits_uses_the_trained_digits_network(tmp_path, eval_cache):
    run_dir, _, _ = run_with_checkpoint(tmp_path / "run", step=7)
    assert main(["analyze", "lpips-contribution", str(run_dir), "--num-samples", "4", "--device", "cpu"]) == 0
    rows = list(csv.DictReader((run_dir / "eval" / "lpips_contribution.csv").open()))
    assert {r["backbone"] for r in rows} == {"digits"} and len(rows) == 4
