"""The analysis notebooks execute headless from their own folder, with no environment variables, against a planted
MLflow study that the default spec names (relative store path, taken from the repository root)."""
import pytest
import yaml

from analysis_fixtures import assert_notebooks_execute, write_study
from train_fixtures import tiny_run_dict


def plant_repository(root, experiment="nb-study"):
    """root as the repository after `make demo`: sweeps/demo.yaml naming the study and ./mlflow.db holding it."""
    (root / "sweeps").mkdir()
    (root / "pyproject.toml").write_text("")  # the project root: where the spec's relative store lives
    spec = {"name": experiment, "base": tiny_run_dict(tracking={"backend": "mlflow", "uri": "sqlite:///mlflow.db"})}
    (root / "sweeps" / "demo.yaml").write_text(yaml.safe_dump(spec))
    write_study(f"sqlite:///{root / 'mlflow.db'}", experiment, root / "artifacts")


@pytest.mark.slow
def test_notebooks_execute_against_a_study(tmp_path):
    plant_repository(tmp_path)
    executed = assert_notebooks_execute(tmp_path)
    assert set(executed) == {"ablation.ipynb", "fid_scaling.ipynb", "lpips_contribution.ipynb", "lr_crosscheck.ipynb"}
    printed = "".join(out.get("text", "") for nb in executed.values() for cell in nb.cells
                      for out in cell.get("outputs", []))
    assert f"experiment 'nb-study' at sqlite:///{tmp_path / 'mlflow.db'}" in printed
    assert "missing:" not in printed  # every figure had its data: no MissingData message
    images = sum("image/png" in out.get("data", {}) for nb in executed.values() for cell in nb.cells
                 for out in cell.get("outputs", []))
    assert images == 7  # crosscheck, lpips, size (iteration, epoch), patch, train and inference compute
    assert sorted(p.name for p in (tmp_path / "figures").glob("*.png")) == sorted(
        f"{s}.png" for s in ("lr_crosscheck", "lpips_contribution", "fid_vs_iteration_by_size", "fid_vs_epoch_by_size",
                             "fid_vs_iteration_by_patch", "fid_vs_train_compute", "fid_vs_inference_gflops"))


def test_a_notebook_without_its_store_says_what_to_run(tmp_path, monkeypatch):
    from analysis import MissingData
    from analysis.notebook import find_study

    plant_repository(tmp_path)
    (tmp_path / "mlflow.db").unlink()
    (tmp_path / "analysis" / "notebooks").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "analysis" / "notebooks")
    with pytest.raises(MissingData, match="make demo.*TRACKING_URI"):
        find_study()
