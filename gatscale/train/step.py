"""One GAT training iteration and the state it updates (models, EMA, optimisers, objective).

The trainer loop and `benchmarks/train_step.py` both call `train_step`, so what the benchmark times
is exactly what training runs. Per iteration (official train.py): a D step, then a G step on the
same real batch (x, y) and the same z, then the EMA of G.
"""
import contextlib
import copy
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from ..config import RunConfig, effective_lr
from ..encoders import build_encoder
from ..models import discriminator_from_config, generator_from_config
from ..objective import GATObjective


@dataclass
class GANState:
    cfg: RunConfig
    G: torch.nn.Module          # raw modules (state dicts, EMA, clipping)
    D: torch.nn.Module
    G_ema: torch.nn.Module
    G_train: torch.nn.Module    # what the G step calls (DDP / compiled wrapper of G)
    D_train: torch.nn.Module    # what the D step calls (DDP / compiled wrapper of D)
    G_fwd: torch.nn.Module      # G without gradient sync (D step, no grad)
    D_fwd: torch.nn.Module      # D without gradient sync (G step: D frozen)
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    objective: GATObjective
    lr_g: float
    lr_d: float
    autocast: object            # a zero-argument context-manager factory

    @property
    def encoder(self):
        return self.objective.encoder


def autocast_factory(cfg: RunConfig, device: torch.device):
    """bf16 autocast on CUDA (precision auto/bf16), float32 elsewhere unless bf16 is asked for."""
    use_bf16 = cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def build_state(cfg: RunConfig, device: torch.device, distributed: bool = False) -> GANState:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.train.tf32
        torch.backends.cudnn.allow_tf32 = cfg.train.tf32
    torch.manual_seed(cfg.train.seed)  # identical init on every rank
    encoder = build_encoder(cfg.encoder).to(device) if cfg.method.repa else None
    G = generator_from_config(cfg).to(device)
    D = discriminator_from_config(cfg, encoder.dim if encoder else 0).to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    lr_g, lr_d = effective_lr(cfg, "generator"), effective_lr(cfg, "discriminator")
    o = cfg.optim
    # Fused AdamW on CUDA and CPU alike: one kernel for all tensors (on CPU the per-tensor loop costs ~6x more,
    # most of a tiny model's step).
    opt_g = torch.optim.AdamW(G.parameters(), lr=lr_g, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=True)
    opt_d = torch.optim.AdamW(D.parameters(), lr=lr_d, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=True)
    objective = GATObjective.from_config(cfg, encoder, d_grid_size=D.input_size // D.patch_size)

    # DDP: D is trained through its wrapper in the D step; in the G step D is frozen and called
    # directly (no gradient sync needed). G's unused heads with MNG off need find_unused_parameters.
    G_train, D_train = G, D
    if distributed:
        ids = [device.index] if device.type == "cuda" else None
        G_train = DDP(G, device_ids=ids, broadcast_buffers=False, find_unused_parameters=cfg.method.mng == "off")
        D_train = DDP(D, device_ids=ids, broadcast_buffers=False)
    G_fwd, D_fwd = G, D
    if cfg.model.compile:
        G_train, D_train = torch.compile(G_train), torch.compile(D_train)
        G_fwd, D_fwd = torch.compile(G), torch.compile(D)
    return GANState(cfg, G, D, G_ema, G_train, D_train, G_fwd, D_fwd, opt_g, opt_d, objective, lr_g, lr_d,
                    autocast_factory(cfg, device))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float):
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers (w_avg) are copied."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def block_groups(blocks: torch.nn.ModuleList, num_groups: int) -> list[list[torch.nn.Parameter]]:
    """Blocks split into `num_groups` consecutive groups (the MNG tap intervals), as parameter lists."""
    per = max(len(blocks) // num_groups, 1)
    groups = [blocks[i * per:(i + 1) * per] if i < num_groups - 1 else blocks[i * per:] for i in range(num_groups)]
    return [[p for b in g for p in b.parameters()] for g in groups]


def grad_norm(params) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _optimizer_step(net, opt, name: str, cfg: RunConfig, group_norms: bool) -> dict[str, torch.Tensor]:
    """Gradient norms (global, and per block group when asked), clipping, the AdamW step."""
    norms = {}
    if group_norms:
        for i, group in enumerate(block_groups(net.blocks, cfg.model.num_levels)):
            norms[f"grad_norm/{name}_group{i}"] = grad_norm(group)
    clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
    norms[f"grad_norm/{name}"] = torch.nn.utils.clip_grad_norm_(net.parameters(), clip, foreach=True)  # no host sync
    opt.step()
    opt.zero_grad(set_to_none=True)
    return norms


def train_step(s: GANState, x, y, z, raw_images=None, group_norms: bool = False) -> dict[str, torch.Tensor]:
    """One D step and one G step; returns detached device tensors (losses, logits, gradient norms)."""
    s.D.requires_grad_(True)
    with s.autocast():
        loss_d, stats = s.objective.discriminator_loss(s.G_fwd, s.D_train, x, y, z, raw_images)
    loss_d.backward()
    stats.update(_optimizer_step(s.D, s.opt_d, "d", s.cfg, group_norms))
    s.D.requires_grad_(False)

    with s.autocast():
        loss_g, g_stats = s.objective.generator_loss(s.G_train, s.D_fwd, x, y, z)
    loss_g.backward()
    stats.update(g_stats)
    stats.update(_optimizer_step(s.G, s.opt_g, "g", s.cfg, group_norms))
    update_ema(s.G_ema, s.G, s.cfg.optim.ema_decay)
    return stats
