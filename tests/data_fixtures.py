"""Helpers for the data-layer tests: a small ImageNet-layout folder and a tiny random SD-VAE stand-in."""
import numpy as np
from PIL import Image

CLASSES = ("ant", "bee", "cat")


def make_image_folder(root, per_class=4, corrupt=True, seed=0):
    """root/<class>/<i>.png random RGB images of assorted sizes (+ one corrupt .jpg and one non-image file)."""
    rng = np.random.default_rng(seed)
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            h, w = rng.integers(12, 70, 2)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    if corrupt:
        (root / "bee" / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
        (root / "bee" / "README.txt").write_text("not an image; ignored by extension")
    return root


def tiny_autoencoder(seed=0):
    """A 2-level AutoencoderKL (downsampling 2, 4 latent channels), randomly initialised: a stand-in, not weights."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=4,
                         latent_channels=4).eval()
