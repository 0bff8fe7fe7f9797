"""What the SE, precision/recall and diversity add to one demo evaluation (300 samples, digits CNN), on CPU.

    PYTHONPATH=. python benchmarks/eval_metrics_cost.py [--repeats 7]

Times `evaluate_generator` on the demo's B-like generator (sweeps/demo.yaml, random weights: the cost does not
depend on them) with the metrics the trainer computed before (fd_digits only) and now (fd_digits with its
bootstrap SE, precision/recall, diversity), alternating, and prints the medians; then the metric part alone on
fixed features. Also one bootstrap resample at Inception's size (5,000 x 2048-d) on this CPU.
"""
import argparse
import statistics
import time

import numpy as np
import torch

from gatscale.data.vae import build_tokenizer
from gatscale.eval import fid, frechet
from gatscale.models import generator_from_config
from gatscale.sweep.spec import load_spec


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    spec = load_spec("sweeps/demo.yaml", runs_dir="/tmp/eval-cost-runs")
    cfg = next(r.config for r in spec.runs if r.config.model.generator.size == "GAT-B/2")
    torch.manual_seed(0)
    G, tok = generator_from_config(cfg).eval(), build_tokenizer("pixels")
    before = dict(metrics=("fid",))
    fid.evaluate_generator(G, cfg, tok, "cpu")  # warm: extractor, reference, real-class spreads
    times = {"before (fd_digits)": [], "now (fd_digits + se, precision/recall, diversity)": []}
    for _ in range(args.repeats):
        for label in times:
            se = cfg.eval.se_resamples
            if label.startswith("before"):
                cfg.eval.se_resamples = 0
            t = time.perf_counter()
            fid.evaluate_generator(G, cfg, tok, "cpu", **(before if label.startswith("before") else {}))
            times[label].append(time.perf_counter() - t)
            cfg.eval.se_resamples = se
    for label, ts in times.items():
        print(f"{label}: median {statistics.median(ts):.3f} s per evaluation (min {min(ts):.3f})")

    ex = fid.get_extractor("digits")
    ref = fid.get_reference(cfg, ex)
    feats = torch.randn(300, 128).relu()
    parts = {"bootstrap SE (100 resamples)": lambda: fid.frechet_metrics(feats, ref, "fd", 100),
             "FD alone": lambda: fid.frechet_metrics(feats, ref, "fd", 0),
             "precision/recall": lambda: fid.prc_features_to_metric(feats, ref["features"], prc_neighborhood=3,
                                                                    prc_batch_size=10000, save_cpu_ram=True,
                                                                    verbose=False),
             "diversity": lambda: fid.class_diversity(feats, torch.arange(300) % 10,
                                                      fid._real_class_spread(ref, ex))}
    for label, f in parts.items():
        f()
        ts = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        print(f"  {label}: median {statistics.median(ts) * 1e3:.0f} ms")

    x = np.random.default_rng(0).standard_normal((5000, 2048))
    big = frechet.Reference(np.zeros(2048), np.eye(2048))
    t = time.perf_counter()
    frechet.bootstrap_se(x, big, resamples=2)
    print(f"Inception size (5,000 x 2048): {(time.perf_counter() - t) / 2:.1f} s per bootstrap resample on this CPU "
          f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
