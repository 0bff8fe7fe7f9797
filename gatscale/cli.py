"""`gatscale COMMAND ...`: one table of commands, each implemented by a module with
`add_arguments(parser)` and `main(args) -> int`. Modules are imported only when their command runs,
so `gatscale --help` stays fast.

One error path for every command: an expected failure (gatscale.core.errors: bad input, a missing file or weights,
an unreachable store, a permission, a full disk, a locked run folder) prints `gatscale: error: ...` and exits
2 (bad input) or 1 (the machine). Only a bug shows a traceback, with a line saying so and where it is saved.
A reader that closed our stdout (`gatscale status SPEC | head -1`) ends the command quietly with 141 (128 + SIGPIPE),
as a tool killed by SIGPIPE does.
"""
import argparse
import importlib
import os
import select
import sys
import tempfile
import time
import traceback

from gatscale.core.errors import describe, exit_code

EXIT_STDOUT_CLOSED = 141  # 128 + SIGPIPE: what a shell shows for a command whose reader went away

COMMANDS = {
    "train": ("gatscale.train.cli", "train one run from a config (resumes if its run folder holds a checkpoint)"),
    "sweep": ("gatscale.sweep.cli", "expand a sweep spec and launch its missing runs (local, submitit, ray)"),
    "probe-lr": ("gatscale.sweep.probe_cli", "measure the largest stable LR per width and fit lr_max ∝ C^b"),
    "findings": ("gatscale.sweep.findings_cli", "a study's conclusions: effect, interval, seeds and verdict of each"),
    "status": ("gatscale.sweep.status", "show the state of every run of a sweep spec"),
    "eval": ("gatscale.train.eval_cli", "FID/IS/precision-recall of a run's EMA generator"),
    "analyze": ("gatscale.train.analyze_cli", "per-block LPIPS contribution and feature PCA of a generator"),
    "figures": ("analysis.cli", "regenerate the paper's figures from the tracker"),
    "predict": ("analysis.predict", "from a study's finished runs: a size's FD with its interval, or the iterations "
                                    "and device-hours to reach a target"),
    "report": ("analysis.report", "a study on one self-contained HTML page: runs, figures, samples, spec"),
    "extract-latents": ("gatscale.data.extract", "image folder -> sharded SD-VAE latents + raw images"),
    "prepare-digits": ("gatscale.data.digits", "write the embedded digits data set in the shard format"),
    "sync": ("gatscale.tracking.sync", "replay metrics buffered in a run folder to the tracking server"),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        try:
            return _dispatch(argv)
        finally:
            sys.stdout.flush()  # here, not at exit (argparse's help included): a closed pipe is caught below
    except BrokenPipeError as e:
        if not _stdout_closed():
            return _report(e, argv)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the interpreter's last flush goes nowhere
        return EXIT_STDOUT_CLOSED


def _dispatch(argv: list[str]) -> int:
    width = max(map(len, COMMANDS))
    top = argparse.ArgumentParser(
        prog="gatscale", description="Scaling studies of transformer GANs (GAT).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<{width}}  {desc}" for name, (_, desc) in COMMANDS.items())
        + "\n\n`gatscale COMMAND --help` shows a command's options.")
    top.add_argument("command", choices=COMMANDS, metavar="COMMAND", help="one of the commands below")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        top.parse_args(argv)  # prints help or a clear 'invalid choice' error
        return 2
    module_name, desc = COMMANDS[argv[0]]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"gatscale {argv[0]}", description=desc)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return module.main(args) or 0
    except BrokenPipeError:
        raise  # main's: a reader that went away is no error
    except KeyboardInterrupt:
        print("gatscale: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place that turns failures into messages and exit codes
        return _report(e, argv)


def _report(e: Exception, argv: list[str]) -> int:
    code = exit_code(e)
    if code is None:
        return _report_bug(e, argv)
    print(f"gatscale: error: {describe(e)}", file=sys.stderr)
    return code


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (Linux and macOS poll it as an error), not some other pipe
    of ours that broke."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):
        return True  # no poll here (or no stdout fd): as before this check, take it for stdout


def _report_bug(e: Exception, argv: list[str]) -> int:
    """A failure no check foresaw: the traceback, saved to a file, and a line saying it is a bug."""
    text = "".join(traceback.format_exception(e))
    path = os.path.join(tempfile.gettempdir(), f"gatscale-bug-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt")
    try:
        with open(path, "w") as f:
            f.write(f"gatscale {' '.join(argv)}\n\n{text}")
    except OSError:
        path = None
    print(text, file=sys.stderr, end="")
    print(f"gatscale: internal error: {type(e).__name__} is a bug in gatscale, not in your input; please report "
          f"it with the traceback above{f' (saved in {path})' if path else ''}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
