"""`gatscale train CONFIG.yaml [--run-dir DIR] [--set key.path=value ...] [--restart]`."""
import sys
from pathlib import Path

from gatscale.core.config import ConfigError, load_config
from gatscale.core.errors import InputError
from .signals import StopFlag
from .status import EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_PREEMPTED


def add_arguments(parser):
    parser.add_argument("config", nargs="?", help="run config YAML (default: RUN_DIR/config.yaml when resuming)")
    parser.add_argument("--run-dir", help="run folder (default: runs/<name>); resumes if it holds a checkpoint")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config value, e.g. --set train.iterations=200 (repeatable)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="force a device (default: CUDA when available)")
    parser.add_argument("--restart", action="store_true",
                        help="train from step 0 when the run folder shows progress but no checkpoint is usable")


def main(args) -> int:
    early = StopFlag().install()  # before importing torch: a preemption now is still checkpointed (signals.py)
    config = args.config
    if args.run_dir and Path(args.run_dir).exists() and not Path(args.run_dir).is_dir():
        raise ConfigError(None, "--run-dir", args.run_dir, "is a file; expected a run folder (or a path to create one)")
    if config is None:
        if not args.run_dir or not (Path(args.run_dir) / "config.yaml").is_file():
            raise InputError("give a CONFIG.yaml, or --run-dir of an existing run to resume it")
        config = Path(args.run_dir) / "config.yaml"
    cfg = load_config(config, args.overrides)  # a ConfigError is reported by gatscale.cli: one line, exit 2
    from ..tracking import build_tracker
    from .status import RunInProgress
    from .trainer import train

    try:
        result = train(cfg, args.run_dir, tracker=build_tracker(cfg.tracking), device=args.device, restart=args.restart)
    except RunInProgress as e:
        print(f"gatscale train: {e}; not started (exit {EXIT_LOCKED}: already running)", file=sys.stderr)
        return EXIT_LOCKED
    finally:
        early.restore()
    return {"finished": EXIT_OK, "diverged": EXIT_OK, "preempted": EXIT_PREEMPTED}.get(result.status, EXIT_FAILED)
