"""Checkpoints that never lose a run.

A checkpoint holds G, D, EMA, both optimisers, the step, G's w running mean (a buffer of G) and the config
(TRAINING_STATE, saved and loaded through one CheckpointIO), plus what it takes to validate it: the keys written,
the config hash and a SHA-256 of every value (`integrity`). It is written to a temporary file in the same
folder, fsync'ed and renamed into place, so a kill during the write leaves the previous checkpoint intact;
a temporary file a kill left behind is removed at the next start (`remove_stale_temporaries`). Loading
uses `torch.load(weights_only=True)`: only tensors and plain containers, never pickled objects; then the
integrity record is checked, and `find_latest_valid` falls back, newest first, to the newest checkpoint
that passes. Pruning keeps the just-written checkpoint and the newest others, never the other way round.
A file that does not pass is named by a short reason (`why_unusable`: truncated, not a checkpoint, integrity hash
mismatch, missing key), never by torch's own text (whose weights_only advice must not be followed with a file one
cannot trust).

No RNG state is saved: the trainer reseeds every step from (seed, rank, step).
"""
import errno
import hashlib
import os
import pickle
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gatscale.core.atomic import atomic_open

CKPT_PATTERN = re.compile(r"ckpt-(\d{7,})\.pt$")
TMP_PATTERN = re.compile(r"^\.ckpt-\d{7,}\.pt\..+\.tmp$")  # atomic_open's temporary names for a checkpoint
REJECTED_DIR = "rejected"  # checkpoints/rejected/: checkpoints that failed validation, set aside, never deleted
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive (since torch 1.6)
# TrainState.checkpoint's keys
TRAINING_STATE = ("step", "config", "generator", "discriminator", "ema", "opt_g", "opt_d")


class CheckpointInvalid(ValueError):
    """A checkpoint that loads but is not what it claims: foreign, incomplete or altered."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (disk full, quota, I/O error); the older checkpoints are intact."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_step(path: Path) -> int:
    return int(CKPT_PATTERN.search(Path(path).name).group(1))


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CKPT_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


class CheckpointIO:
    """The training state a checkpoint holds, named once and used to save and to load alike (edm2's CheckpointIO):
    the step, the config (a plain dict) and the state dict of each named object."""

    def __init__(self, **objects):
        self.objects = objects  # name -> anything with state_dict() / load_state_dict()

    @property
    def keys(self) -> tuple[str, ...]:
        return ("step", "config", *self.objects)

    def save(self, run_dir: Path, step: int, config: dict, keep: int) -> Path:
        state = {"step": step, "config": config, **{k: obj.state_dict() for k, obj in self.objects.items()}}
        return save_checkpoint(run_dir, step, state, keep)

    def load(self, saved: dict) -> int:
        """Load a validated checkpoint (read_valid / find_latest_valid with `keys`) into the objects; its step."""
        for k, obj in self.objects.items():
            obj.load_state_dict(saved[k])
        return saved["step"]


# ---------------------------------------------------------------------------------------------
# Integrity

def state_digest(state: dict) -> str:
    """SHA-256 of every key, tensor (dtype, shape, bytes) and plain value of a checkpoint, in a fixed order.
    Costs one pass over the checkpoint's bytes on save and one on load (about 1 GB/s on one core)."""
    h = hashlib.sha256()

    def walk(x):
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            h.update(f"D{len(x)}".encode())
            for k in sorted(x, key=repr):
                h.update(repr(k).encode())
                walk(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(f"L{len(x)}".encode())
            for v in x:
                walk(v)
        else:
            h.update(repr(x).encode())
    walk({k: v for k, v in state.items() if k != "integrity"})
    return h.hexdigest()


def _config_hash(config: dict) -> str:
    from gatscale.core.config import config_hash
    return config_hash(checkpoint_config(config))


def with_integrity(state: dict) -> dict:
    record = {"keys": sorted(state), "sha256": state_digest(state)}
    if isinstance(state.get("config"), dict):
        record["config_hash"] = _config_hash(state["config"])
    return {**state, "integrity": record}


def validate_checkpoint(state, required=TRAINING_STATE):
    """Raise CheckpointInvalid unless `state` holds `required` and matches its integrity record."""
    if not isinstance(state, dict):
        raise CheckpointInvalid(f"not a checkpoint (a {type(state).__name__}, not a dict)")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointInvalid(f"missing key{'s' * (len(missing) > 1)} {', '.join(missing)} (a foreign or incomplete "
                                f"checkpoint)")
    record = state.get("integrity")
    if record is None:
        raise CheckpointInvalid("missing key integrity (not a checkpoint gatscale wrote)")
    if not isinstance(record, dict) or not {"keys", "sha256"} <= set(record):
        raise CheckpointInvalid("not a checkpoint (malformed integrity record)")
    lost = [k for k in record["keys"] if k not in state]
    if lost:
        raise CheckpointInvalid(f"missing key{'s' * (len(lost) > 1)} {', '.join(lost)}, which it was written with")
    if state_digest(state) != record["sha256"]:
        raise CheckpointInvalid("integrity hash mismatch (the content does not match the SHA-256 it was written "
                                "with: altered or damaged)")
    if "config_hash" in record and _config_hash(state["config"]) != record["config_hash"]:
        raise CheckpointInvalid(f"integrity hash mismatch (its config does not match the config hash it was written "
                                f"with, {record['config_hash']})")


# ---------------------------------------------------------------------------------------------
# Saving

class _RecordingWriter:
    """The temporary file, remembering an OSError of a write: torch.save may report it as a bare RuntimeError."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self):
        self.f.flush()


def save_checkpoint(run_dir: Path, step: int, state: dict, keep: int) -> Path:
    """Atomically write checkpoints/ckpt-<step>.pt (with its integrity record), then delete the oldest of the
    others so that `keep` remain, the one just written always among them."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ckpt-{step:07d}.pt"
    writer = None
    try:
        with atomic_open(path, "wb") as f:
            writer = _RecordingWriter(f)
            torch.save(with_integrity(state), writer)
    except (OSError, RuntimeError) as e:
        cause = writer.error if writer is not None and writer.error is not None else e
        raise CheckpointSaveError(save_error_message(path, cause)) from e
    others = [p for p in list_checkpoints(run_dir) if p != path]
    for old in others[:max(len(others) - (keep - 1), 0)]:
        old.unlink(missing_ok=True)
    return path


def save_error_message(path: Path, error: BaseException) -> str:
    """'ENOSPC (No space left on device) writing PATH; 0.0 GiB free of 9.8 GiB there; ...': the error by its meaning."""
    code = getattr(error, "errno", None)
    what = f"{errno.errorcode.get(code, code)} ({os.strerror(code)})" if code else f"{type(error).__name__}: {error}"
    try:
        usage = shutil.disk_usage(path.parent)
        space = f"{usage.free / 2**30:.2f} GiB free of {usage.total / 2**30:.1f} GiB there"
    except OSError:
        space = "free space unknown"
    return f"{what} writing {path}; {space}; the older checkpoints are intact"


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete temporary checkpoint files a killed writer left (call only while holding the run's lock)."""
    folder = checkpoint_dir(run_dir)
    stale = [p for p in folder.iterdir() if TMP_PATTERN.match(p.name)] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


# ---------------------------------------------------------------------------------------------
# Loading

def load_checkpoint(path: Path, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def why_unloadable(path: Path, error: Exception) -> str:
    """Why torch.load(weights_only=True) could not read a file, in a few words (torch's text is not repeated; it
    raises OSError for some truncated archives). Raises the OSError of a file this process cannot open or read."""
    with open(path, "rb") as f:
        head = f.read(len(ZIP_MAGIC))
    if not head:
        return "truncated (an empty file)"
    if head != ZIP_MAGIC:
        return "not a checkpoint (not a file torch.save writes)"
    if not zipfile.is_zipfile(path):
        return "truncated (the archive is cut short)"
    if isinstance(error, pickle.UnpicklingError):
        return "not a checkpoint (it holds objects other than tensors and plain containers)"
    return f"damaged (torch cannot read it: {type(error).__name__})"


def why_unusable(error: Exception) -> str:
    """The short reason a checkpoint did not pass (read_valid's error)."""
    if isinstance(error, CheckpointInvalid):
        return str(error)
    if isinstance(error, OSError):
        return f"unreadable ({error.strerror or error})"
    return f"{type(error).__name__}: {error}"[:300]


def read_valid(path: Path, required=TRAINING_STATE, map_location="cpu") -> dict:
    """Load and validate one checkpoint; raises CheckpointInvalid (with a short reason) if it does not pass."""
    try:
        state = load_checkpoint(path, map_location)
    except Exception as e:  # noqa: BLE001 - any file can sit under a checkpoint's name
        raise CheckpointInvalid(why_unloadable(path, e)) from e
    validate_checkpoint(state, required)
    return state


@dataclass
class Latest:
    state: dict | None = None          # the newest checkpoint that passed, loaded
    path: Path | None = None
    rejected: list[tuple[Path, str]] = field(default_factory=list)  # newer ones that did not pass, and why


def find_latest_valid(run_dir: Path, required=TRAINING_STATE, map_location="cpu") -> Latest:
    """The newest checkpoint that loads and validates; the newer ones that do not are listed with the reason."""
    found = Latest()
    for path in reversed(list_checkpoints(run_dir)):
        try:
            found.state, found.path = read_valid(path, required, map_location), path
            return found
        except Exception as e:  # noqa: BLE001 - unreadable, foreign or altered: try the previous one
            found.rejected.append((path, why_unusable(e)))
    return found


def set_aside(paths: list[Path]) -> list[Path]:
    """Move rejected checkpoints to checkpoints/rejected/ (out of resume and pruning; kept for inspection)."""
    moved = []
    for p in paths:
        target = p.parent / REJECTED_DIR / p.name
        target.parent.mkdir(exist_ok=True)
        os.replace(p, target)
        moved.append(target)
    return moved


def load_latest(run_dir: Path, map_location="cpu", required=TRAINING_STATE) -> tuple[dict, Path] | tuple[None, None]:
    """The newest valid checkpoint (warning on stderr about each newer one skipped), or (None, None)."""
    import sys
    found = find_latest_valid(run_dir, required, map_location)
    for path, why in found.rejected:
        print(f"[gatscale] warning: checkpoint {path} skipped ({why}); trying the previous one", file=sys.stderr)
    return found.state, found.path


def checkpoint_config(saved: dict, source: str | None = None):
    """The RunConfig a checkpoint was trained with (its `config`, a plain dict)."""
    from gatscale.core.config import config_from_dict
    return config_from_dict(saved, source=source)


def load_generator(path_or_run_dir, which: str = "ema", device="cpu"):
    """(Generator in eval mode, RunConfig) from a checkpoint file or a run folder's newest checkpoint.

    which: 'ema' (the EMA weights, what the paper evaluates) or 'generator' (the raw weights).
    """
    from ..models import generator_from_config

    path = Path(path_or_run_dir)
    if which not in ("ema", "generator"):
        raise ValueError(f"which = {which!r}: must be 'ema' or 'generator'")
    if path.is_dir():
        state, found = load_latest(path, required=("config", which))
        if state is None:
            raise FileNotFoundError(f"{path}: no valid checkpoint in {checkpoint_dir(path)}")
    elif path.is_file():
        state = read_valid(path, required=("config", which))
    else:
        raise FileNotFoundError(f"{path}: neither a checkpoint file nor a run folder")
    cfg = checkpoint_config(state["config"], source=str(path))
    G = generator_from_config(cfg)
    G.load_state_dict(state[which])
    return G.to(device).eval().requires_grad_(False), cfg
