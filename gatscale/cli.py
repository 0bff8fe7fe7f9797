"""`gatscale COMMAND ...`: one table of commands, each implemented by a module with
`add_arguments(parser)` and `main(args) -> int`. Modules are imported only when their command runs,
so `gatscale --help` stays fast.
"""
import argparse
import importlib
import sys

COMMANDS = {
    "train": ("gatscale.train.cli", "train one run from a config (resumes if its run folder holds a checkpoint)"),
    "sweep": ("gatscale.sweep.cli", "expand a sweep spec and launch its missing runs (local, submitit, ray)"),
    "probe-lr": ("gatscale.sweep.probe_cli", "measure the largest stable LR per width and fit lr_max ∝ C^b"),
    "status": ("gatscale.sweep.status", "show the state of every run of a sweep spec"),
    "eval": ("gatscale.eval.cli", "FID/IS/precision-recall of a run's EMA generator"),
    "analyze": ("gatscale.eval.analyze", "per-block LPIPS contribution and feature PCA of a generator"),
    "figures": ("analysis.cli", "regenerate the paper's figures from the tracker"),
    "extract-latents": ("gatscale.data.extract", "image folder -> sharded SD-VAE latents + raw images"),
    "prepare-digits": ("gatscale.data.digits", "write the embedded digits data set in the shard format"),
    "sync": ("gatscale.tracking.sync", "replay metrics buffered in a run folder to the tracking server"),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    top = argparse.ArgumentParser(prog="gatscale", description="Scaling studies of transformer GANs (GAT).")
    top.add_argument("command", choices=COMMANDS, metavar="COMMAND",
                     help="; ".join(f"{name}: {desc}" for name, (_, desc) in COMMANDS.items()))
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        top.parse_args(argv)  # prints help or a clear 'invalid choice' error
        return 2
    module_name, desc = COMMANDS[argv[0]]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"gatscale {argv[0]}", description=desc)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    return module.main(args) or 0


if __name__ == "__main__":
    sys.exit(main())
