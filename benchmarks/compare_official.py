"""Time our training iteration against the official GAT code's, same settings, in one process, alternating.

    git clone https://github.com/hse1032/GAT /path/to/GAT     # outside this repository; never copied in
    pip install einops                                          # the official code's import of its RoPE
    python benchmarks/compare_official.py --official /path/to/GAT --size GAT-S/2 --batch 2     # CPU, fp32
    python benchmarks/compare_official.py --official /path/to/GAT --size GAT-XL/2 --batch 32 \
        --device cuda --precision bf16
    python benchmarks/compare_official.py --official /path/to/GAT --spec sweeps/demo.yaml \
        --run B2-mng-repa-lrA-s0 --threads 1

One iteration on each side = a D step and a G step as in the official train.py (R1/R2 approximated every
step, MNG, REPA on D with the same random-weight DINOv2 ViT-B/14 encoder, AdamW, grad clipping, EMA),
on the same synthetic batch. The official side runs its own RpGANPTLoss and models (which checkpoint
every block); ours runs `gatscale.train.step.train_step` with our defaults (no checkpointing unless
--our-grad-ckpt). With --spec/--run both sides take that sweep run's config (tiny widths, its encoder, batch and
LRs): the official nets are built from its GAT/GATD classes at those widths, and its DINOv2 preprocessing (which
always resizes to 224 px) is shimmed to the run's encoder resolution, so both encoders see the same input.
The last line is the figure we steer by: `ratio ours/official time: X.XX`.
"""
import argparse
import contextlib
import statistics
import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import (  # noqa: E402
    benchmark_config,
    parser as train_step_parser,  # noqa: E402
    synthetic_batch,
    time_iterations,
)

from gatscale.train.step import build_state, train_step  # noqa: E402


class OfficialEncoderShim(torch.nn.Module):
    """Our timm DINOv2 in the torch.hub interface the official loss expects (dict of normed tokens)."""

    def __init__(self, timm_model):
        super().__init__()
        self.model = timm_model

    def forward_features(self, x):
        tokens = self.model.forward_features(x)
        n = getattr(self.model, "num_prefix_tokens", 1)
        return {"x_norm_clstoken": tokens[:, 0], "x_norm_patchtokens": tokens[:, n:]}


class Wrapped(torch.nn.Module):
    """The official loss reads `.module` (it expects accelerate/DDP-wrapped models)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def official_nets(cfg, encoder):
    """(G factory, D) of the official code at the config's architecture (its registry sizes when they match)."""
    from models.discriminator import GATD
    from models.generator import GAT

    kwargs = dict(input_size=cfg.data.latent_size, in_channels=cfg.data.latent_channels,
                  num_classes=cfg.data.num_classes, z_dims=[encoder.dim], projector_dim=cfg.model.projector_dim,
                  fused_attn=True, qk_norm=True)

    def arch(net):
        a = net.arch()
        return dict(depth=a["depth"], hidden_size=a["hidden_size"], decoder_hidden_size=a["hidden_size"],
                    patch_size=a["patch_size"], num_heads=a["num_heads"])
    make_g = lambda: GAT(**arch(cfg.model.generator), latent_size=cfg.model.z_dim, **kwargs)  # noqa: E731
    return make_g, GATD(**arch(cfg.model.discriminator), cmap_dim=cfg.model.cmap_dim, **kwargs)


def build_official(path: Path, cfg, encoder, device, autocast, lrs):
    sys.path.insert(0, str(path))
    try:
        import losses.Rp_PT_loss as official_loss
        from losses.Rp_PT_loss import RpGANPTLoss
    except ImportError as e:
        raise SystemExit(f"--official {path}: cannot import the official code ({e}); it needs `pip install einops`")
    if encoder.resolution != 224:  # the official DINOv2 preprocessing always resizes to 224 px
        official_loss.preprocess_raw_image = lambda x, enc_type: encoder.preprocess(x)
    torch.manual_seed(cfg.train.seed)
    make_g, D = official_nets(cfg, encoder)
    G, D = make_g().to(device), D.to(device)
    ema = make_g().to(device).requires_grad_(False)
    ema.load_state_dict(G.state_dict())
    lr_g, lr_d = lrs
    opt_g = torch.optim.AdamW(G.parameters(), lr=lr_g, betas=(0.0, 0.99), weight_decay=0.0, eps=1e-8)
    opt_d = torch.optim.AdamW(D.parameters(), lr=lr_d, betas=(0.0, 0.99), weight_decay=0.0, eps=1e-8)
    loss = RpGANPTLoss(encoders=[OfficialEncoderShim(encoder.model)], encoder_types=["dinov2"], architectures=["vit"],
                       accelerator=types.SimpleNamespace(autocast=autocast), r1_gamma=cfg.method.r1_gamma,
                       r1_every=1, r2_gamma=cfg.method.r2_gamma, r2_every=1, proj_coeff=cfg.method.repa_weight,
                       approximate=True)
    Gw, Dw = Wrapped(G), Wrapped(D)

    @torch.no_grad()
    def update_ema(decay=0.999):
        for p_ema, p in zip(ema.parameters(), G.parameters()):
            p_ema.mul_(decay).add_(p.detach(), alpha=1 - decay)
        for b_ema, b in zip(ema.buffers(), G.buffers()):
            b_ema.copy_(b)

    def update(net, opt, loss_fn, x, raw, global_step, kwargs):
        """One optimiser step of `net` on loss_fn (the official loss's step_disc or step_gen), as its loop does."""
        net.requires_grad_(True)
        with autocast():
            loss, _, _ = loss_fn(Gw, Dw, None, x, raw, global_step, kwargs)
        loss.mean().backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        net.requires_grad_(False)

    def step(x, y, z, raw, global_step=0):
        kwargs = dict(y=y, z=z)
        update(D, opt_d, loss.step_disc, x, raw, global_step, kwargs)
        update(G, opt_g, loss.step_gen, x, raw, global_step, kwargs)
        update_ema()
    return step


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official", required=True, type=Path, help="a checkout of github.com/hse1032/GAT")
    p.add_argument("--size", default="GAT-S/2")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--our-grad-ckpt", action="store_true", help="also checkpoint every block on our side")
    p.add_argument("--compile", action="store_true", help="torch.compile on our side")
    p.add_argument("--rounds", type=int, default=5, help="timed (ours, official) pairs after one warm-up pair")
    p.add_argument("--spec", help="a sweep spec: compare on one of its runs (with --run) instead of ImageNet shapes")
    p.add_argument("--run", help="the run's name in --spec, e.g. B2-mng-repa-lrA-s0")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.official / "models" / "generator.py").is_file():
        raise SystemExit(f"--official {args.official}: not a checkout of the official GAT code "
                         "(no models/generator.py)")

    device = torch.device(args.device)
    # Our side: train_step.py's defaults (ImageNet-256 shapes, REPA with DINOv2 ViT-B/14, MNG exp).
    bench_args = train_step_parser().parse_args(["--size", args.size, "--batch", str(args.batch), "--precision",
                                                 args.precision, *["--grad-ckpt"] * args.our_grad_ckpt,
                                                 *["--compile"] * args.compile,
                                                 *(["--spec", args.spec, "--run", args.run] if args.spec else [])])
    cfg = benchmark_config(bench_args)
    ours = build_state(cfg, device)
    autocast = ours.autocast if args.precision == "bf16" else contextlib.nullcontext
    official = build_official(args.official, cfg, ours.encoder, device, autocast, (ours.lr_g, ours.lr_d))
    x, y, raw = synthetic_batch(cfg, device)
    z = torch.randn(cfg.train.batch_size, cfg.model.z_dim, device=device)

    def timed(fn):
        return time_iterations(fn, device, warmup=0, iters=1)[0]

    run_ours = lambda: train_step(ours, x, y, z, raw if cfg.method.repa else None)  # noqa: E731
    run_official = lambda: official(x, y, z, raw)  # noqa: E731
    timed(run_ours), timed(run_official)  # warm-up (the official RoPE is torch.compile'd on first use)
    t_ours, t_official = [], []
    for i in range(args.rounds):  # alternate, and alternate who goes first
        pair = [(t_ours, run_ours), (t_official, run_official)]
        for times, fn in (pair if i % 2 == 0 else pair[::-1]):
            times.append(timed(fn))
    m_ours, m_official = statistics.median(t_ours), statistics.median(t_official)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name} ({torch.get_num_threads()} threads);"
          f" {args.spec + ':' + args.run if args.spec else args.size} batch {cfg.train.batch_size} {args.precision};"
          f" ours grad_ckpt={args.our_grad_ckpt} compile={args.compile}; official checkpoints every block")
    for side, m, times in (("ours", m_ours, t_ours), ("official", m_official, t_official)):
        print(f"{side:<8} {m * 1e3:9.1f} ms/iteration  {cfg.train.batch_size / m:8.2f} images/s"
              f"  (all: {', '.join(f'{t:.2f}' for t in times)} s)")
    print(f"ratio ours/official time: {m_ours / m_official:.2f}")


if __name__ == "__main__":
    main()
