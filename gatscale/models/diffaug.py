"""DiffAugment on latents with re-usable parameters (official `losses/diffaug.py`).

Each op draws per-sample parameters once; the same parameters can be applied again, to the other
MNG levels of a sample (drawn on the final level, as the official code) and to the perturbed copies
of the approximated R1/R2 penalties. Ops broadcast over leading dimensions, so one call handles a
(K, B, C, H, W) stack of levels with per-sample (B) parameters.

Official probabilities and ranges: color with p=0.5 (brightness +U(-0.5,0.5), saturation x2U around
the channel mean, contrast x(U+0.5) around the global mean, both means taken from the input the
parameters were drawn on); translation up to 1/8 of the size with zero padding; cutout of a half-size
square; horizontal flip with p=0.4.
"""
import torch
import torch.nn.functional as F

COLOR_P = 0.5
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5
FLIP_P = 0.4


def draw_params(x: torch.Tensor, policy: list[str]) -> dict:
    """Per-sample parameters of each op in `policy`, drawn for x of shape (B, C, H, W)."""
    B, _, H, W = x.shape
    dev, dt = x.device, x.dtype
    params = {}
    for op in policy:
        if op == "color":
            params[op] = dict(
                mask=(torch.rand(B, device=dev) < COLOR_P).view(B, 1, 1, 1),
                brightness=torch.rand(B, 1, 1, 1, device=dev, dtype=dt),
                saturation=torch.rand(B, 1, 1, 1, device=dev, dtype=dt),
                contrast=torch.rand(B, 1, 1, 1, device=dev, dtype=dt),
                channel_mean=x.mean(dim=1, keepdim=True),
                global_mean=x.mean(dim=(1, 2, 3), keepdim=True),
            )
        elif op == "translation":
            sh, sw = int(H * TRANSLATION_RATIO + 0.5), int(W * TRANSLATION_RATIO + 0.5)
            params[op] = dict(
                dy=torch.randint(-sh, sh + 1, (B, 1), device=dev),
                dx=torch.randint(-sw, sw + 1, (B, 1), device=dev),
                size=(H, W),
            )
        elif op == "cutout":
            ch, cw = int(H * CUTOUT_RATIO + 0.5), int(W * CUTOUT_RATIO + 0.5)
            params[op] = dict(
                cy=torch.randint(0, H + (1 - ch % 2), (B, 1), device=dev),
                cx=torch.randint(0, W + (1 - cw % 2), (B, 1), device=dev),
                cut=(ch, cw), size=(H, W),
            )
        elif op == "flip":
            params[op] = dict(mask=(torch.rand(B, device=dev) < FLIP_P).view(B, 1, 1, 1))
        else:
            raise ValueError(f"unknown DiffAugment op {op!r}")
    return params


def _color(x, p):
    aug = x + (p["brightness"] - 0.5)
    aug = (aug - p["channel_mean"]) * (p["saturation"] * 2) + p["channel_mean"]
    aug = (aug - p["global_mean"]) * (p["contrast"] + 0.5) + p["global_mean"]
    return torch.where(p["mask"], aug, x)


def _rescale(offset, drawn_size, size):
    # Official re-use rule when the size differs (raw images for REPA): offset * drawn // new.
    # Note it divides where a rescale would multiply, so a 32->224 translation becomes 0 or -1 px;
    # kept as released (docs/method.md, DiffAugment quirks).
    return offset if drawn_size == size else offset * drawn_size // size


def _translation(x, p):
    H, W = x.shape[-2:]
    dy, dx = _rescale(p["dy"], p["size"][0], H), _rescale(p["dx"], p["size"][1], W)
    B = dy.shape[0]
    rows = (torch.arange(H, device=x.device) + dy + 1).clamp(0, H + 1)  # (B, H) into the zero-padded input
    cols = (torch.arange(W, device=x.device) + dx + 1).clamp(0, W + 1)  # (B, W)
    padded = F.pad(x, (1, 1, 1, 1))
    lead = padded.shape[:-2]
    rows = rows.view(B, 1, H, 1).expand(*lead, H, W + 2)
    out = padded.gather(-2, rows)
    cols = cols.view(B, 1, 1, W).expand(*lead, H, W)
    return out.gather(-1, cols)


def _cutout(x, p):
    H, W = x.shape[-2:]
    ch, cw = (_rescale(c, s, n) for c, s, n in zip(p["cut"], p["size"], (H, W)))
    cy, cx = _rescale(p["cy"], p["size"][0], H), _rescale(p["cx"], p["size"][1], W)
    r, c = torch.arange(H, device=x.device), torch.arange(W, device=x.device)
    in_rows = (r >= cy - ch // 2) & (r < cy - ch // 2 + ch)   # (B, H)
    in_cols = (c >= cx - cw // 2) & (c < cx - cw // 2 + cw)   # (B, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


def _flip(x, p):
    return torch.where(p["mask"], x.flip(-1), x)


OPS = {"color": _color, "translation": _translation, "cutout": _cutout, "flip": _flip}


def diff_augment(x: torch.Tensor, policy: list[str], params: dict | None = None, draw_on: torch.Tensor | None = None):
    """Augment x (..., B, C, H, W). Draws parameters on `draw_on` (default x) unless given.

    Returns (augmented x, params). Only the ops in `policy` are applied, in order.
    """
    if params is None:
        params = draw_params(x if draw_on is None else draw_on, policy)
    for op in policy:
        x = OPS[op](x, params[op])
    return x, params


def parse_policy(policy: str) -> list[str]:
    return [p for p in policy.split(",") if p]
