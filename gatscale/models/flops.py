"""FLOP accounting for GAT runs (analytic; `tests/test_models_flops.py` checks it against torch.utils.flop_counter).

Conventions: `*_flops` count 2 FLOPs per multiply-accumulate of the matmuls, attention and patch
convolution (what torch.utils.flop_counter counts and what MFU needs). The paper and DiT quote
"GFLOPs" as multiply-accumulates: `paper_gflops = flops / 2e9` (GAT-XL/2's generator: ~119, like
DiT-XL/2's 118.6). Norms, activations and RoPE are not counted.
"""
import re
from dataclasses import dataclass

from gatscale.core.sizes import DIGITS_ENCODER, DIGITS_VIT, VIT_SIZES, swiglu_hidden


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


def vit_encoder_flops(depth: int = 12, width: int = 768, patch_size: int = 14, resolution: int = 224,
                      mlp_ratio: float = 4.0) -> int:
    """A plain ViT (the REPA encoder; DINOv2 ViT-B/14 by default) for one image."""
    patches = (resolution // patch_size) ** 2
    tokens = patches + 1
    hidden = int(width * mlp_ratio)
    per_block = tokens * (2 * (4 * width * width + 2 * hidden * width) + 2 * 2 * tokens * width)
    return patches * 2 * 3 * patch_size * patch_size * width + depth * per_block


def encoder_arch(encoder) -> dict:
    """dict(depth, width, patch_size, resolution, mlp_ratio) of the REPA encoder an EncoderConfig names: the
    digits encoder, or a timm ViT 'vit_<size>_patch<N>...' (DINOv2 or a stand-in) with its kwargs overrides."""
    if encoder.name == DIGITS_ENCODER:
        return dict(depth=DIGITS_VIT["depth"], width=DIGITS_VIT["width"], patch_size=DIGITS_VIT["patch_size"],
                    resolution=DIGITS_VIT["resolution"], mlp_ratio=4.0)
    m = re.match(r"vit_([a-z]+)_patch(\d+)", encoder.name)
    if not m or m.group(1) not in VIT_SIZES:
        raise ValueError(f"encoder.name = {encoder.name!r}: cannot count its FLOPs; expected {DIGITS_ENCODER!r} or a "
                         f"timm ViT 'vit_<size>_patch<N>...' with size one of {', '.join(VIT_SIZES)}")
    depth, width, _ = VIT_SIZES[m.group(1)]
    kw = encoder.kwargs
    return dict(depth=kw.get("depth", depth), width=kw.get("embed_dim", width),
                patch_size=kw.get("patch_size", int(m.group(2))), resolution=encoder.resolution,
                mlp_ratio=kw.get("mlp_ratio", 4.0))


@dataclass
class RunFlops:
    g_forward: int            # per image
    d_forward: int            # per image
    iteration: int            # one D step + one G step over the global batch (no recompute)
    g_paper_gflops: float     # G forward, multiply-accumulates (paper/DiT convention)
    d_paper_gflops: float


def run_flops(cfg) -> RunFlops:
    """FLOPs of a run from its RunConfig.

    D step: G forward; D forward + backward (2x) over reals, fakes and the perturbed copies of the
    approximated R1/R2; the REPA projector on reals; the encoder forward on reals. G step: G forward
    + backward; D forward on reals (no grad); D forward + input-gradient backward (1x) on fakes.
    The REPA encoder and projector are those of cfg.encoder (`encoder_arch`); none when method.repa is off.
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
        arch = encoder_arch(cfg.encoder)
        tokens = (cfg.data.latent_size // d_arch["patch_size"]) ** 2 + 1
        per_image += 3 * projector_flops(d_arch["hidden_size"], tokens, cfg.model.projector_dim, arch["width"])
        per_image += vit_encoder_flops(**arch)
    return RunFlops(g_forward=g, d_forward=d, iteration=per_image * cfg.train.batch_size,
                    g_paper_gflops=g / 2e9, d_paper_gflops=d / 2e9)
