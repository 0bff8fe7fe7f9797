"""A run's generator for `gatscale eval` and `gatscale analyze`, and logging their results to its tracker.

Kept apart from cli.py so that `gatscale analyze` does not import torch-fidelity (fid.py).
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

from gatscale.core.errors import InputError

# what torch.load and load_generator raise for a file that is not a (whole) gatscale checkpoint
UNREADABLE = (pickle.UnpicklingError, EOFError, KeyError, RuntimeError, ValueError)


def load_run(path, which: str, device):
    """(G, cfg, run_dir, step, checkpoint path) for a run folder (newest readable checkpoint) or a file."""
    from .checkpoint import CKPT_PATTERN, list_checkpoints, load_generator

    path = Path(path)
    if path.is_dir():
        candidates = list(reversed(list_checkpoints(path)))
        if not candidates:
            raise FileNotFoundError(f"{path}: no checkpoints/ckpt-*.pt in this run folder")
    elif path.is_file():
        candidates = [path]
    else:
        raise FileNotFoundError(f"{path}: neither a run folder nor a checkpoint file")
    for i, ckpt in enumerate(candidates):
        try:
            G, cfg = load_generator(ckpt, which=which, device=device)
            break
        except UNREADABLE as e:  # an unreadable newest checkpoint: fall back, as training does
            if i == len(candidates) - 1:
                raise InputError(f"{ckpt}: not a readable gatscale checkpoint ({type(e).__name__}: {e})") from None
            print(f"[gatscale eval] warning: {ckpt} unreadable ({type(e).__name__}: {e}); trying the previous one",
                  file=sys.stderr)
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    m = CKPT_PATTERN.search(ckpt.name)
    return G, cfg, run_dir, (int(m.group(1)) if m else None), ckpt


def log_to_tracker(run_dir: Path, cfg, metrics: dict, step: int | None, artifact: Path, tags: dict | None = None):
    """Best effort: the run folder's metrics.jsonl and its tracker run get the metrics (at `step`), the tags and
    the artifact file, leaving its status and start/end time as they were; any failure is a warning, not an error."""
    try:
        from gatscale.tracking import log_after_run

        left = log_after_run(run_dir, metrics, step, artifact, "eval", tags=tags, send=cfg.tracking.backend != "none")
        if left:
            print(f"[gatscale eval] warning: the tracking store did not take the results in time; they are kept "
                  f"in {run_dir}: run `gatscale sync {run_dir}` later", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - tracking is optional for an evaluation
        print(f"[gatscale eval] warning: metrics not sent to the tracker ({type(e).__name__}: {e}); "
              f"they are in {artifact}", file=sys.stderr)
