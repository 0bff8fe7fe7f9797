"""FLOP accounting for GAT runs (analytic; `tests/test_flops.py` checks it against torch.utils.flop_counter).

Conventions: `*_flops` count 2 FLOPs per multiply-accumulate of the matmuls, attention and patch
convolution (what torch.utils.flop_counter counts and what MFU needs). The paper and DiT quote
"GFLOPs" as multiply-accumulates: `paper_gflops = flops / 2e9` (GAT-XL/2's generator: ~119, like
DiT-XL/2's 118.6). Norms, activations and RoPE are not counted.
"""
from dataclasses import dataclass

from .sizes import swiglu_hidden


def _block_flops(tokens: int, width: int, mlp_ratio: float = 4.0) -> int:
    """One transformer block over `tokens` tokens: qkv, attention scores and values, proj, SwiGLU."""
    hidden = swiglu_hidden(width, mlp_ratio)
    per_token = 2 * (3 * width * width + width * width + 3 * width * hidden) + 2 * 2 * tokens * width
    return tokens * per_token


def generator_flops(depth: int, hidden_size: int, patch_size: int, input_size: int = 32, in_channels: int = 4,
                    z_dim: int = 64, num_levels: int = 4, use_intermediate_heads: bool = True, **_) -> int:
    """Forward FLOPs of G for one image."""
    tokens = (input_size // patch_size) ** 2
    C = hidden_size
    mapping = 2 * (2 * z_dim * C + C * C)
    blocks = depth * (_block_flops(tokens, C) + 2 * C * 4 * C)  # + per-image modulation linear
    heads_used = num_levels if use_intermediate_heads else 1
    heads = heads_used * (2 * C * C + tokens * 2 * C * patch_size * patch_size * in_channels)
    return mapping + blocks + heads


def discriminator_flops(depth: int, hidden_size: int, patch_size: int, input_size: int = 32, in_channels: int = 4,
                        num_levels: int = 4, cmap_dim: int = 2048, **_) -> int:
    """Forward FLOPs of D for one image (all MNG levels jointly), without the REPA projector."""
    patches = (input_size // patch_size) ** 2
    tokens = patches + 1
    C = hidden_size
    embed = patches * 2 * (in_channels * num_levels * patch_size * patch_size) * C
    head = 2 * C * cmap_dim + 2 * 2 * cmap_dim * cmap_dim  # logit head + class-embedding MLP
    return embed + depth * _block_flops(tokens, C) + head


def projector_flops(hidden_size: int, tokens: int, projector_dim: int = 2048, encoder_dim: int = 768) -> int:
    return tokens * 2 * (hidden_size * projector_dim + projector_dim * projector_dim + projector_dim * encoder_dim)


def vit_encoder_flops(depth: int = 12, width: int = 768, patch_size: int = 14, resolution: int = 224) -> int:
    """A plain ViT (the REPA encoder; DINOv2 ViT-B/14 by default) for one image."""
    patches = (resolution // patch_size) ** 2
    tokens = patches + 1
    per_block = tokens * (2 * (4 * width * width + 2 * 4 * width * width) + 2 * 2 * tokens * width)
    return patches * 2 * 3 * patch_size * patch_size * width + depth * per_block


@dataclass
class RunFlops:
    g_forward: int            # per image
    d_forward: int            # per image
    iteration: int            # one D step + one G step over the global batch (no recompute)
    g_paper_gflops: float     # G forward, multiply-accumulates (paper/DiT convention)
    d_paper_gflops: float


def run_flops(cfg, encoder_arch: dict | None = None) -> RunFlops:
    """FLOPs of a run from its RunConfig.

    D step: G forward; D forward + backward (2x) over reals, fakes and the perturbed copies of the
    approximated R1/R2; the REPA projector on reals; the encoder forward on reals. G step: G forward
    + backward; D forward on reals (no grad); D forward + input-gradient backward (1x) on fakes.
    encoder_arch: dict(depth, width, patch_size, resolution) of the REPA encoder (default DINOv2 ViT-B/14).
    """
    mng_on = cfg.method.mng != "off"
    shapes = dict(input_size=cfg.data.latent_size, in_channels=cfg.data.latent_channels)
    g = generator_flops(**cfg.model.generator.arch(), **shapes, z_dim=cfg.model.z_dim,
                        num_levels=cfg.model.num_levels, use_intermediate_heads=mng_on)
    d_arch = cfg.model.discriminator.arch()
    d = discriminator_flops(**d_arch, **shapes, num_levels=cfg.model.num_levels if mng_on else 1,
                            cmap_dim=cfg.model.cmap_dim)
    n_d = 2 + (cfg.method.r1_gamma > 0) + (cfg.method.r2_gamma > 0)
    per_image = g + 3 * d * n_d + 3 * g + d + 2 * d
    if cfg.method.repa:
        arch = encoder_arch or dict(depth=12, width=768, patch_size=14, resolution=cfg.encoder.resolution)
        tokens = (cfg.data.latent_size // d_arch["patch_size"]) ** 2 + 1
        per_image += 3 * projector_flops(d_arch["hidden_size"], tokens, cfg.model.projector_dim, arch["width"])
        per_image += vit_encoder_flops(**arch)
    return RunFlops(g_forward=g, d_forward=d, iteration=per_image * cfg.train.batch_size,
                    g_paper_gflops=g / 2e9, d_paper_gflops=d / 2e9)
