"""`gatscale eval RUN_DIR_OR_CHECKPOINT`: FID / IS / precision-recall of a run's EMA generator.

    gatscale eval runs/b2 --num-samples 50000 --truncation-psi 0.3 --npz-out samples.npz

Defaults are the official sampler's (`generate.py`): truncation psi = 0.3, the EMA weights, G and the VAE
decoder (data.vae_decoder: sd-vae-ft-ema) in float32 with TF32 (train.tf32); `--precision bf16` is faster.
Writes <run_dir>/eval/metrics-<step>.json (atomically; `-psi0.3` / `-generator` / `-bf16` appended for those
variants) and, when the run has a tracking.json, logs the metrics to its tracker run at that step: as `fid`,
`is`, ... only for exactly the in-training protocol (eval.fid_samples, its psi, decoder and precision, EMA), else
with a suffix naming the sample count and psi, e.g. `fid_50k_psi0.3`, so FID-50K never joins the FID-5K curve
and psi is visible in every name; a tag `gatscale.eval<suffix>` records the whole protocol. `--npz-out` also
streams the samples into an `.npz` (arr_0 NHWC uint8, arr_1 labels) for the ADM evaluator
(openai/guided-diffusion/evaluations). The feature extractor, Inception weights and reference statistics come
from the run's `eval:` config section, overridable here.

Every Fréchet distance comes with its bootstrap standard error `<fd>_se` (eval.se_resamples resamples of the
generated features); `--fd-inf` adds `<fd>_inf`, FD extrapolated to infinitely many samples (Chong & Forsyth
2020; for final evaluations: use many samples, e.g. 50,000), and `--fd-dinov2` (or eval.fd_dinov2) `fd_dinov2`.
The protocol suffix follows these: `fid_se_50k_psi0.3`, `fid_inf_50k_psi0.3`. The recipe of each (sample count,
SE method, FD_inf's sample counts, the DINOv2 network) is in the tag and in the metrics JSON, with FD_inf's fit.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import time

import torch

from gatscale.core.atomic import atomic_write_text
from gatscale.core.config import to_dict
from gatscale.core.errors import InputError, describe
from gatscale.eval import fid, frechet
from gatscale.eval.samples import NpzWriter, build_eval_tokenizer, generate_images
from .trained_run import load_run, log_to_tracker


def add_arguments(parser):
    parser.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT",
                        help="a run folder (its newest checkpoint) or a ckpt-*.pt file")
    parser.add_argument("--num-samples", type=int, default=50_000,
                        help="number of generated images (default 50000: FID-50K)")
    parser.add_argument("--truncation-psi", type=float, default=OFFICIAL_SAMPLER_PSI,
                        help="0 = none, 1 = class mean (default 0.3, the official generate.py's; training's FID-5K "
                             "uses 0)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                        help="G and VAE decoder (default: the run's eval.precision, fp32 with TF32 as the official "
                             "code)")
    parser.add_argument("--npz-out", default=None, help="also write the samples as an ADM-evaluator .npz")
    parser.add_argument("--which", choices=("ema", "generator"), default="ema", help="generator weights to evaluate")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the run's eval.batch_size")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--metrics", default="fid,is,prc,diversity",
                        help="comma list of fid (with its SE), is, prc (precision/recall), diversity (digits only)")
    parser.add_argument("--fd-inf", action="store_true",
                        help="also FD extrapolated to infinitely many samples (Chong & Forsyth 2020): <fd>_inf")
    parser.add_argument("--fd-dinov2", action="store_true", default=None,
                        help="also FD on DINOv2 features, fd_dinov2 (network: the run's eval.dinov2)")
    parser.add_argument("--feature-extractor", choices=tuple(fid.EXTRACTORS), default=None,
                        help="default: the run's eval.feature_extractor (digits: offline CNN, reported as fd_digits)")
    parser.add_argument("--inception-weights", default=None, help="local torch-fidelity Inception weights file")
    parser.add_argument("--reference-stats", default=None,
                        help=".npz with mu/sigma (ours or ADM's VIRTUAL_imagenet256_labeled.npz)")
    parser.add_argument("--seed", type=int, default=0)


OFFICIAL_SAMPLER_PSI = 0.3  # generate.py --truncation-psi default


def tracker_suffix(num_samples: int, which: str, eval_cfg, trained_eval, same_decoder: bool = True) -> str:
    """'' for exactly the in-training protocol (eval.fid_samples samples, its psi, precision and decoder, EMA
    weights), so that `fid` stays one comparable series (its psi is the run's eval.truncation_psi parameter);
    otherwise the sample count and psi, then the variants: '_50k_psi0.3', '_5k_psi0', '_50k_psi0.3_generator_bf16'."""
    psi, precision = eval_cfg.truncation_psi, eval_cfg.precision
    if (num_samples, psi, precision, which, same_decoder) == (
            trained_eval.fid_samples, trained_eval.truncation_psi, trained_eval.precision, "ema", True):
        return ""
    parts = [f"{num_samples // 1000}k" if num_samples % 1000 == 0 else str(num_samples), f"psi{psi:g}"]
    if which != "ema":
        parts.append(which)
    if precision != "fp32":
        parts.append(precision)
    return "".join("_" + p for p in parts)


def main(args) -> int:
    metrics = tuple(m for m in args.metrics.split(",") if m)
    problems = [f"--metrics {args.metrics!r}: expected a comma list of {', '.join(fid.METRICS)}"
                if not metrics or set(metrics) - set(fid.METRICS) else None,
                f"--num-samples {args.num_samples}: must be >= 2" if args.num_samples < 2 else None,
                f"--truncation-psi {args.truncation_psi}: must be in [0, 1] (0 = none)"
                if args.truncation_psi is not None and not 0 <= args.truncation_psi <= 1 else None,
                f"--batch-size {args.batch_size}: must be >= 1"
                if args.batch_size is not None and args.batch_size < 1 else None,
                f"--fd-inf --num-samples {args.num_samples}: too few samples for FD_inf's fit in 1/N (sample counts "
                f"{frechet.inf_counts(args.num_samples)}; it needs 3)"
                if args.fd_inf and args.num_samples >= 2 and len(frechet.inf_counts(args.num_samples)) < 3 else None]
    if any(problems):
        raise InputError("; ".join(p for p in problems if p))
    device = torch.device(args.device)
    try:
        G, cfg, run_dir, step, ckpt = load_run(args.path, args.which, device)
        trained_eval = dataclasses.replace(cfg.eval)
        for key, value in (("feature_extractor", args.feature_extractor), ("inception_weights", args.inception_weights),
                           ("reference_stats", args.reference_stats), ("truncation_psi", args.truncation_psi),
                           ("batch_size", args.batch_size), ("precision", args.precision),
                           ("fd_dinov2", args.fd_dinov2)):
            if value is not None:
                setattr(cfg.eval, key, value)
        # fails before generating
        extractor = fid.get_extractor(cfg.eval.feature_extractor, cfg.eval.inception_weights, device)
        reference = fid.get_reference(cfg, extractor, device)
        extra = fid.extra_extractors(cfg, device)
        tokenizer = build_eval_tokenizer(cfg, device)
        if device.type == "cuda":  # float32 matmuls in TF32, as the official generate.py (--tf32) and train.py
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.train.tf32
    except (FileNotFoundError, ValueError) as e:  # the path or an option given: bad input, reported by gatscale.cli
        raise InputError(describe(e)) from None

    start = time.time()
    batches = generate_images(G, tokenizer, args.num_samples, cfg.eval.batch_size, cfg.eval.truncation_psi,
                              seed=args.seed, device=device, precision=cfg.eval.precision)
    writer = NpzWriter(args.npz_out, args.num_samples, cfg.data.resolution) if args.npz_out else None

    def images():
        with writer or contextlib.nullcontext():
            for x, y in batches:
                if writer:
                    writer.write(x, y)
                yield x, y  # the labels give acc_digits on digits

    fits: dict = {}
    values = fid.compute_metrics(images(), cfg.eval.feature_extractor, extractor, reference, metrics, extra,
                                 cfg.eval.se_resamples, fd_inf=args.fd_inf, fits=fits)

    decoder = cfg.data.vae_decoder if cfg.data.tokenizer == "sd-vae" else None
    protocol = {"num_samples": args.num_samples, "truncation_psi": cfg.eval.truncation_psi, "which": args.which,
                "precision": cfg.eval.precision, "decoder": decoder,
                **fid.recipe(cfg.eval, args.num_samples, metrics, args.fd_inf)}
    record = {
        "metrics": values, "fd_inf_fits": fits or None, "step": step, "checkpoint": str(ckpt), **protocol,
        "seed": args.seed, "feature_extractor": cfg.eval.feature_extractor, "reference_stats": reference["path"],
        "reference_num_images": reference["num_images"], "npz": args.npz_out,
        "seconds": round(time.time() - start, 2),
        "eval_config": to_dict(cfg.eval),
    }
    variant = "".join([f"-psi{cfg.eval.truncation_psi:g}" if cfg.eval.truncation_psi else "",
                       "" if args.which == "ema" else f"-{args.which}",
                       "" if cfg.eval.precision == "fp32" else f"-{cfg.eval.precision}"])
    tag = f"{step:07d}" if step is not None else re.sub(r"[^\w.-]", "_", ckpt.stem)
    out = run_dir / "eval" / f"metrics-{tag}{variant}.json"
    atomic_write_text(out, json.dumps(record, indent=2) + "\n")
    same_decoder = decoder is None or decoder == cfg.eval.fid_decoder
    suffix = tracker_suffix(args.num_samples, args.which, cfg.eval, trained_eval, same_decoder)
    named = {f"{k}{suffix}": v for k, v in values.items()}
    log_to_tracker(run_dir, cfg, named, step, out, tags={f"gatscale.eval{suffix}": json.dumps(protocol)})
    print(json.dumps({**named, "truncation_psi": cfg.eval.truncation_psi}))
    print(f"[gatscale eval] psi {cfg.eval.truncation_psi:g}, {args.num_samples} samples, {args.which} weights, "
          f"{cfg.eval.precision}; wrote {out}" + (f" and {args.npz_out}" if args.npz_out else ""))
    return 0
