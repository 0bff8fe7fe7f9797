"""Fréchet distance / IS / precision-recall through torch-fidelity, with the offline digits extractor."""
import numpy as np
import pytest
import torch
import torch_fidelity

from eval_fixtures import digits_tensor, tiny_config, tiny_generator
from gatscale.data.vae import build_tokenizer
from gatscale.eval import fid
from gatscale.eval.reference import FeatureMoments, compute_reference, load_reference, save_reference


@pytest.fixture
def digits_reference(eval_cache):
    images, _ = digits_tensor()
    extractor = fid.get_extractor("digits")
    ref = compute_reference(images.split(500), lambda x: fid.extract_features(extractor, x)["feat"], 128)
    return images, extractor, {**ref, "features": torch.from_numpy(ref["features"])}


def test_frechet_distance_is_zero_for_the_same_set_and_large_for_a_shifted_set(digits_reference):
    images, extractor, ref = digits_reference
    same = fid.compute_metrics(images.split(500), "digits", extractor, ref)
    shifted = fid.compute_metrics(torch.roll(images, 3, dims=3).split(500), "digits", extractor, ref)
    assert abs(same["fd_digits"]) < 1e-3
    assert shifted["fd_digits"] > 50


def test_digits_extractor_reports_fd_digits_never_fid(digits_reference):
    images, extractor, ref = digits_reference
    values = fid.compute_metrics(images[:400].split(200), "digits", extractor, ref, metrics=("fid", "is", "prc"))
    assert set(values) == {"fd_digits", "fd_digits_se", "is_digits", "is_std_digits", "precision_digits",
                           "recall_digits"}
    assert values["is_digits"] > 5  # a trained digits classifier: confident, diverse predictions
    assert values["precision_digits"] > 0.9
    assert set(fid.metric_names("inception").values()) == {"fid", "fid_se", "fid_inf", "is", "is_std", "precision",
                                                           "recall"}


def test_digits_extractor_is_registered_with_torch_fidelity(digits_reference):
    images, extractor, ref = digits_reference

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    images = images[:600]
    shifted = torch.roll(images, 2, dims=2)
    theirs = torch_fidelity.calculate_metrics(input1=Images(shifted), input2=Images(images), fid=True, cuda=False,
                                              feature_extractor="gatscale-digits", cache=False, save_cpu_ram=True,
                                              verbose=False)["frechet_inception_distance"]
    ref = compute_reference([images], lambda x: fid.extract_features(extractor, x)["feat"], 128)
    ours = fid.compute_metrics(shifted.split(500), "digits", extractor, ref)["fd_digits"]
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_missing_inception_weights_fail_early_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match=fid.INCEPTION_FILE) as err:
        fid.get_extractor("inception")
    assert str(tmp_path / "hub" / "checkpoints") in str(err.value)
    with pytest.raises(FileNotFoundError, match="eval.inception_weights = '/nowhere/x.pth'"):
        fid.check_feature_extractor(tiny_config(eval={"feature_extractor": "inception",
                                                      "inception_weights": "/nowhere/x.pth"}).eval)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / fid.INCEPTION_FILE).write_bytes(b"")
    assert fid.resolve_inception_weights(None) == str(tmp_path / "hub" / "checkpoints" / fid.INCEPTION_FILE)


def test_streamed_reference_moments_equal_numpy_and_keep_a_bounded_subset():
    feats = torch.randn(1000, 5, dtype=torch.float64) * torch.arange(1, 6) + 3
    moments = FeatureMoments(5, max_kept=100)
    for chunk in feats.split(64):
        moments.update(chunk)
    stats = moments.stats()
    assert np.allclose(stats["mu"], feats.numpy().mean(0))
    assert np.allclose(stats["sigma"], np.cov(feats.numpy(), rowvar=False))
    assert stats["features"].shape == (100, 5) and stats["num_images"] == 1000


def test_reference_files_round_trip_and_adm_files_load_as_inception(tmp_path):
    rng = np.random.default_rng(0)
    stats = {"mu": rng.normal(size=128), "sigma": np.eye(128),
             "features": rng.normal(size=(10, 128)).astype(np.float32), "num_images": 10}
    save_reference(tmp_path / "ref.npz", stats, "digits", "feat", source="test")
    loaded = load_reference(tmp_path / "ref.npz", "digits", 128)
    assert np.array_equal(loaded["mu"], stats["mu"]) and loaded["features"].shape == (10, 128)
    with pytest.raises(ValueError, match="'digits' feature extractor"):
        load_reference(tmp_path / "ref.npz", "inception", 2048)

    np.savez(tmp_path / "VIRTUAL_imagenet256_labeled.npz", mu=np.zeros(2048), sigma=np.eye(2048))  # ADM layout
    adm = load_reference(tmp_path / "VIRTUAL_imagenet256_labeled.npz", "inception", 2048)
    assert adm["mu"].shape == (2048,) and adm["features"] is None
    with pytest.raises(ValueError, match="'inception' feature extractor"):
        load_reference(tmp_path / "VIRTUAL_imagenet256_labeled.npz", "digits", 128)


def test_in_training_hook_returns_fd_digits_and_is_repeatable(eval_cache):
    cfg = tiny_config()
    G = tiny_generator(cfg)
    first = fid.evaluate_generator(G, cfg, build_tokenizer("pixels"), "cpu", num_samples=100)
    second = fid.evaluate_generator(G, cfg, build_tokenizer("pixels"), "cpu", num_samples=100)
    assert set(first) == {"fd_digits", "fd_digits_se", "acc_digits", "precision_digits", "recall_digits",
                          "diversity_digits"}
    assert first["fd_digits"] > 0 and 0 < first["fd_digits_se"] < first["fd_digits"]
    assert first == second  # same z and labels every call
    assert list(eval_cache.glob("reference/reference-digits-16px-digits-cnn-v1.npz"))  # computed once and cached


def test_features_stay_float32_inside_a_callers_autocast(digits_reference):
    images, extractor, _ = digits_reference
    plain = fid.extract_features(extractor, images[:64])["feat"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = fid.extract_features(extractor, images[:64])["feat"]
    assert torch.equal(plain, inside)


class RealDigitsGenerator(torch.nn.Module):
    """A 'generator' that returns a real digit of the asked class (or always the same image: constant=True)."""

    def __init__(self, constant=False, per_class=None):
        super().__init__()
        images, labels = digits_tensor()
        self.register_buffer("latents", images.float() / 127.5 - 1)  # the pixels tokenizer's latents
        self.register_buffer("labels", labels)
        self.num_classes, self.z_dim, self.constant, self.per_class = 10, 4, constant, per_class

    def forward(self, z, y, truncation_psi=0.0):
        if self.constant:
            return self.latents[:1].expand(len(y), -1, -1, -1)
        pick = (z[:, 0].abs() * 50).long()  # a z-dependent image among those of class y (or its first per_class)
        pick = (pick % self.per_class if self.per_class else pick).tolist()
        return torch.stack([self.latents[self.labels == c][i % int((self.labels == c).sum())]
                            for c, i in zip(y.tolist(), pick)])


def test_acc_digits_is_near_one_for_real_digits_of_their_class_and_a_tenth_for_a_constant(eval_cache):
    cfg = tiny_config(eval={"feature_extractor": "digits", "batch_size": 100, "fid_samples": 500})
    real = fid.evaluate_generator(RealDigitsGenerator(), cfg, build_tokenizer("pixels"), "cpu")
    constant = fid.evaluate_generator(RealDigitsGenerator(constant=True), cfg, build_tokenizer("pixels"), "cpu")
    assert real["acc_digits"] > 0.95
    assert constant["acc_digits"] == pytest.approx(0.1)  # balanced labels, one predicted class
    assert constant["fd_digits"] > 10 * real["fd_digits"]


def test_real_data_floor_is_small_cached_and_below_a_shifted_set(eval_cache):
    cfg = tiny_config(eval={"feature_extractor": "digits", "batch_size": 100, "fid_samples": 300})
    floor = fid.real_data_floor(cfg)
    assert set(floor) == {"fd_digits_floor", "fd_digits_floor_se", "acc_digits_real", "precision_digits_real",
                          "recall_digits_real", "diversity_digits_real"}
    assert 0 < floor["fd_digits_floor"] < 20 and floor["acc_digits_real"] > 0.95
    assert 0 < floor["fd_digits_floor_se"] < floor["fd_digits_floor"]
    assert floor["precision_digits_real"] > 0.9 and floor["recall_digits_real"] > 0.8
    assert floor["diversity_digits_real"] == pytest.approx(1, abs=0.1)
    assert fid.real_data_floor(cfg, num_samples=1797)["fd_digits_floor"] < floor["fd_digits_floor"]  # all images
    cached = list(eval_cache.glob("reference/*-floor-300-seed0-v2.json"))
    assert len(cached) == 1
    cached[0].write_text('{"fd_digits_floor": 1234.5}')  # read back, never recomputed
    assert fid.real_data_floor(cfg) == {"fd_digits_floor": 1234.5}


def test_class_correct_but_mode_collapsed_samples_show_in_diversity_and_recall_not_in_accuracy(eval_cache):
    cfg = tiny_config(eval={"feature_extractor": "digits", "batch_size": 100, "fid_samples": 500})
    real = fid.evaluate_generator(RealDigitsGenerator(), cfg, build_tokenizer("pixels"), "cpu")
    collapsed = fid.evaluate_generator(RealDigitsGenerator(per_class=3), cfg, build_tokenizer("pixels"), "cpu")
    assert real["acc_digits"] > 0.95 and collapsed["acc_digits"] > 0.9  # both draw the right class
    assert real["diversity_digits"] == pytest.approx(1, abs=0.15)
    assert collapsed["diversity_digits"] < 0.7 * real["diversity_digits"]  # 3 images a class: ~ 1 - 1/3 (0.56)
    assert collapsed["recall_digits"] < 0.2 * real["recall_digits"]
    assert collapsed["precision_digits"] > 0.9  # each image is a real digit


def test_fd_se_is_logged_beside_every_frechet_distance_and_none_when_switched_off(digits_reference):
    images, extractor, ref = digits_reference
    shifted = torch.roll(images[:400], 2, dims=3).split(200)
    values = fid.compute_metrics(shifted, "digits", extractor, ref, fd_inf=True, fits=(fits := {}))
    assert set(values) == {"fd_digits", "fd_digits_se", "fd_digits_inf"}
    assert 0 < values["fd_digits_se"] < 0.2 * values["fd_digits"]
    assert values["fd_digits_inf"] < values["fd_digits"]  # FD at 400 samples is biased up
    assert fits["fd_digits_inf"]["counts"][-1] == 400
    assert set(fid.compute_metrics(shifted, "digits", extractor, ref, se_resamples=0)) == {"fd_digits"}


def test_fd_dinov2_on_a_stand_in_network_has_its_own_reference_and_se(eval_cache):
    dinov2 = {"name": "vit_small_patch14_dinov2.lvd142m", "pretrained": False, "resolution": 28,
              "kwargs": {"embed_dim": 32, "depth": 1, "num_heads": 2}}
    cfg = tiny_config(eval={"feature_extractor": "digits", "batch_size": 100, "fid_samples": 200,
                            "fd_dinov2": True, "dinov2": dinov2})
    real = fid.evaluate_generator(RealDigitsGenerator(), cfg, build_tokenizer("pixels"), "cpu")
    constant = fid.evaluate_generator(RealDigitsGenerator(constant=True), cfg, build_tokenizer("pixels"), "cpu")
    assert {"fd_dinov2", "fd_dinov2_se", "fd_digits"} <= set(real)
    assert constant["fd_dinov2"] > 3 * real["fd_dinov2"] > 0
    files = sorted(p.name for p in eval_cache.glob("reference/reference-digits-16px-dinov2-*-stand-in.npz"))
    assert len(files) == 1  # labelled a stand-in, apart from the digits CNN's
    assert fid.recipe(cfg.eval, 200, ("fid",))["fd_dinov2"]["stand_in"] is True
