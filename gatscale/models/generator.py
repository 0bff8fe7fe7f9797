"""GAT generator (official `models/generator.py`, class `GAT`).

A ViT whose input is a 2-D sin-cos position embedding (StyleGAN's constant input), with all
sample variation entering through a style vector w from a StyleGAN mapping network. Blocks use
scale-and-gate modulation on RMSNorm (no shift). K "RGB" heads tapped every depth/K blocks produce
latents that accumulate like residuals: x_hat_k = sum_{j<=k} head_j(h_{l_j}). MNG feeds all K to D.
"""
import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from gatscale.core.sizes import swiglu_hidden
from .layers import (
    Attention,
    AxialRoPE,
    EqualLinear,
    RMSNorm,
    SwiGLU,
    add_pos_embed,
    fourier_features_2d,
    normalize_2nd_moment,
    unpatchify,
)

MODULATION_GAIN = 0.1  # official init: xavier_uniform(gain=0.1) on every modulation linear, bias 0


def modulate(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1))


class GeneratorBlock(nn.Module):
    """x += g1 * Attn(RMSNorm(x)(1+s1)); x += g2 * SwiGLU(RMSNorm(x)(1+s2)); (s, g) from w."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = True):
        super().__init__()
        self.norm1 = RMSNorm(hidden_size, affine=False)
        self.attn = Attention(hidden_size, num_heads, qk_norm=qk_norm)
        self.norm2 = RMSNorm(hidden_size, affine=False)
        self.mlp = SwiGLU(hidden_size, swiglu_hidden(hidden_size, mlp_ratio))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 4 * hidden_size))

    def forward(self, x: torch.Tensor, w: torch.Tensor, rope: AxialRoPE) -> torch.Tensor:
        scale_attn, gate_attn, scale_mlp, gate_mlp = self.modulation(w).chunk(4, dim=1)
        x = x + gate_attn.unsqueeze(1) * self.attn(modulate(self.norm1(x), scale_attn), rope)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), scale_mlp))
        return x


class RGBHead(nn.Module):
    """Unpatchify head ("RGB layer"): scale-only modulated RMSNorm, then a linear to patches."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm = RMSNorm(hidden_size, affine=False)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, hidden_size))
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.linear(modulate(self.norm(x), self.modulation(w)))


class Generator(nn.Module):
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
        z_dim: int = 64,
        num_levels: int = 4,
        use_intermediate_heads: bool = True,
        input_tokens: str = "sincos",
        pos_embed: str = "trainable",
        qk_norm: bool = True,
        w_avg_beta: float = 0.995,
        grad_checkpointing: bool = False,
    ):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"patch size {patch_size} does not divide latent size {input_size}")
        if depth % num_levels:
            raise ValueError(f"depth {depth} is not divisible by the number of MNG levels {num_levels}")
        if input_tokens not in ("sincos", "fourier"):
            raise ValueError(f"input_tokens must be 'sincos' (official code) or 'fourier' (paper figure), "
                             f"got {input_tokens!r}")
        self.input_size, self.patch_size, self.in_channels = input_size, patch_size, in_channels
        self.hidden_size, self.depth, self.num_heads = hidden_size, depth, num_heads
        self.num_classes, self.z_dim, self.num_levels = num_classes, z_dim, num_levels
        self.use_intermediate_heads = use_intermediate_heads
        self.w_avg_beta = w_avg_beta
        self.grad_checkpointing = grad_checkpointing
        grid = input_size // patch_size

        # Input tokens: the sin-cos PE (official code; trained or frozen) or the paper figure's Fourier PE.
        if input_tokens == "sincos":
            add_pos_embed(self, hidden_size, grid, pos_embed)
        axis = torch.linspace(-1, 1, grid)
        grid_xy = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).view(1, -1, 2)  # (1, grid*grid, 2)
        self.register_buffer("grid_xy", grid_xy, persistent=False)
        self.fourier = fourier_features_2d(hidden_size, grid) if input_tokens == "fourier" else None

        # Mapping network: [norm(embed(y)), norm(z)] -> EqualLinear -> SiLU -> EqualLinear (lr_mult 0.01).
        self.class_embed = nn.Embedding(num_classes, z_dim)
        self.mapping = nn.Sequential(
            EqualLinear(2 * z_dim, hidden_size, lr_mult=0.01), nn.SiLU(),
            EqualLinear(hidden_size, hidden_size, lr_mult=0.01),
        )
        self.rope = AxialRoPE(hidden_size // num_heads, grid)
        self.blocks = nn.ModuleList(GeneratorBlock(hidden_size, num_heads, mlp_ratio, qk_norm) for _ in range(depth))
        every = depth // num_levels
        self.tap_layers = [(k + 1) * every - 1 for k in range(num_levels)]
        self.heads = nn.ModuleList(RGBHead(hidden_size, patch_size, in_channels) for _ in range(num_levels))
        # Per-class running mean of w, for truncation (updated by the train step's G step only).
        self.register_buffer("w_avg", torch.zeros(num_classes, hidden_size))
        self.initialize_weights()

    def initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear) and m is not self.fourier:
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.class_embed.weight, std=0.02)
        for mod in [b.modulation[-1] for b in self.blocks] + [h.modulation[-1] for h in self.heads]:
            nn.init.xavier_uniform_(mod.weight, gain=MODULATION_GAIN)
            nn.init.zeros_(mod.bias)

    def mapping_network(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = torch.cat([normalize_2nd_moment(self.class_embed(y)), normalize_2nd_moment(z)], dim=1)
        return self.mapping(c)

    @torch.no_grad()
    def w_class_sums(self, w: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-class sums (num_classes, hidden) and counts (num_classes,) of w over a batch, in w_avg's dtype."""
        sums = torch.zeros_like(self.w_avg).index_add_(0, y, w.to(self.w_avg.dtype))
        return sums, torch.bincount(y, minlength=self.num_classes).to(sums.dtype)

    @torch.no_grad()
    def update_w_avg(self, sums: torch.Tensor, counts: torch.Tensor):
        """w_avg[c] <- lerp(sums[c] / counts[c], w_avg[c], beta) for the classes in the batch (counts[c] > 0).

        Vectorised version of the official per-label loop, which runs in G's forward on each rank's batch; the
        train step passes the class sums of the global batch (all-reduced), so every rank holds the same mean.
        """
        present = counts > 0
        mean = sums / counts.clamp(min=1).unsqueeze(1)
        self.w_avg.copy_(torch.where(present.unsqueeze(1), mean.lerp(self.w_avg, self.w_avg_beta), self.w_avg))

    def input_tokens(self, batch_size: int) -> torch.Tensor:
        tokens = self.pos_embed if self.fourier is None else torch.sin(self.fourier(self.grid_xy))
        return tokens.expand(batch_size, -1, -1)

    def forward(
        self,
        z: torch.Tensor,
        y: torch.Tensor,
        truncation_psi: float = 0.0,
        return_levels: bool = False,
    ) -> torch.Tensor:
        """Latents (B, C, H, W), or all K accumulated levels (K, B, C, H, W) with return_levels.

        truncation_psi follows the official convention: 0 = no truncation, 1 = the class mean.
        With use_intermediate_heads=False (MNG off) only the last head produces the output.
        """
        w = self.mapping_network(z, y)
        if truncation_psi != 0.0:
            w = w.lerp(self.w_avg[y].to(w.dtype), truncation_psi)

        x = self.input_tokens(z.shape[0])
        taps = {}
        for i, block in enumerate(self.blocks):
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, w, self.rope, use_reentrant=False)
            else:
                x = block(x, w, self.rope)
            if i in self.tap_layers:
                taps[i] = x

        if not self.use_intermediate_heads:
            out = unpatchify(self.heads[-1](taps[self.tap_layers[-1]], w), self.patch_size, self.in_channels)
            return out.unsqueeze(0) if return_levels else out
        levels, accum = [], 0
        for layer, head in zip(self.tap_layers, self.heads):
            accum = accum + unpatchify(head(taps[layer], w), self.patch_size, self.in_channels)
            levels.append(accum)
        return torch.stack(levels) if return_levels else levels[-1]
