"""A small planted study for the analysis tests: the same runs as pandas frames (what `analysis.load`
should return) and written into an MLflow store (what the tracker would log), plus a notebook runner.

Planted values: FID = FID_A * F^FID_B with F = training GFLOPs at the step (full-method runs), ablations
worse by a known factor; B2-lrS (GAT-S/2's LR on GAT-B/2) diverges at step DIVERGED_AT.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from gatscale.core.config import RunConfig, flatten, to_dict

FID_A, FID_B = 3.0e4, -0.456
STEPS = range(0, 1001, 50)
FID_STEPS = (250, 500, 750, 1000)
DIVERGED_AT = 350
DIVERGENCE_REASON = f"non-finite loss/d, grad_norm/d at step {DIVERGED_AT}"  # as the trainer words it
BATCH, DATASET = 64, 1797
GFLOPS = {"GAT-S/2": 6.1, "GAT-B/2": 23.0, "GAT-L/2": 80.7, "GAT-S/4": 1.5, "GAT-B/4": 5.6}
WIDTH = {"S": 384, "B": 768, "L": 1024}
ABLATION_FACTOR = {("exp", True, True): 1.0, ("off", True, True): 1.5, ("exp", False, True): 1.3,
                   ("exp", True, False): 1.2}

# name, G/D size, mng, repa, width-aware LR, optim.lr, status
STUDY = [
    ("S2-full", "GAT-S/2", "exp", True, True, 2e-4, "finished"),
    ("B2-full", "GAT-B/2", "exp", True, True, 2e-4, "finished"),
    ("L2-full", "GAT-L/2", "exp", True, True, 2e-4, "finished"),
    ("S4-full", "GAT-S/4", "exp", True, True, 2e-4, "finished"),
    ("B4-full", "GAT-B/4", "exp", True, True, 2e-4, "finished"),
    ("B2-lrS", "GAT-B/2", "exp", True, False, 4e-4, "diverged"),
    ("B2-nomng", "GAT-B/2", "off", True, True, 2e-4, "finished"),
    ("B2-norepa", "GAT-B/2", "exp", False, True, 2e-4, "finished"),
]
STAND_IN = "encoder,inception"


def flops_per_step(model):
    """Training FLOPs of one iteration: 3x forward (fwd + bwd) of G and D per image (the trainer's param)."""
    return 3 * 2 * GFLOPS[model] * BATCH * 1e9


def train_gflops(model, step):
    """Cumulative training GFLOPs, as analysis.load derives them from flops_per_step."""
    return flops_per_step(model) * step / 1e9


def planted_fid(model, switches, step):
    return FID_A * train_gflops(model, step) ** FID_B * ABLATION_FACTOR[switches]


def lpips_table(mng_on: bool) -> pd.DataFrame:
    blocks = np.arange(12)
    contribution = 0.05 + 0.02 * blocks if mng_on else np.where(blocks < 6, 0.002, 0.1 + 0.03 * (blocks - 6))
    return pd.DataFrame({"block": blocks, "contribution": contribution,
                         "normalized": contribution / contribution.sum(), "backbone": "alex",
                         "num_samples": 64})


def study_frames():
    """(runs, histories, lpips) as analysis.load should return them (run ids are the names)."""
    runs, rows = [], []
    for i, (name, model, mng, repa, wa, lr, status) in enumerate(STUDY):
        size, patch = model.removeprefix("GAT-").split("/")
        lr_g = lr * 768 / WIDTH[size] if wa else lr
        runs.append(dict(run_id=name, name=name, status=status, model=model, size=size, patch=int(patch),
                         width=WIDTH[size], model_d=model, width_d=WIDTH[size], mng=mng, repa=repa,
                         width_aware_lr=wa, lr_g=lr_g, lr_d=lr_g, seed=0, batch_size=BATCH,
                         gflops_g=GFLOPS[model], gflops_d=GFLOPS[model], epochs_per_step=BATCH / DATASET,
                         flops_per_step=flops_per_step(model),
                         diverged_step=float(DIVERGED_AT) if status == "diverged" else np.nan,
                         divergence_reason=DIVERGENCE_REASON if status == "diverged" else "",
                         stand_in=STAND_IN, **{"eval.fid_samples": 5000}))
        last = DIVERGED_AT if status == "diverged" else max(STEPS)
        for step in [s for s in STEPS if s <= last]:
            bad = status == "diverged" and step == DIVERGED_AT
            values = {
                "loss/d": math.nan if bad else 0.6 + 0.4 * math.exp(-step / 400) + 0.01 * i,
                "loss/g": math.nan if bad else 1.2 - 0.3 * math.exp(-step / 400) + 0.01 * i,
                "grad_norm/d": math.nan if bad else (0.5 * math.exp(step / 80) if status == "diverged"
                                                     else 0.5 + 0.02 * i),
                "grad_norm/g": math.nan if bad else (0.3 * math.exp(step / 90) if status == "diverged"
                                                     else 0.3 + 0.01 * i),
            }
            if step in FID_STEPS:
                values["fid"] = planted_fid(model, (mng, repa, wa), step)
            rows += [(name, name, metric, step, step * BATCH / DATASET, train_gflops(model, step) * 1e9, v)
                     for metric, v in values.items()]
    histories = pd.DataFrame(rows, columns=["run_id", "name", "metric", "step", "epoch", "train_flops", "value"])
    lpips = pd.concat([lpips_table(True).assign(run_id="B2-full", name="B2-full"),
                       lpips_table(False).assign(run_id="B2-nomng", name="B2-nomng")], ignore_index=True)
    return pd.DataFrame(runs), histories, lpips


def _config_params(model, mng, repa, wa, lr, name) -> dict:
    cfg = flatten(to_dict(RunConfig()))
    cfg.update({"name": name, "model.generator.size": model, "model.discriminator.size": model, "method.mng": mng,
                "method.repa": repa, "optim.width_aware_lr": wa, "optim.lr": lr, "train.batch_size": BATCH})
    return {k: str(v) for k, v in cfg.items()}


def write_study(tracking_uri: str, experiment: str, artifact_dir: Path, runs=STUDY, lpips=True,
                status_override=None) -> dict:
    """Write `runs` as nested runs under one sweep parent run into an MLflow store -> {name: run_id}."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
    from PIL import Image

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment(experiment, artifact_location=Path(artifact_dir).as_uri())
    parent = client.create_run(exp_id, run_name="sweep", tags={"gatscale.kind": "sweep"}).info.run_id
    frames_runs, histories, tables = study_frames()
    ids = {}
    for name, model, mng, repa, wa, lr, status in runs:
        status = (status_override or {}).get(name, status)
        run_id = client.create_run(exp_id, run_name=name, tags={"mlflow.parentRunId": parent}).info.run_id
        ids[name] = run_id
        row = frames_runs.set_index("name").loc[name]
        params = _config_params(model, mng, repa, wa, lr, name)
        params.update(lr_g=str(row.lr_g), lr_d=str(row.lr_d), gflops_g=str(row.gflops_g), gflops_d=str(row.gflops_d),
                      images_per_step=str(BATCH), dataset_images=str(DATASET), flops_per_step=str(row.flops_per_step))
        tags = {"gatscale.status": status, "gatscale.name": name, "gatscale.config_hash": f"hash-{name}",
                "gatscale.stand_in": STAND_IN}
        if status == "diverged":
            tags.update({"gatscale.diverged_step": str(DIVERGED_AT), "gatscale.divergence_reason": DIVERGENCE_REASON})
        run_dir = Path(artifact_dir) / "runs" / name  # a run folder with its final sample grid (samples sheet)
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (36, 34), "grey").save(run_dir / "samples" / "final.png")
        tags["gatscale.run_dir"] = str(run_dir)
        items = list(params.items())
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run_id, params=[Param(k, v) for k, v in items[i:i + 100]])
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        h = histories[histories["run_id"] == name]
        metrics = [Metric(m, v, 1_700_000_000_000 + s, s) for m, s, v in zip(h["metric"], h["step"], h["value"])]
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i:i + 1000])
        table = tables[tables["run_id"] == name]
        if lpips and len(table):
            path = Path(artifact_dir) / f"{name}-lpips" / "lpips_contribution.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            table.drop(columns=["run_id", "name"]).to_csv(path, index=False)
            client.log_artifact(run_id, str(path), "eval")
        if status != "running":
            client.set_terminated(run_id, "FAILED" if status in ("diverged", "failed") else "FINISHED")
    client.set_terminated(parent, "FINISHED")
    return {"parent": parent, **ids}


NOTEBOOKS = Path(__file__).resolve().parents[1] / "analysis" / "notebooks"
STUDY_ENV = ("GATSCALE_EXPERIMENT", "GATSCALE_FIGURES", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME")


def assert_notebooks_execute(root: Path, timeout: int = 300):
    """Execute every analysis notebook headless as a user would: copied to root/analysis/notebooks and run in
    that folder, with no variable in the environment that says where the study is. `root` stands for the
    repository root: it holds the study's spec as sweeps/demo.yaml (the notebooks' default SPEC) and whatever
    store that spec names. A failing cell raises.

    The notebooks share one kernel (imports are paid once) and each starts from `%reset -f`, so none can
    lean on names another defined. Figures go to root/figures. Returns {notebook name: executed notebook}.
    """
    import shutil

    import nbformat
    from jupyter_client import KernelManager
    from nbclient import NotebookClient

    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert paths, f"no notebooks in {NOTEBOOKS}"
    folder = Path(root) / "analysis" / "notebooks"
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in STUDY_ENV}
    env.update(GATSCALE_CACHE=str(Path(root) / "cache"), MPLBACKEND="Agg")  # the history cache: under root too
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(folder))
    executed = {}
    try:
        for path in paths:
            shutil.copy(path, folder / path.name)
            nb = nbformat.read(folder / path.name, as_version=4)
            nb.cells.insert(0, nbformat.v4.new_code_cell("%reset -f"))
            NotebookClient(nb, km=km, timeout=timeout, kernel_name="python3").execute()
            executed[path.name] = nb
    finally:
        km.shutdown_kernel(now=True)
    return executed
