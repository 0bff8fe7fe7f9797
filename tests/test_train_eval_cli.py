"""`gatscale eval` and `gatscale analyze` on a run folder with a tiny random checkpoint."""
import csv
import json

import numpy as np
import torch

from eval_fixtures import run_with_checkpoint
from gatscale.cli import main
from gatscale.tracking.metrics_log import MetricsLog


def test_eval_writes_metrics_json_and_adm_npz(tmp_path, eval_cache):
    run_dir, _, _ = run_with_checkpoint(tmp_path / "run", step=100)
    rc = main(["eval", str(run_dir), "--num-samples", "40", "--batch-size", "16", "--device", "cpu",
               "--npz-out", str(tmp_path / "samples.npz")])
    assert rc == 0
    record = json.loads((run_dir / "eval" / "metrics-0000100-psi0.3.json").read_text())  # official sampler's psi
    assert set(record["metrics"]) == {"fd_digits", "fd_digits_se", "acc_digits", "is_digits", "is_std_digits",
                                      "precision_digits", "recall_digits", "diversity_digits"}
    assert record["fd_se"]["resamples"] == 100 and record["fd_inf_fits"] is None
    assert record["step"] == 100 and record["num_samples"] == 40 and record["feature_extractor"] == "digits"
    assert record["truncation_psi"] == 0.3 and record["precision"] == "fp32"
    logged = [r for _, r in MetricsLog(run_dir).read() if r.get("step") == 100]  # no tracker run: the folder's record
    assert set(logged[-1]["metrics"]) == {f"{k}_40_psi0.3" for k in record["metrics"]}
    samples = np.load(tmp_path / "samples.npz")
    assert samples["arr_0"].shape == (40, 16, 16, 3) and np.bincount(samples["arr_1"]).tolist() == [4] * 10


def _finished_tracker_run(run_dir, uri):
    """A run folder whose tracker run ended (FINISHED) at known times, as the trainer leaves it."""
    from mlflow import MlflowClient

    from gatscale.tracking.store import ensure_store, experiment_id

    client = MlflowClient(ensure_store(uri))
    run = client.create_run(experiment_id(client, uri, "eval-tests"), run_name="r", start_time=1_000_000)
    client.set_terminated(run.info.run_id, "FINISHED", end_time=1_030_000)
    record = MetricsLog(run_dir)
    record.save_state({**record.load_state(), "run_id": run.info.run_id, "uri": uri, "experiment": "eval-tests"})
    (run_dir / "status.json").write_text(json.dumps({"status": "finished"}))
    return client, run.info.run_id


def _eval_logged(run_dir, uri, *args):
    """(metric names, tags) that one `gatscale eval` of run_dir adds to a finished tracker run, whose status
    and start/end times it must leave as they were."""
    client, run_id = _finished_tracker_run(run_dir, uri)
    assert main(["eval", str(run_dir), "--metrics", "fid", "--device", "cpu", *args]) == 0
    run = client.get_run(run_id)
    assert (run.info.status, run.info.start_time, run.info.end_time) == ("FINISHED", 1_000_000, 1_030_000)
    for name in run.data.metrics:
        assert [m.step for m in client.get_metric_history(run_id, name)] == [100]
    return set(run.data.metrics), run.data.tags, [f.path for f in client.list_artifacts(run_id, "eval")]


def test_eval_logs_to_the_runs_tracker_with_a_protocol_suffix_and_keeps_its_status_and_times(tmp_path, eval_cache):
    run_dir, _, _ = run_with_checkpoint(tmp_path / "run", step=100)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    names, _, artifacts = _eval_logged(run_dir, uri, "--num-samples", "40", "--truncation-psi", "0.5")
    assert names == {"fd_digits_40_psi0.5", "fd_digits_se_40_psi0.5", "acc_digits_40_psi0.5"}  # not the FID-k curve
    assert artifacts == ["eval/metrics-0000100-psi0.5.json"]

    (run_dir / "tracking.json").write_text(json.dumps({"run_id": "abc", "uri": "http://127.0.0.1:9"}))
    assert main(["eval", str(run_dir), "--num-samples", "200", "--metrics", "fid", "--device", "cpu"]) == 0
    assert (run_dir / "eval" / "metrics-0000100-psi0.3.json").exists()   # a store that is down is only a warning


def test_eval_psi_is_in_every_recorded_metric_name_and_tag(tmp_path, eval_cache):
    run_dir, _, _ = run_with_checkpoint(tmp_path / "run", step=100)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    names, tags, _ = _eval_logged(run_dir, uri, "--num-samples", "40")   # defaults: psi 0.3, fp32
    assert names == {"fd_digits_40_psi0.3", "fd_digits_se_40_psi0.3", "acc_digits_40_psi0.3"}
    assert json.loads(tags["gatscale.eval_40_psi0.3"])["truncation_psi"] == 0.3
    names, _, _ = _eval_logged(run_dir, uri, "--num-samples", "200", "--truncation-psi", "0")  # = fid_samples
    # exactly the in-training protocol: psi is the run's eval.truncation_psi
    assert names == {"fd_digits", "fd_digits_se", "acc_digits"}
    names, tags, _ = _eval_logged(run_dir, uri, "--num-samples", "200", "--truncation-psi", "0", "--precision", "bf16")
    assert names == {"fd_digits_200_psi0_bf16", "fd_digits_se_200_psi0_bf16", "acc_digits_200_psi0_bf16"}
    assert json.loads(tags["gatscale.eval_200_psi0_bf16"])["precision"] == "bf16"


def test_eval_fd_inf_logs_the_extrapolation_with_its_recipe_and_fit(tmp_path, eval_cache):
    run_dir, _, _ = run_with_checkpoint(tmp_path / "run", step=100)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    names, tags, _ = _eval_logged(run_dir, uri, "--num-samples", "300", "--fd-inf")
    assert names == {"fd_digits_300_psi0.3", "fd_digits_se_300_psi0.3", "fd_digits_inf_300_psi0.3",
                     "acc_digits_300_psi0.3"}
    recipe = json.loads(tags["gatscale.eval_300_psi0.3"])
    assert recipe["num_samples"] == 300 and recipe["fd_se"]["resamples"] == 100
    assert recipe["fd_inf"]["counts"][0] == 30 and recipe["fd_inf"]["counts"][-1] == 300
    record = json.loads((run_dir / "eval" / "metrics-0000100-psi0.3.json").read_text())
    assert record["fd_inf_fits"]["fd_digits_inf"]["counts"] == recipe["fd_inf"]["counts"]


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
