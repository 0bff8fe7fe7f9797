"""Checkpoints that never lose a run.

A checkpoint holds G, D, EMA, both optimisers, the step, G's w running mean (a buffer of G), all RNG
states and the resolved config. It is written to a temporary file in the same folder, fsync'ed and
renamed into place, so a kill during the write leaves the previous checkpoint intact; the last K are
kept. Loading uses `torch.load(weights_only=True)`: only tensors and plain containers, never pickled
objects.
"""
import random
import re
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_open

CKPT_PATTERN = re.compile(r"ckpt-(\d{7,})\.pt$")


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CKPT_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": np.random.get_state()[2],
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict):
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), int(state["numpy_pos"]), 0, 0.0))
    random.setstate((state["python_version"], tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, state: dict, keep: int) -> Path:
    """Atomically write checkpoints/ckpt-<step>.pt and delete all but the newest `keep`."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ckpt-{step:07d}.pt"
    with atomic_open(path, "wb") as f:
        torch.save(state, f)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def load_latest(run_dir: Path, map_location="cpu") -> tuple[dict, Path] | tuple[None, None]:
    """The newest checkpoint that loads; an unreadable one (e.g. a damaged disk) falls back to the previous."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return load_checkpoint(path, map_location), path
        except Exception as e:  # noqa: BLE001 - any unreadable file: try the previous one
            print(f"[gatscale] warning: checkpoint {path} is unreadable ({type(e).__name__}: {e}); trying the previous one")
    return None, None


def checkpoint_config(saved: dict, source: str | None = None):
    """The RunConfig a checkpoint was trained with. A config saved before `model.pos_embed` existed
    means 'frozen' (then gatscale's only mode; the default is now 'trainable', as the released code runs),
    so such a run resumes, and its weights load, as it was trained."""
    from ..config import config_from_dict

    model = dict(saved.get("model") or {})
    model.setdefault("pos_embed", "frozen")
    return config_from_dict({**saved, "model": model}, source=source)


def load_generator(path_or_run_dir, which: str = "ema", device="cpu"):
    """(Generator in eval mode, RunConfig) from a checkpoint file or a run folder's newest checkpoint.

    which: 'ema' (the EMA weights, what the paper evaluates) or 'generator' (the raw weights).
    """
    from ..models import generator_from_config

    path = Path(path_or_run_dir)
    if path.is_dir():
        state, found = load_latest(path)
        if state is None:
            raise FileNotFoundError(f"{path}: no checkpoint in {checkpoint_dir(path)}")
    elif path.is_file():
        state = load_checkpoint(path)
    else:
        raise FileNotFoundError(f"{path}: neither a checkpoint file nor a run folder")
    if which not in ("ema", "generator"):
        raise ValueError(f"which = {which!r}: must be 'ema' or 'generator'")
    cfg = checkpoint_config(state["config"], source=str(path))
    G = generator_from_config(cfg)
    G.load_state_dict(state[which])
    return G.to(device).eval().requires_grad_(False), cfg
