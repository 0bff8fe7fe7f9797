"""The paper's figures from what the runs recorded: `load` reads runs and metric histories into pandas frames
(from the run folders where reachable, else MLflow), `figures` turns frames into figures and tables (each
`<name>_data` then `plot_<name>`), `cli` is `gatscale figures`.

    from analysis import load_experiment, figures
    runs, histories = load_experiment("demo", "sqlite:///mlflow.db")
    figures.fid_curves(runs, histories, by="size", out_dir="figures")
"""
from . import figures, style
from .figures import ablation_table, fid_curves, fid_vs_compute, fit_power_law, lpips_contribution, lr_crosscheck
from .load import MissingData, load_experiment, load_histories, load_lpips, load_run_folders, load_runs

__all__ = ["figures", "style", "MissingData", "load_runs", "load_run_folders", "load_histories", "load_lpips",
           "load_experiment",
           "lr_crosscheck", "lpips_contribution", "fid_curves", "fid_vs_compute", "fit_power_law", "ablation_table"]
