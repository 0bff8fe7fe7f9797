"""GPU-hour estimates for the dry run: measured images/s per size and device, else FLOPs / (peak x MFU).

The table is a small YAML (configs/throughput.yaml): `measured: {device: {model: images/s per GPU}}`,
`peak_tflops: {device: TFLOP/s}`, `assumed_mfu`. The FLOPs are `run_flops(cfg).iteration` (one D step and
one G step over the global batch, gatscale/flops.py) times the iterations.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError, read_yaml
from ..flops import run_flops
from .spec import Run

DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "configs" / "throughput.yaml"


@dataclass
class Estimate:
    hours: float | None      # device-hours (GPU-hours; CPU-hours for a CPU-only run)
    how: str                 # 'measured' or 'est. MFU 35%' or why there is none


def load_table(path: Path | None = None) -> dict:
    path = Path(path or DEFAULT_TABLE)
    table = read_yaml(path, "throughput", empty_ok=True)
    for key in ("measured", "peak_tflops"):
        if not isinstance(table.get(key, {}), dict):
            raise ConfigError(str(path), key, table[key], "expected a mapping keyed by device")
    return table


def run_cost(run: Run) -> float:
    """Training FLOPs of the whole run (GPU-hour estimates; the local backend starts the longest first)."""
    return float(run_flops(run.config).iteration) * run.config.train.iterations


def estimate(run: Run, device: str, table: dict) -> Estimate:
    device = device if run.gpus else "cpu"
    images = run.config.train.iterations * run.config.train.batch_size
    measured = (table.get("measured") or {}).get(device, {}).get(run.model)
    if measured and run.config.model.generator.depth is None and run.config.model.generator.hidden_size is None:
        return Estimate(images / float(measured) / 3600, "measured")
    peak, mfu = (table.get("peak_tflops") or {}).get(device), float(table.get("assumed_mfu", 0.35))
    if not peak:
        return Estimate(None, f"no peak_tflops for {device!r}")
    return Estimate(run_cost(run) / (float(peak) * 1e12 * mfu) / 3600, f"est. MFU {mfu:.0%}")
