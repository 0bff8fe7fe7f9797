"""Per-block LPIPS contribution (paper Fig. 4b) and the PCA view of block features."""
import torch

from eval_fixtures import tiny_generator
from gatscale.data.vae import build_tokenizer
from gatscale.eval.lpips_contribution import SkippedBlock, block_contributions, block_removed, build_lpips
from gatscale.eval.pca import block_features, pca_grid, pca_rgb


def test_lpips_contribution_is_zero_for_a_gated_off_block_and_positive_for_the_others():
    G = tiny_generator()
    with torch.no_grad():
        G.blocks[1].modulation[-1].weight.zero_()   # scale = gate = 0: the block adds nothing
        G.blocks[1].modulation[-1].bias.zero_()
    lpips_model, backbone = build_lpips("alex", pretrained_backbone=False)
    values = block_contributions(G, build_tokenizer("pixels"), lpips_model, num_samples=12, batch_size=6)
    assert backbone == "alex-random-stand-in"
    assert len(values) == 4
    assert values[1] < 1e-9
    assert min(values[0], values[2], values[3]) > 1e-6


def test_block_removed_swaps_in_a_pass_through_and_restores_the_block():
    G = tiny_generator()
    original = G.blocks[2]
    with block_removed(G, 2):
        assert isinstance(G.blocks[2], SkippedBlock)
    assert G.blocks[2] is original


def test_pca_view_has_one_row_of_images_and_one_per_block():
    G = tiny_generator()
    latents, features = block_features(G, [0, 3], num_samples=4)
    assert set(features) == {0, 3} and features[0].shape == (4, 64, 64)  # 8x8 tokens, width 64
    maps = pca_rgb(features[0])
    assert maps.shape == (4, 3, 8, 8) and 0 <= maps.min() and maps.max() <= 1
    grid = pca_grid(build_tokenizer("pixels").decode(latents), features, cell=16)
    assert grid.shape == (3 * 16, 4 * 16, 3) and grid.dtype.name == "uint8"
