import pytest
import torch

from data_fixtures import tiny_autoencoder
from gatscale.data import sample_latents
from gatscale.data.vae import build_tokenizer


def test_pixel_tokenizer_round_trips_images():
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    tok = build_tokenizer("pixels", scale=0.5)
    moments = tok.encode_moments(images)
    assert moments.shape == (5, 6, 8, 8) and moments.dtype == torch.float32
    assert (moments[:, 3:] == 0).all() and moments[:, :3].min() >= -1 and moments[:, :3].max() <= 1
    decoded = tok.decode(sample_latents(moments, tok.scale))
    assert torch.equal((decoded * 255).round().to(torch.uint8), images)


def test_sd_vae_latents_decode_with_the_right_shapes_and_scaling():
    vae = tiny_autoencoder()
    tok = build_tokenizer("sd-vae", vae, scale=0.18215)
    assert (tok.channels, tok.downsample) == (4, 2)
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    tok.batch_size = 2  # exercise batching
    moments = tok.encode_moments(images)
    assert moments.shape == (3, 8, 8, 8) and (moments[:, 4:] > 0).all()
    with torch.no_grad():
        posterior = vae.encode(images.float() / 127.5 - 1).latent_dist
        torch.testing.assert_close(moments, torch.cat([posterior.mean, posterior.std], 1))
        latents = sample_latents(moments, tok.scale, torch.Generator().manual_seed(0))
        assert latents.shape == (3, 4, 8, 8)
        decoded = tok.decode(latents)
        assert decoded.shape == (3, 3, 16, 16) and decoded.min() >= 0 and decoded.max() <= 1
        expected = ((vae.decode(latents / 0.18215).sample + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(decoded, expected)


def test_sample_latents_draws_from_the_posterior():
    mean, std = torch.randn(4000, 2, 2, 2), torch.rand(4000, 2, 2, 2) + 0.5
    x = sample_latents(torch.cat([mean, std], 1), 0.5, torch.Generator().manual_seed(1))
    eps = (x / 0.5 - mean) / std
    assert abs(eps.mean().item()) < 0.02 and abs(eps.std().item() - 1) < 0.02
    assert torch.equal(x, sample_latents(torch.cat([mean, std], 1), 0.5, torch.Generator().manual_seed(1)))


def test_missing_weights_give_a_clear_error_offline(tmp_path):
    with pytest.raises(FileNotFoundError, match="stabilityai/sd-vae-ft-ema.*local folder"):
        build_tokenizer("sd-vae", "stabilityai/sd-vae-ft-ema")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        build_tokenizer("sd-vae", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="kind = 'vqgan'"):
        build_tokenizer("vqgan")


def test_non_finite_half_precision_output_is_recomputed_in_float32():
    tok = build_tokenizer("sd-vae", tiny_autoencoder(), dtype=torch.bfloat16)

    def overflows_in_low_precision(x):
        return x * (float("inf") if torch.is_autocast_enabled("cpu") else 1.0)
    with pytest.warns(UserWarning, match="non-finite"):
        out = tok._run(overflows_in_low_precision, torch.ones(2), torch.bfloat16)
    assert torch.equal(out, torch.ones(2))


def test_encode_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        build_tokenizer("pixels").encode_moments(torch.rand(1, 3, 4, 4))
