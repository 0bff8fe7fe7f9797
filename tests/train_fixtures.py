"""A very small run config for trainer tests (digits at 8 px, 16 tokens, tiny G/D, tiny encoder)."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from gatscale.core.config import config_from_dict

REPO = Path(__file__).resolve().parents[1]


def tiny_run_dict(**sections) -> dict:
    cfg = {
        "name": "t",
        "model": {"generator": {"size": "GAT-S/4", "depth": 4, "hidden_size": 16, "num_heads": 1},
                  "discriminator": {"size": "GAT-S/4", "depth": 4, "hidden_size": 16, "num_heads": 1},
                  "cmap_dim": 16, "projector_dim": 16, "z_dim": 16},
        "encoder": {"name": "vit_tiny_patch16_224", "pretrained": False, "resolution": 8,
                    "kwargs": {"patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 1}},
        "optim": {"lr": 2e-3, "base_width": 16},
        "data": {"source": "digits", "tokenizer": "pixels", "resolution": 8, "num_classes": 10, "num_workers": 0},
        "train": {"batch_size": 8, "iterations": 20, "log_every": 5, "sample_every": 1000, "checkpoint_every": 10,
                  "keep_checkpoints": 3},
        "eval": {"fid_every": 0},
        "tracking": {"backend": "none"},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = values
    return cfg


def tiny_config(**sections):
    return config_from_dict(tiny_run_dict(**sections))


@pytest.fixture(autouse=True, scope="session")
def _digits_cache(tmp_path_factory):
    os.environ["GATSCALE_CACHE"] = str(tmp_path_factory.mktemp("gatscale-cache"))


def write_config(path: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump(tiny_run_dict(**sections)))
    return path


def gatscale_train(config: Path, run_dir: Path, *extra: str, **popen) -> subprocess.Popen:
    """Start `gatscale train` in a subprocess (its own process group)."""
    cmd = [sys.executable, "-m", "gatscale.cli", "train", str(config), "--run-dir", str(run_dir), *extra]
    return subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def wait_for(predicate, timeout: float = 120.0, interval: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    raise TimeoutError("condition not reached")


def checkpoint_tensors(state):
    """All tensors of a checkpoint, flattened to name -> tensor."""
    out = {}

    def walk(prefix, x):
        if isinstance(x, torch.Tensor):
            out[prefix] = x
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(f"{prefix}.{i}", v)
    for key in ("generator", "discriminator", "ema", "opt_g", "opt_d"):
        walk(key, state[key])
    return out


def assert_bitwise_equal(a: dict, b: dict):
    ta, tb = checkpoint_tensors(a), checkpoint_tensors(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
