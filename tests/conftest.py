"""Test-wide settings: offline hub, deterministic CPU, small thread count; the shared fixture modules."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
# Tiny models run fastest single-threaded; subprocesses (trainer runs, workers) inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

torch.set_num_threads(1)

# Fixtures every test module can ask for by name: one digits cache per session (autouse), the evaluation
# cache, the local SLURM cluster and a study name on it.
pytest_plugins = ["train_fixtures", "eval_fixtures", "slurm_fixtures"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
