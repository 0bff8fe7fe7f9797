"""The GAT size table (torch-free, so configs, sweeps and analysis can use it without loading torch).

G and D share names and sizes; they follow DiT: name -> (depth, hidden_size, num_heads), crossed with
patch sizes 2, 4, 8 (official `GAT_models` / `GATD_models`).
"""
GAT_SIZES = {
    "S": (12, 384, 6),
    "B": (12, 768, 12),
    "L": (24, 1024, 16),
    "XL": (28, 1152, 16),
}
PATCH_SIZES = (2, 4, 8)
MODEL_NAMES = tuple(f"GAT-{s}/{p}" for s in GAT_SIZES for p in PATCH_SIZES)


def size_letter(name: str) -> str:
    """'GAT-B/2' -> 'B' (the key of GAT_SIZES; no check)."""
    return name.split("/")[0].removeprefix("GAT-")


def parse_model_name(name: str) -> dict:
    """'GAT-B/2' -> dict(depth=12, hidden_size=768, num_heads=12, patch_size=2)."""
    try:
        prefix, patch = name.split("/")
        size = size_letter(name)
        depth, hidden_size, num_heads = GAT_SIZES[size]
        patch_size = int(patch)
        if not prefix.startswith("GAT-") or patch_size not in PATCH_SIZES:
            raise ValueError
    except (ValueError, KeyError, AttributeError):
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}") from None
    return dict(depth=depth, hidden_size=hidden_size, num_heads=num_heads, patch_size=patch_size)


def swiglu_hidden(dim: int, mlp_ratio: float = 4.0) -> int:
    """SwiGLU hidden width as the official code computes it: int(2/3 * int(C * mlp_ratio))."""
    return int(2 / 3 * int(dim * mlp_ratio))


# REPA target encoders (torch-free, for FLOP counts): timm ViT size words -> (depth, width, heads). The DINOv2
# family (vit_{small,base,large,giant}_patch14_dinov2.*) and the other plain timm ViTs; giant's SwiGLU MLP
# costs the same FLOPs as a 4x GELU MLP.
VIT_SIZES = {"tiny": (12, 192, 3), "small": (12, 384, 6), "base": (12, 768, 12), "large": (24, 1024, 16),
             "huge": (32, 1280, 16), "giant": (40, 1536, 24)}
DIGITS_ENCODER = "digits-vit"  # encoder.name of the ViT trained on the digits set (gatscale.networks.digits_nets)
DIGITS_VIT = dict(depth=2, width=64, num_heads=4, patch_size=4, resolution=16)
