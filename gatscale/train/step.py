"""One GAT training iteration and the state it updates (models, EMA, optimisers, objective).

The trainer loop and `benchmarks/train_step.py` both call `train_step`, so what the benchmark times
is exactly what training runs. Per iteration (official train.py): a D step, then a G step on the
same real batch (x, y) and the same z (the G step also updates G's per-class w average), then the EMA of G.
"""
import contextlib
import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from gatscale.core.config import RunConfig, effective_lr
from gatscale.networks.encoders import build_encoder
from gatscale.networks.objective import GATObjective
from ..models import discriminator_from_config, generator_from_config
from .checkpoint import CheckpointIO


@dataclass
class TrainState:
    """What an iteration reads and updates. Two handles per trained network: the raw module (state dicts, EMA,
    clipping, w_avg) and the wrapped one the losses call (DDP and/or torch.compile; the raw module when neither)."""
    cfg: RunConfig
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    G_wrapped: torch.nn.Module
    D_wrapped: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    objective: GATObjective
    lr_g: float
    lr_d: float
    autocast: object            # a zero-argument context-manager factory
    distributed: bool = False   # DDP: w_avg's class sums are all-reduced

    @property
    def encoder(self):
        return self.objective.encoder

    @property
    def checkpoint(self) -> CheckpointIO:
        """What a checkpoint holds besides the step and the config: the raw modules' and optimisers' state."""
        return CheckpointIO(generator=self.G, discriminator=self.D, ema=self.G_ema, opt_g=self.opt_g, opt_d=self.opt_d)


def reseed(seed: int, rank: int, step: int):
    """Seed torch's global RNG (CPU and every CUDA device) for iteration `step` of rank `rank`: the latents drawn
    from the VAE moments, z, DiffAugment and the MNG noise. A resumed run then draws exactly what an uninterrupted
    one does, with no RNG state in its checkpoints (edm2's habit). Host-side only: no device sync."""
    torch.manual_seed(int(np.random.SeedSequence((seed, rank, step)).generate_state(1, np.uint64)[0]))


def autocast_factory(cfg: RunConfig, device: torch.device):
    """bf16 autocast on CUDA (precision auto/bf16), float32 elsewhere unless bf16 is asked for."""
    use_bf16 = cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def build_state(cfg: RunConfig, device: torch.device, distributed: bool = False) -> TrainState:
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
    adamw = dict(betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=True)
    opt_g = torch.optim.AdamW(G.parameters(), lr=lr_g, **adamw)
    opt_d = torch.optim.AdamW(D.parameters(), lr=lr_d, **adamw)
    objective = GATObjective.from_config(cfg, encoder, d_grid_size=D.input_size // D.patch_size)

    # DDP, then torch.compile, wrap each trained network once. G's unused heads with MNG off need
    # find_unused_parameters. The losses call the wrapped handles (train_step says how each is used).
    G_wrapped, D_wrapped = G, D
    if distributed:
        ids = [device.index] if device.type == "cuda" else None
        G_wrapped = DDP(G, device_ids=ids, broadcast_buffers=False, find_unused_parameters=cfg.method.mng == "off")
        D_wrapped = DDP(D, device_ids=ids, broadcast_buffers=False)
    if cfg.model.compile:
        G_wrapped, D_wrapped = torch.compile(G_wrapped), torch.compile(D_wrapped)
    return TrainState(cfg, G, D, G_ema, G_wrapped, D_wrapped, opt_g, opt_d, objective, lr_g, lr_d,
                      autocast_factory(cfg, device), distributed)


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


def no_grad_sync(wrapped: torch.nn.Module):
    """DDP's `no_sync()` for a wrapped handle (a compiled DDP module forwards it), else nothing to switch off."""
    return wrapped.no_sync() if hasattr(wrapped, "no_sync") else contextlib.nullcontext()


@torch.no_grad()
def update_w_avg(s: TrainState, z: torch.Tensor, y: torch.Tensor):
    """G's per-class running mean of w over the global batch (official: in G's forward, per rank's batch).
    w is recomputed from (z, y) with the G step's weights: the mapping MLP costs little next to G's blocks.
    Under DDP the class sums and counts are all-reduced together: one small collective per step."""
    with s.autocast():
        w = s.G.mapping_network(z, y)  # (B, hidden)
    sums, counts = s.G.w_class_sums(w, y)  # (num_classes, hidden), (num_classes,)
    if s.distributed:
        packed = torch.cat([sums, counts[:, None]], dim=1)
        dist.all_reduce(packed)
        sums, counts = packed[:, :-1], packed[:, -1]
    s.G.update_w_avg(sums, counts)


def train_step(s: TrainState, x, y, z, raw_images=None, group_norms: bool = False) -> dict[str, torch.Tensor]:
    """One D step and one G step; returns this rank's statistics by name as detached device tensors (losses,
    logits, gradient norms; the norms per block group only with `group_norms`)."""
    # D step. G runs under no_grad inside the loss, so its DDP wrapper prepares no gradient reduction.
    s.D.requires_grad_(True)
    with s.autocast():
        loss_d, stats = s.objective.discriminator_loss(s.G_wrapped, s.D_wrapped, x, y, z, raw_images)
    loss_d.backward()
    stats.update(_optimizer_step(s.D, s.opt_d, "d", s.cfg, group_norms))
    s.D.requires_grad_(False)

    # G step through the frozen D's wrapped handle (keeping its compiled graph) under DDP's no_sync(): D's
    # parameters get no gradients, and outside no_sync the reducer would wait for them at the next step.
    # no_sync costs nothing here (no communication, no gradient buckets touched).
    update_w_avg(s, z, y)
    with s.autocast(), no_grad_sync(s.D_wrapped):
        loss_g, g_stats = s.objective.generator_loss(s.G_wrapped, s.D_wrapped, x, y, z)
    loss_g.backward()
    stats.update(g_stats)
    stats.update(_optimizer_step(s.G, s.opt_g, "g", s.cfg, group_norms))
    update_ema(s.G_ema, s.G, s.cfg.optim.ema_decay)
    return stats
