"""GPU-hour estimates for the dry run and `gatscale predict`: images/s measured by finished runs of the same shape,
else the table's measured images/s per size and device, else FLOPs / (peak x MFU); each estimate says which.

Every finished run records what it measured in its status.json (`throughput`: device, the networks' shapes, batch,
precision, wall-clock images/s; gatscale/train/trainer.py throughput_record). `measured_runs(runs_dir)` collects
them from every study folder under the runs folder; a run to estimate matches one with the same device, shapes,
resolution, batch, precision, device count and FID cadence (the median over the matches is used).

The table is a small YAML (configs/throughput.yaml): `measured: {device: {model: images/s per GPU}}`,
`peak_tflops: {device: TFLOP/s}`, `assumed_mfu`. The FLOPs are `run_flops(cfg).iteration` (one D step and
one G step over the global batch, gatscale/models/flops.py) times the iterations.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from gatscale.core.config import ConfigError, read_yaml
from gatscale.models.flops import run_flops
from .spec import Run

DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "configs" / "throughput.yaml"


@dataclass
class Estimate:
    hours: float | None      # device-hours (GPU-hours; CPU-hours for a CPU-only run)
    how: str                 # 'measured (N runs)', 'measured (table)', 'assumed MFU 35%' or why there is none


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


def measured_runs(runs_dir: Path) -> list[dict]:
    """The `throughput` records of every finished run folder under runs_dir/<study>/<run>."""
    found = []
    for status in Path(runs_dir).glob("*/*/status.json"):
        try:
            record = json.loads(status.read_text()).get("throughput")
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(record, dict) and record.get("images_per_s"):
            found.append(record)
    return found


def _same_shape(run: Run, device: str, record: dict) -> bool:
    cfg = run.config
    shape = lambda net: {k: net.arch()[k] for k in ("depth", "hidden_size", "patch_size") if k in net.arch()}
    on_gpu = record["device"] != "cpu"
    precision = cfg.train.precision if cfg.train.precision != "auto" else ("bf16" if on_gpu else "fp32")
    same_device = (device == "cpu" and not on_gpu) or (device != "cpu" and device.lower() in record["device"].lower())
    return (same_device and record.get("generator") == shape(cfg.model.generator)
            and record.get("discriminator") == shape(cfg.model.discriminator)
            and record.get("resolution") == cfg.data.resolution and record.get("batch_size") == cfg.train.batch_size
            and record.get("precision") == precision and record.get("devices") == max(run.gpus, 1)
            and record.get("fid_every") == cfg.eval.fid_every)


def estimate(run: Run, device: str, table: dict, measured: list[dict] | None = None) -> Estimate:
    """Device-hours of `run`: from `measured` (measured_runs) where a finished run of its shape recorded its
    throughput, else the table."""
    device = device if run.gpus else "cpu"
    images = run.config.train.iterations * run.config.train.batch_size
    matches = [r["images_per_s"] for r in measured or () if _same_shape(run, device, r)]
    if matches:
        return Estimate(images / statistics.median(matches) / 3600 * max(run.gpus, 1),
                        f"measured ({len(matches)} run{'s' * (len(matches) > 1)})")
    measured = (table.get("measured") or {}).get(device, {}).get(run.model)
    if measured and run.config.model.generator.depth is None and run.config.model.generator.hidden_size is None:
        return Estimate(images / float(measured) / 3600, "measured (table)")
    peak, mfu = (table.get("peak_tflops") or {}).get(device), float(table.get("assumed_mfu", 0.35))
    if not peak:
        return Estimate(None, f"no peak_tflops for {device!r}")
    return Estimate(run_cost(run) / (float(peak) * 1e12 * mfu) / 3600, f"assumed MFU {mfu:.0%}")
