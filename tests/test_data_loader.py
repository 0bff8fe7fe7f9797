import itertools

import numpy as np
import pytest
import torch

from gatscale.core.config import ConfigError, DataConfig
from gatscale.data import build_train_loader, dataset_info, iterate_images, load_digits_images
from gatscale.data.loader import StepBatches


@pytest.fixture(scope="module")
def digits_cfg(tmp_path_factory):
    cfg = DataConfig(source="digits", path=str(tmp_path_factory.mktemp("digits") / "d8"), resolution=8, num_workers=0)
    dataset_info(cfg)  # prepares the cache once for the module
    return cfg


def take(loader, n):
    return list(itertools.islice(loader, n))


def same_batches(a, b):
    return len(a) == len(b) and all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
                                    for x, y in zip(a, b))


def test_same_seed_and_step_give_the_same_batches(digits_cfg):
    a = take(build_train_loader(digits_cfg, 64, 0, 1, seed=3), 5)
    assert same_batches(a, take(build_train_loader(digits_cfg, 64, 0, 1, seed=3), 5))
    assert not torch.equal(a[0]["label"], take(build_train_loader(digits_cfg, 64, 0, 1, seed=4), 1)[0]["label"])


def test_starting_at_a_step_equals_the_tail_of_an_uninterrupted_run(digits_cfg):
    full = take(build_train_loader(digits_cfg, 500, 0, 1, seed=0), 9)  # crosses epoch boundaries (N = 1797)
    assert same_batches(full[7:], take(build_train_loader(digits_cfg, 500, 0, 1, seed=0, start_step=7), 2))


def test_workers_give_the_same_batches_as_the_main_process(digits_cfg):
    cfg = DataConfig(**{**digits_cfg.__dict__, "num_workers": 2})
    n = 20
    assert same_batches(take(build_train_loader(digits_cfg, 32, 1, 2, seed=0), n),
                        take(build_train_loader(cfg, 32, 1, 2, seed=0), n))


def test_ranks_are_disjoint_and_each_epoch_visits_every_image_once():
    n, batch, world = 1800, 50, 3  # 12 steps per epoch
    for epoch in range(2):
        steps = [[StepBatches(n, batch, r, world, seed=0).indices(s) for r in range(world)]
                 for s in range(12 * epoch, 12 * epoch + 12)]
        for per_rank in steps:
            assert len(np.unique(np.concatenate(per_rank))) == batch * world
        assert sorted(np.concatenate([np.concatenate(per_rank) for per_rank in steps])) == list(range(n))


def test_batches_hold_the_right_labels_images_and_latents(digits_cfg):
    images, labels = load_digits_images(8)
    sampler = StepBatches(len(labels), 40, 1, 2, seed=5, start_step=2)
    batch = next(build_train_loader(digits_cfg, 40, 1, 2, seed=5, start_step=2))
    idx = sampler.indices(2)
    assert batch["latent"].dtype == torch.float32 and batch["latent"].shape == (40, 6, 8, 8)
    assert batch["label"].dtype == torch.int64 and batch["image"].dtype == torch.uint8
    np.testing.assert_array_equal(batch["label"], labels[idx])
    np.testing.assert_array_equal(batch["image"], images[idx])
    torch.testing.assert_close(batch["latent"][:, :3], batch["image"].float() / 127.5 - 1)


def test_iterate_images_yields_every_image_in_order(digits_cfg):
    images, labels = load_digits_images(8)
    got = list(iterate_images(digits_cfg, 700))
    assert [len(y) for _, y in got] == [700, 700, 397]
    np.testing.assert_array_equal(torch.cat([x for x, _ in got]), images)
    np.testing.assert_array_equal(torch.cat([y for _, y in got]), labels)


def test_config_that_does_not_match_the_shards_is_a_clear_error(digits_cfg):
    with pytest.raises(ConfigError, match="data.num_classes = 1000"):
        dataset_info(DataConfig(**{**digits_cfg.__dict__, "num_classes": 1000}))
    with pytest.raises(ConfigError, match="data.resolution = 16"):
        dataset_info(DataConfig(**{**digits_cfg.__dict__, "source": "shards", "resolution": 16}))
    with pytest.raises(ConfigError, match="data.tokenizer = 'sd-vae'"):
        dataset_info(DataConfig(**{**digits_cfg.__dict__, "source": "shards", "tokenizer": "sd-vae"}))
    with pytest.raises(ConfigError, match="data.path = .*folder not found"):
        dataset_info(DataConfig(source="shards", path="/nonexistent/shards"))
    with pytest.raises(ValueError, match="rank"):
        build_train_loader(digits_cfg, 8, rank=2, world_size=2, seed=0)


def test_the_loader_leaves_the_global_torch_rng_alone(digits_cfg):
    state = torch.get_rng_state()
    take(build_train_loader(digits_cfg, 16, 0, 1, seed=0), 3)
    assert torch.equal(state, torch.get_rng_state())
