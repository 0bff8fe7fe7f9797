"""Layers shared by the GAT generator and discriminator.

Follows the official GAT code (github.com/hse1032/GAT, `models/custom_layers.py`,
`models/pos_embed.py`, `models/swiglu_ffn.py`): equalised linear with an LR multiplier,
attention with per-head q/k RMSNorm and 2-D axial RoPE (EVA-02 style) through
`F.scaled_dot_product_attention`, SwiGLU MLP, and the 2-D sin-cos positional embedding (declared frozen
there, trained by its `train.py`: `add_pos_embed`).
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """StyleGAN's pixel norm: x / sqrt(mean(x^2))."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class RMSNorm(nn.Module):
    """RMSNorm computed in float32 (safe under bf16 autocast), output in the input dtype."""

    def __init__(self, dim: int, affine: bool = True, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        return F.rms_norm(x.float(), (x.shape[-1],), w, self.eps).to(x.dtype)


class EqualLinear(nn.Module):
    """Linear layer whose weight and bias are scaled by `lr_mult` in the forward pass.

    StyleGAN's mapping-network trick: the stored weight is initialised with gain 1/lr_mult, so
    the effective weight starts xavier-sized while Adam's step on it is scaled by lr_mult.
    """

    def __init__(self, in_dim: int, out_dim: int, lr_mult: float = 1.0):
        super().__init__()
        self.lr_mult = lr_mult
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        nn.init.xavier_uniform_(self.weight, gain=1.0 / lr_mult)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.lr_mult, self.bias * self.lr_mult)


class AxialRoPE(nn.Module):
    """2-D axial rotary embedding (EVA-02 `VisionRotaryEmbeddingFast`, 'lang' frequencies).

    The first half of each head's channels rotates with the token's row, the second half with
    its column; channel pairs are interleaved. The first `num_prefix_tokens` tokens (the
    discriminator's [cls]) are left unrotated.
    """

    def __init__(self, head_dim: int, grid_size: int, num_prefix_tokens: int = 0, theta: float = 1e4):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"2-D RoPE needs head_dim divisible by 4, got {head_dim}")
        axis_dim = head_dim // 2
        freqs = 1.0 / theta ** (torch.arange(0, axis_dim, 2).float() / axis_dim)
        pos = torch.arange(grid_size).float()
        axis = torch.outer(pos, freqs).repeat_interleave(2, dim=-1)  # (grid, axis_dim)
        rows = axis[:, None, :].expand(grid_size, grid_size, axis_dim)
        cols = axis[None, :, :].expand(grid_size, grid_size, axis_dim)
        angles = torch.cat([rows, cols], dim=-1).reshape(grid_size * grid_size, head_dim)
        angles = torch.cat([torch.zeros(num_prefix_tokens, head_dim), angles])
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
        rotated = torch.stack((-x2, x1), dim=-1).flatten(-2)
        return x * self.cos.to(x.dtype) + rotated * self.sin.to(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention: qkv with bias, q/k RMSNorm per head, RoPE, SDPA."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        # The official code uses nn.RMSNorm(head_dim) with its default eps (float32 machine eps).
        eps = torch.finfo(torch.float32).eps
        self.q_norm = RMSNorm(self.head_dim, eps=eps) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim, eps=eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: AxialRoPE | None = None) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope(q), rope(k)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class SwiGLU(nn.Module):
    """SwiGLU MLP (DINOv2 `SwiGLUFFN`): w3(silu(x W1) * x W2), hidden = int(2/3 * 4C)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


def sincos_pos_embed_2d(embed_dim: int, grid_size: int) -> torch.Tensor:
    """Fixed 2-D sin-cos positional embedding (MAE/DiT), shape (grid_size**2, embed_dim)."""
    if embed_dim % 4:
        raise ValueError(f"sin-cos position embedding needs a width divisible by 4, got {embed_dim}")

    def embed_1d(dim: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid_w, grid_h = np.meshgrid(np.arange(grid_size, dtype=np.float32), np.arange(grid_size, dtype=np.float32))
    # As in MAE/DiT, the first half encodes the meshgrid's first output (the column index).
    emb = np.concatenate([embed_1d(embed_dim // 2, grid_w), embed_1d(embed_dim // 2, grid_h)], axis=1)
    return torch.tensor(emb, dtype=torch.float32)  # respects a torch.device(...) context (meta)


POS_EMBED_MODES = ("trainable", "frozen")


def add_pos_embed(module: nn.Module, embed_dim: int, grid_size: int, mode: str = "trainable"):
    """Give `module` a 2-D sin-cos `pos_embed` (1, grid_size**2, embed_dim), initialised as MAE/DiT.

    'trainable': an nn.Parameter, what the released code runs. Its modules declare the embedding
    `requires_grad=False`, but `train.py` calls `requires_grad_(True)` on the whole G and D every step and
    AdamW holds every parameter, so it trains from step 1 (docs/method.md, positional embeddings). Here it is a
    parameter from the start, so DDP all-reduces its gradient like any other (the released code's DDP wrapper was
    built while it was frozen: its ranks' embeddings drift apart).
    'frozen': a non-persistent buffer (what the official modules declare), which no `requires_grad_` can turn on.
    """
    if mode not in POS_EMBED_MODES:
        raise ValueError(f"pos_embed mode must be one of {', '.join(POS_EMBED_MODES)}, got {mode!r}")
    initial = sincos_pos_embed_2d(embed_dim, grid_size)[None]
    if mode == "frozen":
        module.register_buffer("pos_embed", initial, persistent=False)
        return
    module.pos_embed = nn.Parameter(initial)


def fourier_features_2d(embed_dim: int, grid_size: int, seed: int = 0) -> nn.Linear:
    """The paper figure's 'Fourier PE' input (disabled in the official code): sin(Linear(xy))."""
    lin = nn.Linear(2, embed_dim)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        lin.weight.uniform_(-math.sqrt(9 / 2), math.sqrt(9 / 2), generator=g)
    return lin


def unpatchify(x: torch.Tensor, patch_size: int, channels: int) -> torch.Tensor:
    """(B, T, p*p*C) tokens -> (B, C, H, W) latents."""
    B, T, _ = x.shape
    h = w = math.isqrt(T)
    x = x.reshape(B, h, w, patch_size, patch_size, channels)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(B, channels, h * patch_size, w * patch_size)
