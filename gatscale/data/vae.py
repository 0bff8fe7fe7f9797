"""Tokenizers: uint8 images <-> the latents G and D work on.

- "pixels": identity with scaling, for CPU runs (mean = image/127.5 - 1, std = 0).
- "sd-vae": the Stable Diffusion VAE through diffusers, as in REPA/GAT's preprocessing: a [-1, 1] image is
  encoded by `stabilityai/sd-vae-ft-mse`, the posterior's (mean, std) are stored, and each training step draws
  (mean + std * eps) * 0.18215 (`gatscale.data.sample_latents`). Samples are decoded with `sd-vae-ft-ema`
  (the official `generate.py` default; only the decoder weights of the two differ).

Precision (`dtype=None`): weights stay float32. Encoding runs in float32 (the stored moments are the data
set; REPA/edm2 encode in float32). Decoding runs under bfloat16 autocast on CUDA (bf16 has float32's range,
so it cannot overflow) and float32 on CPU. float16 is accepted when asked for, but the SD-VAE is known to
overflow in float16 in places (diffusers marks such VAEs `force_upcast`): any batch whose output is not finite
is recomputed in float32, with a warning.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Protocol

import torch

from gatscale.core.config import SD_VAE_SCALE
from gatscale.core.hub import hub_unreachable


class Tokenizer(Protocol):
    """Maps uint8 images (B,3,R,R) to posterior moments (B, 2*channels, R/downsample, R/downsample) and
    scaled latents back to float images in [0, 1]."""
    kind: str
    source: str | None
    channels: int
    downsample: int
    scale: float

    def encode_moments(self, images_uint8: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...


def _check_images(images: torch.Tensor, downsample: int):
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        got = f"{type(images).__name__} {getattr(images, 'dtype', '')} {tuple(getattr(images, 'shape', ()))}"
        raise ValueError(f"encode_moments: expected a uint8 tensor (B,3,R,R), got {got}")
    if images.shape[2] % downsample or images.shape[3] % downsample:
        raise ValueError(f"encode_moments: image size {tuple(images.shape[2:])} is not divisible by the "
                         f"tokenizer's downsampling factor {downsample}")


class PixelTokenizer:
    """Identity with scaling: mean = image/127.5 - 1, std = 0; decode((mean) * scale) gives the image back."""
    kind, source, channels, downsample = "pixels", None, 3, 1

    def __init__(self, scale: float = 1.0, device="cpu"):
        self.scale, self.device = float(scale), torch.device(device)

    def encode_moments(self, images_uint8: torch.Tensor) -> torch.Tensor:
        _check_images(images_uint8, 1)
        mean = images_uint8.to(self.device).float() / 127.5 - 1
        return torch.cat([mean, torch.zeros_like(mean)], dim=1)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return ((latents.float() / self.scale + 1) / 2).clamp(0, 1)


class SDVAETokenizer:
    """A diffusers AutoencoderKL, run in batches of `batch_size` without gradients (see the module docstring)."""
    kind = "sd-vae"

    def __init__(self, vae, source: str | None, scale: float | None = None, device="cpu", dtype=None,
                 batch_size: int = 64):
        self.device = torch.device(device)
        self.vae = vae.to(self.device).eval().requires_grad_(False)
        if any(p.dtype != torch.float32 for p in self.vae.parameters()):
            self.vae.float()
        self.source = source
        self.channels = vae.config.latent_channels
        self.downsample = 2 ** (len(vae.config.block_out_channels) - 1)
        self.scale = float(scale if scale is not None else getattr(vae.config, "scaling_factor", SD_VAE_SCALE))
        self.encode_dtype = dtype or torch.float32
        self.decode_dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.batch_size = batch_size

    def _run(self, fn, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """fn(x) under `dtype` autocast; a non-finite result is recomputed in float32."""
        if dtype == torch.float32:
            return fn(x).float()
        with torch.autocast(self.device.type, dtype=dtype):
            out = fn(x).float()
        if not torch.isfinite(out).all():
            warnings.warn(f"SD-VAE produced non-finite values in {dtype}; recomputing this batch in float32")
            out = fn(x).float()
        return out

    def _moments(self, x: torch.Tensor) -> torch.Tensor:
        posterior = self.vae.encode(x).latent_dist  # logvar clamped to [-30, 20] by diffusers
        return torch.cat([posterior.mean, posterior.std], dim=1)

    @torch.no_grad()
    def encode_moments(self, images_uint8: torch.Tensor) -> torch.Tensor:
        _check_images(images_uint8, self.downsample)
        out = []
        for chunk in images_uint8.split(self.batch_size):
            x = chunk.to(self.device).float() / 127.5 - 1
            out.append(self._run(self._moments, x, self.encode_dtype))
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        out = []
        for chunk in latents.split(self.batch_size):
            z = chunk.to(self.device).float() / self.scale
            x = self._run(lambda z: self.vae.decode(z).sample, z, self.decode_dtype)
            out.append(((x + 1) / 2).clamp(0, 1))
        return torch.cat(out)


def load_autoencoder(source: str):
    """AutoencoderKL from a local folder (config.json + weights) or a hub id; a clear error when missing."""
    from diffusers import AutoencoderKL

    path = Path(source).expanduser()
    if path.exists():
        try:
            return AutoencoderKL.from_pretrained(str(path), low_cpu_mem_usage=False)
        except Exception as e:
            raise FileNotFoundError(f"VAE folder {path}: could not load an AutoencoderKL from it ({e}); it must hold "
                                    "config.json and diffusion_pytorch_model.safetensors (or .bin)") from None
    if source.startswith(("/", ".", "~")) or source.count("/") != 1:
        raise FileNotFoundError(f"VAE source {source!r}: no such folder (expected a local folder with config.json "
                                "and diffusion_pytorch_model.safetensors, or a hub id such as "
                                "'stabilityai/sd-vae-ft-mse')")
    from huggingface_hub import try_to_load_from_cache

    # a hub id that is not cached needs the hub: ask first, and fail in seconds without it
    if not isinstance(try_to_load_from_cache(source, "config.json"), str) and (why := hub_unreachable()):
        raise _vae_unavailable(source, f"not in the local cache, and {why}")
    try:
        return AutoencoderKL.from_pretrained(source, low_cpu_mem_usage=False)
    except Exception as e:
        raise _vae_unavailable(source, type(e).__name__) from None


def _vae_unavailable(source: str, why: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"VAE weights {source!r} are not available ({why}). Offline (HF_HUB_OFFLINE=1) they must "
        f"already be in the Hugging Face cache. On a machine with internet run `huggingface-cli download {source}` "
        f"(or `python -c \"from diffusers import AutoencoderKL; AutoencoderKL.from_pretrained('{source}')"
        f".save_pretrained('PATH')\"`) and pass the local folder instead (extract-latents --vae PATH, "
        f"data.vae_decoder: PATH).")


def build_tokenizer(kind: str, source=None, *, scale: float | None = None, device="cpu", dtype=None) -> Tokenizer:
    """kind 'pixels' or 'sd-vae'; for 'sd-vae', `source` is a hub id, a local folder or an AutoencoderKL."""
    if kind == "pixels":
        return PixelTokenizer(1.0 if scale is None else scale, device)
    if kind == "sd-vae":
        if source is None:
            raise ValueError("build_tokenizer('sd-vae'): source is None; give a hub id "
                             "('stabilityai/sd-vae-ft-mse' to encode, 'stabilityai/sd-vae-ft-ema' to decode), "
                             "a local folder or an AutoencoderKL")
        if isinstance(source, (str, Path)):
            vae, name = load_autoencoder(str(source)), str(source)
        else:
            vae, name = source, getattr(source.config, "_name_or_path", None) or type(source).__name__
        return SDVAETokenizer(vae, name, scale, device, dtype)
    raise ValueError(f"build_tokenizer: kind = {kind!r}: must be 'pixels' or 'sd-vae'")
