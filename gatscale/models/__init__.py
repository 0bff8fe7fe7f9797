"""The GAT model family, named as the paper writes it ('GAT-S/2' ... 'GAT-XL/8').

Sizes are data: one table of (depth, width, heads) shared by G and D (`gatscale/core/sizes.py`), crossed
with patch sizes 2, 4, 8. `build_generator` / `build_discriminator` take a name and overrides of
any constructor argument (tiny test configs override depth/hidden_size/num_heads).
"""
import torch.nn as nn

from gatscale.core.sizes import GAT_SIZES, MODEL_NAMES, PATCH_SIZES, parse_model_name
from .discriminator import Discriminator
from .generator import Generator


def build_generator(name: str, **overrides) -> Generator:
    return Generator(**{**parse_model_name(name), **overrides})


def build_discriminator(name: str, **overrides) -> Discriminator:
    return Discriminator(**{**parse_model_name(name), **overrides})


def count_trainable(module) -> int:
    """Parameters the optimiser updates; with model.pos_embed: trainable, the sin-cos embeddings too."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_official(module) -> int:
    """The official code's count of "trainable parameters": all but the sin-cos positional embeddings.

    Its modules declare `pos_embed` with requires_grad=False, so a count at construction leaves them out,
    although its train.py then trains them (docs/method.md, positional embeddings). G's x_embedder, whose output the
    official forward multiplies by 0, is never built here. The paper's "602M" for GAT-XL/2 counts both.
    """
    pos_embed = getattr(module, "pos_embed", None)
    extra = pos_embed.numel() if isinstance(pos_embed, nn.Parameter) and pos_embed.requires_grad else 0
    return count_trainable(module) - extra


def generator_from_config(cfg) -> Generator:
    """G for a RunConfig (sizes, overrides, data shapes, MNG heads)."""
    return Generator(
        **cfg.model.generator.arch(), input_size=cfg.data.latent_size, in_channels=cfg.data.latent_channels,
        num_classes=cfg.data.num_classes, z_dim=cfg.model.z_dim, num_levels=cfg.model.num_levels,
        use_intermediate_heads=cfg.method.mng != "off", input_tokens=cfg.model.input_tokens,
        pos_embed=cfg.model.pos_embed, qk_norm=cfg.model.qk_norm, grad_checkpointing=cfg.model.grad_checkpointing,
    )


def discriminator_from_config(cfg, encoder_dim: int) -> Discriminator:
    """D for a RunConfig; it sees all K levels with MNG on, only the final output with MNG off."""
    return Discriminator(
        **cfg.model.discriminator.arch(), input_size=cfg.data.latent_size, in_channels=cfg.data.latent_channels,
        num_classes=cfg.data.num_classes, num_levels=cfg.model.num_levels if cfg.method.mng != "off" else 1,
        cmap_dim=cfg.model.cmap_dim, encoder_dim=encoder_dim if cfg.method.repa else 0,
        projector_dim=cfg.model.projector_dim, pos_embed=cfg.model.pos_embed, qk_norm=cfg.model.qk_norm,
        grad_checkpointing=cfg.model.grad_checkpointing,
    )


__all__ = [
    "Generator", "Discriminator", "GAT_SIZES", "PATCH_SIZES", "MODEL_NAMES",
    "parse_model_name", "build_generator", "build_discriminator", "count_trainable", "count_official",
    "generator_from_config", "discriminator_from_config",
]
