"""The networks trained on the digits set: deterministic, cached, and shaped like what they stand in for."""
import torch

from gatscale.core.config import EncoderConfig
from gatscale.eval.lpips_contribution import build_lpips
from gatscale.networks import digits_nets
from gatscale.networks.encoders import build_encoder


def same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_digits_encoder_and_lpips_network_train_deterministically():
    for train in (digits_nets.train_digits_vit, digits_nets.train_digits_perceptual):
        (a, acc_a), (b, acc_b) = train(epochs=1), train(epochs=1)
        assert same_weights(a, b) and acc_a == acc_b


def test_digits_encoder_gives_cls_and_patch_tokens_at_ds_grid_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GATSCALE_CACHE", str(tmp_path))
    quick = digits_nets.train_digits_vit
    monkeypatch.setattr(digits_nets, "train_digits_vit", lambda: quick(epochs=1))
    encoder = build_encoder(EncoderConfig(name="digits-vit"))
    assert not encoder.stand_in and encoder.dim == digits_nets.DIGITS_VIT["width"]
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    cls, patches = encoder(encoder.preprocess(images), grid_size=8)
    assert cls.shape == (3, 64) and patches.shape == (3, 64, 64)
    (cached,) = tmp_path.glob("digits_vit-*.pt")
    assert same_weights(build_encoder(EncoderConfig(name="digits-vit")).model, encoder.model)  # read back
    assert not isinstance(encoder.model, type(digits_nets.DigitsPerceptual()))  # not a CNN, let alone the evaluator


def test_digits_lpips_distance_is_zero_for_equal_images_and_grows_with_a_shift(tmp_path, monkeypatch):
    monkeypatch.setenv("GATSCALE_CACHE", str(tmp_path))
    quick = digits_nets.train_digits_perceptual
    monkeypatch.setattr(digits_nets, "train_digits_perceptual", lambda: quick(epochs=2))
    model, label = build_lpips("digits")
    assert label == "digits"
    from gatscale.data.digits import load_digits_images
    x = torch.from_numpy(load_digits_images(16)[0][:16]).float() / 127.5 - 1
    same, shifted = model(x, x), model(x, torch.roll(x, 3, dims=3))
    assert same.shape == (16, 1, 1, 1) and same.abs().max() < 1e-6
    assert (shifted > 0.05).all()
