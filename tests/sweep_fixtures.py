"""Tiny sweep specs for the sweep tests (runs of tests/train_fixtures.py's tiny config)."""
import subprocess
import sys
from pathlib import Path

import yaml

from train_fixtures import REPO, tiny_run_dict, wait_for  # noqa: F401  (re-exported for the sweep tests)


def write_spec(path: Path, text: str | None = None, **spec) -> Path:
    """A spec file: `text` as given, else `spec` over a base of the tiny run config."""
    path.write_text(text if text is not None else yaml.safe_dump({"name": "t", "base": tiny_run_dict(), **spec}))
    return path


def two_run_spec(path: Path, iterations=(20, 20), uri: str | None = None, **extra) -> Path:
    """Two tiny runs (seeds 0 and 1), each with its own iteration count."""
    base = tiny_run_dict(train={"checkpoint_every": 10})
    if uri:
        base["tracking"] = {"backend": "mlflow", "uri": uri}
    return write_spec(path, text=yaml.safe_dump({
        "name": "t", "base": base,
        "zip": {"train.seed": [0, 1], "train.iterations": list(iterations)}, **extra}))


def gatscale(*args: str, cwd: Path, **popen) -> subprocess.Popen:
    """`gatscale ARGS` in a subprocess of its own session (so a test can kill its whole process group)."""
    return subprocess.Popen([sys.executable, "-m", "gatscale.cli", *args], cwd=cwd, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def run_starts(run_dir: Path) -> int:
    """How many times the trainer started this run (its 'run NAME (HASH): ...' log line)."""
    log = run_dir / "log.txt"
    name = run_dir.name
    return sum(1 for line in log.read_text().splitlines() if f" run {name} (" in line) if log.exists() else 0
