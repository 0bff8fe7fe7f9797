"""What a tracker run is labelled with: MLflow-valid names, params, tags, code version and job id.

MLflow rejects a whole `log_batch` when one name or value is invalid, so everything is made valid here,
before it enters the run folder's buffer (a rejected record would otherwise block the ones behind it).
Limits follow mlflow.utils.validation: names of [/\\w.- :] up to 250 chars with no empty, '.' or '..'
path parts; param values up to 6000 chars, tag values up to 8000.
"""
from __future__ import annotations

import getpass
import logging
import os
import re
import socket
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 250
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
_BAD_NAME_CHARS = re.compile(r"[^/\w.\- :]")


@lru_cache(maxsize=4096)
def valid_name(name: str) -> str:
    """`name` if MLflow accepts it as a metric/param/tag key, else a close valid spelling (with a warning)."""
    fixed = _BAD_NAME_CHARS.sub("_", str(name))[:MAX_NAME_LENGTH]
    fixed = "/".join(part if part not in ("", ".", "..") else "_" for part in fixed.split("/"))
    if fixed != name:
        log.warning("tracking: name %r is not valid for MLflow; logged as %r", name, fixed)
    return fixed


def _clip(key: str, value, limit: int, what: str) -> str:
    text = str(value)
    if len(text) > limit:
        log.warning("tracking: %s %r has %d chars, more than MLflow's %d; the logged value is cut short",
                    what, key, len(text), limit)
        text = text[: limit - 3] + "..."
    return text


def clean_params(params: dict) -> dict[str, str]:
    return {valid_name(k): _clip(k, v, MAX_PARAM_LENGTH, "param") for k, v in params.items()}


def clean_tags(tags: dict) -> dict[str, str]:
    return {valid_name(k): _clip(k, v, MAX_TAG_LENGTH, "tag") for k, v in tags.items()}


@lru_cache(maxsize=1)
def code_version() -> dict[str, str]:
    """Commit and dirty flag of the git checkout that holds the imported `gatscale` package, else 'unknown'."""
    import gatscale
    package = Path(gatscale.__file__).resolve().parent

    def git(*args):
        return subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True,
                              timeout=20, check=True).stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "__init__.py")  # the package itself is tracked by this checkout
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"gatscale.git_commit": "unknown", "gatscale.git_dirty": "unknown"}
    return {"gatscale.git_commit": commit, "gatscale.git_dirty": str(dirty).lower()}


def job_id() -> str:
    """The backend's id of this process: GATSCALE_JOB_ID (set by any backend), SLURM array/job id, a Ray Tune
    trial id, else local-<host>-<pid>."""
    env = os.environ
    if env.get("GATSCALE_JOB_ID"):
        return env["GATSCALE_JOB_ID"]
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    if env.get("SLURM_JOB_ID"):
        return env["SLURM_JOB_ID"]
    if "ray" in sys.modules:  # inside a Ray Tune trial (never import ray just to ask)
        try:
            from ray import tune
            trial_id = tune.get_context().get_trial_id()
            if trial_id:
                return f"ray-{trial_id}"
        except Exception:
            pass
    return f"local-{socket.gethostname()}-{os.getpid()}"


def run_tags(name: str, run_dir: Path, kind: str = "train") -> dict[str, str]:
    """The tags every gatscale tracker run carries (design.md), plus MLflow's own user/source tags."""
    version = code_version()
    tags = {"gatscale.name": name, "gatscale.run_dir": str(run_dir), "gatscale.kind": kind,
            "gatscale.job_id": job_id(), **version, "mlflow.source.name": "gatscale", "mlflow.source.type": "JOB"}
    if version["gatscale.git_commit"] != "unknown":
        tags["mlflow.source.git.commit"] = version["gatscale.git_commit"]
    try:
        tags["mlflow.user"] = getpass.getuser()
    except Exception:
        pass
    return tags


def study_tags(cfg, lr_g: float, lr_d: float) -> dict[str, str]:
    """The few settings that tell the runs of a study apart, as short tags the MLflow runs table can show beside
    the run name (the full config stays in the params): size and patch of G (D's when it differs), MNG, REPA,
    the LR rule and the effective learning rates, the seed. cfg: RunConfig."""
    g, d = cfg.model.generator, cfg.model.discriminator
    size, _, patch = g.size.removeprefix("GAT-").partition("/")
    shrunk = g.depth is not None or g.hidden_size is not None
    tags = {"size": size + (f" ({g.arch()['depth']}x{g.arch()['hidden_size']})" if shrunk else ""), "patch": patch,
            "mng": cfg.method.mng, "repa": "on" if cfg.method.repa else "off",
            "lr_mode": "width-aware" if cfg.optim.width_aware_lr else "fixed",
            "lr_g": f"{lr_g:.3g}", "lr_d": f"{lr_d:.3g}", "seed": str(cfg.train.seed)}
    if d.size != g.size:
        tags["size_d"] = d.size.removeprefix("GAT-")
    return tags
