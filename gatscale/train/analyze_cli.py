"""`gatscale analyze`: the paper's diagnostics of where a generator does its work (Fig. 4b).

    gatscale analyze lpips-contribution runs/b2 --num-samples 1000 --normalize
    gatscale analyze pca runs/b2 --blocks 0,1,2

lpips-contribution writes <run_dir>/eval/lpips_contribution.csv (block, contribution, normalized,
backbone, num_samples) and logs it to the run's tracker as an artifact; pca writes
<run_dir>/eval/pca-<step>.png (row 0: samples; then one row per block).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from gatscale.core.atomic import atomic_write_text
from gatscale.core.errors import InputError, describe
from gatscale.eval.samples import build_eval_tokenizer
from .trained_run import load_run, log_to_tracker


def add_arguments(parser):
    sub = parser.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    lp = sub.add_parser("lpips-contribution", help="mean LPIPS change when each block's residual update is removed")
    pc = sub.add_parser("pca", help="first three principal components of block output tokens, as RGB")
    for p in (lp, pc):
        p.add_argument("path", metavar="CHECKPOINT", help="a run folder (its newest checkpoint) or a ckpt-*.pt file")
        p.add_argument("--which", choices=("ema", "generator"), default="ema")
        p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--truncation-psi", type=float, default=0.0, help="0 = none (default)")
        p.add_argument("--out", default=None)
    lp.add_argument("--num-samples", type=int, default=256)
    lp.add_argument("--batch-size", type=int, default=32)
    lp.add_argument("--normalize", action="store_true", help="print values divided by the largest (the CSV has both)")
    lp.add_argument("--net", "--backbone", dest="net", choices=("digits", "alex", "vgg"), default=None,
                    help="LPIPS network: digits (trained on the digits set; default for digits runs) or alex/vgg "
                         "(torchvision's ImageNet weights from the torch hub cache; default otherwise)")
    lp.add_argument("--random-backbone", action="store_true",
                    help="randomly initialised LPIPS backbone (offline smoke tests only; labelled "
                         "'<net>-random-stand-in')")
    pc.add_argument("--blocks", default="0,1,2", help="comma list of block indices (0-based)")
    pc.add_argument("--num-samples", type=int, default=8)


def write_csv(rows: list[dict], path: Path):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def run_lpips_contribution(args, G, run_dir: Path, tokenizer, device) -> Path:
    from gatscale.eval.lpips_contribution import block_contributions, build_lpips, contribution_table

    lpips_model, backbone = build_lpips(args.net, pretrained_backbone=not args.random_backbone, seed=args.seed)
    values = block_contributions(G, tokenizer, lpips_model, args.num_samples, args.batch_size, args.truncation_psi,
                                 args.seed, device)
    rows = contribution_table(values, backbone, args.num_samples)
    out = Path(args.out) if args.out else run_dir / "eval" / "lpips_contribution.csv"
    write_csv(rows, out)
    column = "normalized" if args.normalize else "contribution"
    print(f"block  {column}  (LPIPS {backbone}, {args.num_samples} samples)")
    for r in rows:
        print(f"{r['block']:5d}  {r[column]:.4f}")
    return out


def run_pca(args, G, run_dir: Path, step, tokenizer, device) -> Path:
    from gatscale.eval.pca import block_features, pca_grid
    from .sample_grid import save_png

    try:
        blocks = [int(b) for b in args.blocks.split(",") if b.strip()]
    except ValueError:
        raise ValueError(f"--blocks {args.blocks!r}: expected a comma list of block indices like 0,1,2") from None
    latents, features = block_features(G, blocks, args.num_samples, args.seed, device, args.truncation_psi)
    grid = pca_grid(tokenizer.decode(latents.float()).cpu(), features)
    name = f"pca-{step:07d}.png" if step is not None else "pca.png"
    out = Path(args.out) if args.out else run_dir / "eval" / name
    save_png(grid, out)
    print(f"PCA of blocks {blocks} ({args.num_samples} samples): {out}")
    return out


def main(args) -> int:
    device = torch.device(args.device)
    try:
        if args.num_samples < 1 or not 0 <= args.truncation_psi <= 1:
            raise ValueError(f"--num-samples {args.num_samples} must be >= 1 and --truncation-psi "
                             f"{args.truncation_psi} in [0, 1]")
        G, cfg, run_dir, step, _ = load_run(args.path, args.which, device)
        tokenizer = build_eval_tokenizer(cfg, device)
        if args.analysis == "lpips-contribution":
            args.net = args.net or ("digits" if cfg.data.source == "digits" and not args.random_backbone else "alex")
            out = run_lpips_contribution(args, G, run_dir, tokenizer, device)
        else:
            out = run_pca(args, G, run_dir, step, tokenizer, device)
    except (FileNotFoundError, ValueError) as e:  # the path or an option given: bad input, reported by gatscale.cli
        raise InputError(f"{args.analysis}: {describe(e)}") from None
    log_to_tracker(run_dir, cfg, {}, step, out)
    return 0
