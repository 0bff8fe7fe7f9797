"""GAT discriminator (official `models/discriminator.py`, class `GATD`).

One ViT forward over all K MNG levels jointly: the levels are concatenated on channels, patch
embedded, given a sin-cos PE (trained, as the released loop does, or frozen) and a learnable [cls]
token, then pre-norm blocks with LayerScale 0.1. The logit is a projection-discriminator head:
<Linear(RMSNorm(h_cls)), MLP(e_y)>. A REPA projector maps the last block's tokens to the vision encoder's feature width.
"""
import torch
import torch.nn as nn
from timm.layers import PatchEmbed
from torch.utils.checkpoint import checkpoint

from gatscale.core.sizes import swiglu_hidden
from .layers import Attention, AxialRoPE, EqualLinear, RMSNorm, SwiGLU, add_pos_embed

LAYERSCALE_INIT = 0.1


class DiscriminatorBlock(nn.Module):
    """x += ls1 * Attn(RMSNorm(x)); x += ls2 * SwiGLU(RMSNorm(x)). No class conditioning."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = True):
        super().__init__()
        self.norm1 = RMSNorm(hidden_size)
        self.attn = Attention(hidden_size, num_heads, qk_norm=qk_norm)
        self.norm2 = RMSNorm(hidden_size)
        self.mlp = SwiGLU(hidden_size, swiglu_hidden(hidden_size, mlp_ratio))
        self.ls_attn = nn.Parameter(torch.full((hidden_size,), LAYERSCALE_INIT))
        self.ls_mlp = nn.Parameter(torch.full((hidden_size,), LAYERSCALE_INIT))

    def forward(self, x: torch.Tensor, rope: AxialRoPE) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope) * self.ls_attn
        x = x + self.mlp(self.norm2(x)) * self.ls_mlp
        return x


def repa_projector(hidden_size: int, projector_dim: int, encoder_dim: int) -> nn.Sequential:
    """REPA's `build_mlp`: Linear -> SiLU -> Linear -> SiLU -> Linear."""
    return nn.Sequential(
        nn.Linear(hidden_size, projector_dim), nn.SiLU(),
        nn.Linear(projector_dim, projector_dim), nn.SiLU(),
        nn.Linear(projector_dim, encoder_dim),
    )


class Discriminator(nn.Module):
    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        num_levels: int = 4,
        cmap_dim: int = 2048,
        encoder_dim: int = 768,
        projector_dim: int = 2048,
        pos_embed: str = "trainable",
        qk_norm: bool = True,
        grad_checkpointing: bool = False,
    ):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"patch size {patch_size} does not divide latent size {input_size}")
        self.input_size, self.patch_size, self.in_channels = input_size, patch_size, in_channels
        self.hidden_size, self.depth, self.num_heads = hidden_size, depth, num_heads
        self.num_classes, self.num_levels, self.encoder_dim = num_classes, num_levels, encoder_dim
        self.grad_checkpointing = grad_checkpointing
        grid = input_size // patch_size

        self.patch_embed = PatchEmbed(input_size, patch_size, in_channels * num_levels, hidden_size, bias=True)
        add_pos_embed(self, hidden_size, grid, pos_embed)
        self.cls_token = nn.Parameter(torch.randn(1, 1, hidden_size) * 0.02)
        self.rope = AxialRoPE(hidden_size // num_heads, grid, num_prefix_tokens=1)
        self.blocks = nn.ModuleList(DiscriminatorBlock(hidden_size, num_heads, mlp_ratio, qk_norm)
                                    for _ in range(depth))
        self.head_norm = RMSNorm(hidden_size)
        self.head = nn.Linear(hidden_size, cmap_dim)
        # Class embedding for the projection head: Embedding -> EqualLinear -> SiLU -> EqualLinear (lr_mult 0.01).
        self.class_embed = nn.Embedding(num_classes, cmap_dim)
        self.class_mapping = nn.Sequential(
            EqualLinear(cmap_dim, cmap_dim, lr_mult=0.01), nn.SiLU(), EqualLinear(cmap_dim, cmap_dim, lr_mult=0.01),
        )
        self.projector = repa_projector(hidden_size, projector_dim, encoder_dim) if encoder_dim > 0 else None
        self.initialize_weights()

    def initialize_weights(self):
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(m.weight.view(m.weight.shape[0], -1))
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.class_embed.weight, std=0.02)

    def forward(self, levels: torch.Tensor, y: torch.Tensor, features_for: slice | None = None):
        """levels: (K, B, C, H, W) MNG levels, early to final. Returns logits (B,).

        With `features_for` (a slice of the batch), also the REPA projections of those samples'
        [cls] token (b, d) and patch tokens (b, N, d): the projector runs only where REPA needs it.
        """
        if levels.shape[0] != self.num_levels:
            raise ValueError(f"discriminator built for {self.num_levels} levels got {levels.shape[0]}")
        x = torch.cat(levels.unbind(0), dim=1)
        x = self.patch_embed(x) + self.pos_embed.to(x.dtype)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, self.rope, use_reentrant=False)
            else:
                x = block(x, self.rope)
        class_vec = self.class_mapping(self.class_embed(y))
        logits = (self.head(self.head_norm(x[:, 0])) * class_vec).sum(-1)
        if features_for is None:
            return logits
        if self.projector is None:
            raise ValueError("REPA features need a projector (built with encoder_dim > 0)")
        feats = self.projector(x[features_for])
        return logits, feats[:, 0], feats[:, 1:]
