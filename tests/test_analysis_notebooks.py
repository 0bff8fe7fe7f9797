"""The analysis notebooks execute headless (nbclient, kernel python3) against a planted MLflow study."""
import pytest

from analysis_fixtures import assert_notebooks_execute, write_study


@pytest.mark.slow
def test_notebooks_execute_against_a_study(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    write_study(uri, "nb-study", tmp_path / "artifacts")
    executed = assert_notebooks_execute("nb-study", uri, tmp_path)
    assert set(executed) == {"ablation.ipynb", "fid_scaling.ipynb", "lpips_contribution.ipynb", "lr_crosscheck.ipynb"}
    printed = "".join(out.get("text", "") for nb in executed.values() for cell in nb.cells
                      for out in cell.get("outputs", []))
    assert "missing:" not in printed  # every figure had its data: no MissingData message
    images = sum("image/png" in out.get("data", {}) for nb in executed.values() for cell in nb.cells
                 for out in cell.get("outputs", []))
    assert images == 7  # crosscheck, lpips, size (iteration, epoch), patch, train and inference compute
    assert sorted(p.name for p in (tmp_path / "figures").glob("*.png")) == sorted(
        f"{s}.png" for s in ("lr_crosscheck", "lpips_contribution", "fid_vs_iteration_by_size", "fid_vs_epoch_by_size",
                             "fid_vs_iteration_by_patch", "fid_vs_train_compute", "fid_vs_inference_gflops"))
