import numpy as np
import pytest

from gatscale.data.digits import load_digits_images


def test_digits_images_have_the_promised_format():
    images, labels = load_digits_images(16)
    assert images.shape == (1797, 3, 16, 16) and images.dtype == np.uint8
    assert labels.shape == (1797,) and labels.dtype == np.int64
    assert set(np.unique(labels)) == set(range(10))
    assert images.max() == 255 and images.min() == 0
    assert (images[:, 0] == images[:, 1]).all() and (images[:, 1] == images[:, 2]).all()


def test_digits_at_native_resolution_are_the_sklearn_values_scaled():
    from sklearn.datasets import load_digits
    images, labels = load_digits_images(8)
    d = load_digits()
    np.testing.assert_array_equal(images[:, 0], np.round(d.images * 255 / 16).astype(np.uint8))
    np.testing.assert_array_equal(labels, d.target)


def test_digits_upsampling_is_torch_bilinear():
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    x = torch.from_numpy(load_digits().images.astype(np.float32) * (255 / 16))[:, None]
    expected = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).round().to(torch.uint8)
    np.testing.assert_array_equal(load_digits_images(16)[0][:, :1], expected.numpy())


def test_digits_rejects_a_bad_resolution():
    with pytest.raises(ValueError, match="resolution"):
        load_digits_images(0)


def test_prepare_digits_writes_the_shard_format(tmp_path):
    from gatscale.data.digits import prepare_digits
    from gatscale.data.shards import ShardSet

    path = prepare_digits(tmp_path / "digits", resolution=8, shard_size=500)
    shards = ShardSet(path)
    images, labels = load_digits_images(8)
    assert len(shards) == 1797 and list(shards.counts) == [500, 500, 500, 297]
    assert shards.index["class_names"] == [str(i) for i in range(10)] and shards.index["num_skipped"] == 0
    idx = np.arange(1797)
    np.testing.assert_array_equal(shards.gather("image", idx), images)
    np.testing.assert_array_equal(shards.gather("label", idx), labels)
    latent = np.load(path / "shard-00000" / "latent.npy", mmap_mode="r")
    assert latent.shape == (500, 6, 8, 8)
    np.testing.assert_allclose(latent[:, :3], images[:500] / 127.5 - 1, atol=1e-6)
    assert (latent[:, 3:] == 0).all()


def test_concurrent_preparation_leaves_one_valid_copy(tmp_path):
    import multiprocessing

    from gatscale.data.digits import prepare_digits

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=prepare_digits, args=(tmp_path / "d", 8)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temp folders left behind
    assert prepare_digits(tmp_path / "d", 8) == tmp_path / "d"


def test_digits_cache_respects_gatscale_cache(tmp_path, monkeypatch):
    from gatscale.core.config import DataConfig
    from gatscale.data import dataset_info, digits_cache_dir

    monkeypatch.setenv("GATSCALE_CACHE", str(tmp_path))
    cfg = DataConfig(resolution=8)
    assert digits_cache_dir(cfg) == tmp_path / "digits-8-pixels"
    info = dataset_info(cfg)
    assert (tmp_path / "digits-8-pixels" / "index.json").exists()
    assert (info.num_images, info.num_classes, info.latent_channels, info.latent_size) == (1797, 10, 3, 8)


def test_digits_with_the_sd_vae_is_a_clear_error(tmp_path):
    from gatscale.data.digits import prepare_digits

    with pytest.raises(ValueError, match="tokenizer = 'sd-vae'.*only prepared with the 'pixels'"):
        prepare_digits(tmp_path / "d", 16, tokenizer="sd-vae")


def test_prepare_digits_command(tmp_path, capsys):
    from gatscale.cli import main

    assert main(["prepare-digits", str(tmp_path / "d"), "--resolution", "8"]) == 0
    assert "1797" in capsys.readouterr().out
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    assert main(["prepare-digits", str(tmp_path / "other")]) == 2
    assert "not a digits shard folder" in capsys.readouterr().err
