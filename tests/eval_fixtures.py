"""Helpers for the evaluation tests: a tiny random generator, its run config, a run folder with a checkpoint."""
import pytest

from gatscale.core.config import config_from_dict, to_dict
from gatscale.models import generator_from_config

TINY_RUN = {
    "name": "tiny-eval",
    "model": {"generator": {"size": "GAT-S/2", "depth": 4, "hidden_size": 64, "num_heads": 2}},
    "data": {"source": "digits", "resolution": 16, "tokenizer": "pixels", "num_classes": 10},
    "eval": {"feature_extractor": "digits", "batch_size": 64, "fid_samples": 200},
    "tracking": {"experiment": "eval-tests"},
}


def tiny_config(**sections):
    data = {**TINY_RUN, **sections}
    return config_from_dict(data)


def tiny_generator(cfg=None, seed=0):
    import torch

    torch.manual_seed(seed)
    return generator_from_config(cfg or tiny_config()).eval()


def run_with_checkpoint(run_dir, step=100, cfg=None):
    """A run folder holding checkpoints/ckpt-<step>.pt of a random tiny G (EMA = raw weights)."""
    from gatscale.train.checkpoint import save_checkpoint

    cfg = cfg or tiny_config()
    G = tiny_generator(cfg)
    save_checkpoint(run_dir, step, {"config": to_dict(cfg), "ema": G.state_dict(), "generator": G.state_dict()}, keep=1)
    return run_dir, G, cfg


def digits_tensor():
    """The embedded digits as (uint8 (N,3,16,16), int64 labels) tensors."""
    import torch

    from gatscale.data.digits import load_digits_images

    images, labels = load_digits_images(resolution=16)
    return torch.from_numpy(images), torch.from_numpy(labels)


@pytest.fixture(scope="session")
def eval_cache_dir(tmp_path_factory):
    """One $GATSCALE_CACHE for all evaluation tests: the digits CNN is trained once per session."""
    return tmp_path_factory.mktemp("gatscale-cache")


@pytest.fixture
def eval_cache(eval_cache_dir, monkeypatch):
    monkeypatch.setenv("GATSCALE_CACHE", str(eval_cache_dir))
    return eval_cache_dir
