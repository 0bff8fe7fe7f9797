"""Evaluation throughput: samples/s of generation (G + decode), feature extraction, and both together.

    python benchmarks/eval_throughput.py                               # tiny G, 16 px digits, CPU
    python benchmarks/eval_throughput.py --model GAT-XL/2 --resolution 256 --tokenizer sd-vae \
        --vae stabilityai/sd-vae-ft-ema --extractor inception --device cuda --batch-size 128 --num-samples 2048

G is randomly initialised (speed does not depend on the weights). `--extractor inception` needs the
Inception weights file (eval.inception_weights or the torch hub cache); `--random-inception` builds
the same network with random weights, for timing only. `--tokenizer sd-vae` without `--vae` uses a
randomly initialised SD-VAE-sized AutoencoderKL, also for timing only.
"""
import argparse
import json
import tempfile
import time

import torch
from train_step import sync  # benchmarks/train_step.py (this script's folder is on sys.path)

from gatscale.data.vae import build_tokenizer
from gatscale.eval import fid
from gatscale.eval.samples import generate_images
from gatscale.models import build_generator


def random_inception(device):
    """torch-fidelity's Inception architecture with random weights (timing only)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):
            return None

    with tempfile.NamedTemporaryFile(suffix=".pth") as f:
        torch.save({}, f.name)
        net = Unloaded("inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=f.name)
        return net.to(device)


def sd_vae_sized(source, device):
    if source:
        return build_tokenizer("sd-vae", source, device=device)
    from diffusers import AutoencoderKL  # default config = the SD-VAE architecture, random weights

    return build_tokenizer("sd-vae", AutoencoderKL(block_out_channels=(128, 256, 512, 512),
                                                   down_block_types=("DownEncoderBlock2D",) * 4,
                                                   up_block_types=("UpDecoderBlock2D",) * 4,
                                                   layers_per_block=2, latent_channels=4), device=device)


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="GAT-S/2")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--num-heads", type=int, default=2)
    p.add_argument("--full-size", action="store_true", help="ignore --depth/--hidden-size/--num-heads")
    p.add_argument("--resolution", type=int, default=16)
    p.add_argument("--tokenizer", choices=("pixels", "sd-vae"), default="pixels")
    p.add_argument("--vae", default=None, help="hub id or local folder of the SD-VAE decoder")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--extractor", choices=tuple(fid.EXTRACTORS), default="digits")
    p.add_argument("--inception-weights", default=None)
    p.add_argument("--random-inception", action="store_true")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-samples", type=int, default=512)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    sd_vae = args.tokenizer == "sd-vae"
    overrides = {} if args.full_size else dict(depth=args.depth, hidden_size=args.hidden_size, num_heads=args.num_heads)
    G = build_generator(args.model, **overrides, input_size=args.resolution // 8 if sd_vae else args.resolution,
                        in_channels=4 if sd_vae else 3, num_classes=args.num_classes).to(device).eval()
    tokenizer = sd_vae_sized(args.vae, device) if sd_vae else build_tokenizer("pixels", device=device)
    if args.extractor == "inception" and args.random_inception:
        extractor = random_inception(device)
    else:
        extractor = fid.get_extractor(args.extractor, args.inception_weights, device)

    def generate():
        return [x for x, _ in generate_images(G, tokenizer, args.num_samples, args.batch_size, device=device)]

    warm = generate_images(G, tokenizer, args.batch_size, args.batch_size, device=device)
    fid.extract_features(extractor, next(warm)[0])                       # warm-up (cuDNN, allocator)
    images = []
    t_gen = timed(lambda: images.extend(generate()), device)
    t_feat = timed(lambda: [fid.extract_features(extractor, x) for x in images], device)
    t_both = timed(lambda: [fid.extract_features(extractor, x) for x in generate()], device)
    n = args.num_samples
    result = {
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"cpu ({torch.get_num_threads()} threads)"),
        "model": args.model if args.full_size else f"{args.model} depth={args.depth} width={args.hidden_size}",
        "resolution": args.resolution,
        "tokenizer": args.tokenizer + ("" if args.vae or not sd_vae else " (random stand-in)"),
        "extractor": args.extractor + (" (random weights)" if args.random_inception else ""),
        "batch_size": args.batch_size, "num_samples": n,
        "generate_samples_per_s": round(n / t_gen, 1), "extract_samples_per_s": round(n / t_feat, 1),
        "generate_and_extract_samples_per_s": round(n / t_both, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
