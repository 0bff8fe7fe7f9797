"""Cluster profiles: what one SLURM cluster needs to run a GAT model size, loaded from YAML.

A profile names the partition/account/QOS, the node shape (GPUs, CPUs and memory per GPU), how the
cluster spells GPU requests (`gres`), setup lines, and a table of GPUs and wall time per model size.
One vocabulary for what a run needs: `Resources` (GPUs, nodes, wall time, partition) is one row of the size
table (`sizes.B`) or a sweep spec's override of it (`per_size.B.resources`); `parse_resources` checks one,
`merge_resources` lays rows over each other, `profile_resources(profile, 'GAT-B/2')` is the profile's row for a
model. `submitit_parameters(profile, 'GAT-B/2')` turns it into `submitit.AutoExecutor.update_parameters` kwargs
(None values mean "not set"; submitit drops them), `executor_kwargs(profile)` into the constructor's:

    executor = submitit.AutoExecutor(folder, **executor_kwargs(profile))
    executor.update_parameters(**submitit_parameters(profile, "GAT-B/2"))

Shipped profiles: slurm/profiles/*.yaml; slurm/README.md explains how to write one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatscale.core.config import ConfigError, from_dict, read_yaml, setting
from gatscale.core.sizes import GAT_SIZES, MODEL_NAMES, size_letter

PROFILES_DIR = Path(__file__).resolve().parents[2] / "slurm" / "profiles"

# sbatch options a profile sets through its own keys; additional_parameters must not repeat them.
_OWN_KEYS = {"partition": "partition", "account": "account", "qos": "qos", "constraint": "constraint",
             "gres": "gres", "gpus-per-node": "gres or sizes.*.gpus", "gpus": "sizes.*.gpus",
             "nodes": "sizes.*.nodes", "time": "sizes.*.time_min", "mem": "mem_per_gpu",
             "cpus-per-task": "cpus_per_gpu", "ntasks-per-node": "sizes.*.gpus", "array": "array_parallelism",
             "signal": "signal_delay_s"}


@dataclass
class Resources:
    """One row of the size table; a field left out falls back to the size letter's row, then 'default'."""
    gpus: int | None = setting(None, ">= 0")                # GPUs per run, over all its nodes (0: CPU only)
    nodes: int | None = setting(None, ">= 1")               # None: as few as hold `gpus` (ceil(gpus / gpus_per_node))
    time_min: int | None = setting(None, ">= 1 (minutes)")  # a job's wall-time limit; longer runs resume after requeue
    partition: str | None = None                            # None: the profile's partition


@dataclass
class ClusterProfile:
    name: str = "cluster"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None       # --constraint, node features (sinfo -o '%N %f')
    gpus_per_node: int = setting(0, ">= 0")          # GPUs one node has: the most a run takes per node
    cpus_per_gpu: int = setting(8, ">= 1")           # CPUs per task; one task per GPU (a CPU-only run is one task)
    mem_per_gpu: float = setting(32.0, "> 0 (GB)")   # GB of host memory per task
    gres: str | None = None             # e.g. 'gpu:h100:{n}' -> --gres=gpu:h100:<GPUs per node>; None: --gpus-per-node
    max_requeue: int = setting(3, ">= 0")            # submitit requeues a timed-out job at most this often
    signal_delay_s: int = setting(90, ">= 0")        # USR2 this long before the time limit: time to write a checkpoint
    array_parallelism: int = setting(64, ">= 1")     # array tasks running at once (sbatch --array=...%N)
    setup: list[str] = field(default_factory=list)           # shell lines before the job (module load, activate)
    additional_parameters: dict[str, Any] = field(default_factory=dict)  # other sbatch options, no leading '--'
    sizes: dict[str, Resources] = field(default_factory=dict)  # keys: 'S', 'B', 'L', 'XL', 'GAT-B/2', 'default'
    source: str | None = field(default=None, init=False)  # the YAML file, for error messages (not a profile key)


def load_profile(path_or_name: str | Path) -> ClusterProfile:
    """Load a profile from a YAML file, or by name from slurm/profiles/ ('example-h100')."""
    path = Path(path_or_name)
    if not path.exists() and path.suffix == "" and len(path.parts) == 1:
        path = PROFILES_DIR / f"{path_or_name}.yaml"
    if not path.exists():
        shipped = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
        raise ConfigError(None, "profile", str(path_or_name), f"file not found (shipped profiles: {shipped})")
    return profile_from_dict(read_yaml(path, "profile"), str(path), default_name=path.stem)


def profile_from_dict(data: Any, source: str | None = None, default_name: str = "cluster") -> ClusterProfile:
    """The scalar keys through config.from_dict (types and the ranges declared above); setup, sbatch options and
    the size table by their own checks below."""
    if not isinstance(data, dict):
        raise ConfigError(source, "<root>", data, "expected a mapping of profile keys")
    own = ("setup", "additional_parameters", "sizes")
    profile = from_dict(ClusterProfile, {"name": default_name} | {k: v for k, v in data.items() if k not in own},
                        source)
    profile.setup = _string_list(data.get("setup"), "setup", source)
    profile.additional_parameters = _additional_parameters(data.get("additional_parameters"), source)
    profile.sizes = _sizes(data.get("sizes"), source)
    profile.source = source
    _validate(profile)
    return profile


def _string_list(value, key, source) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(source, key, value, "expected a list of shell lines (strings)")
    return list(value)


def _additional_parameters(value, source) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(source, "additional_parameters", value, "expected a mapping of sbatch option -> value")
    for k, v in value.items():
        key = f"additional_parameters.{k}"
        if not isinstance(k, str) or k.startswith("-"):
            raise ConfigError(source, key, v, "write the sbatch option without leading dashes (mail-type: FAIL)")
        if k.replace("_", "-") in _OWN_KEYS:
            raise ConfigError(source, key, v, f"set this with the profile key {_OWN_KEYS[k.replace('_', '-')]!r}")
        if not isinstance(v, (str, int, float, bool)):
            raise ConfigError(source, key, v, "expected a string, number or true")
    return dict(value)


def _sizes(value, source) -> dict[str, Resources]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(source, "sizes", value,
                          "expected a mapping: size (S, B, L, XL, 'GAT-B/2', default) -> resources")
    valid_keys = ("default", *GAT_SIZES, *MODEL_NAMES)
    for size, row in value.items():
        if size not in valid_keys:
            raise ConfigError(source, f"sizes.{size}", row,
                              f"unknown size; valid: default, {', '.join(GAT_SIZES)} or a full name like 'GAT-B/2'")
    return {size: parse_resources(row, source, f"sizes.{size}") for size, row in value.items()}


def parse_resources(value, source: str, where: str) -> Resources:
    """One checked size-table row: a profile's `sizes.B` or a sweep spec's `per_size.B.resources`."""
    return from_dict(Resources, value, source, prefix=f"{where}.")


def merge_resources(*rows: Resources) -> Resources:
    """Field-wise: the last row that sets a field wins."""
    out = Resources()
    for row in rows:
        for name in Resources.__dataclass_fields__:
            if getattr(row, name) is not None:
                setattr(out, name, getattr(row, name))
    return out


def _validate(p: ClusterProfile):
    def fail(key, value, msg):
        raise ConfigError(p.source, key, value, msg)

    if p.gres is not None:
        try:
            p.gres.format(n=1)
        except (KeyError, IndexError, ValueError):
            fail("gres", p.gres, "may only use the placeholder {n} (GPUs per node), e.g. 'gpu:h100:{n}'")
        if "{n}" not in p.gres:
            fail("gres", p.gres, "must contain {n} for the GPUs per node, e.g. 'gpu:h100:{n}' or 'gpu:{n}'")


def profile_resources(profile: ClusterProfile, model_name: str) -> Resources:
    """The size-table row for a model: each field from 'GAT-B/2', else 'B', else 'default'."""
    if model_name not in MODEL_NAMES:
        raise ConfigError(profile.source, "model", model_name, f"unknown model; valid: {', '.join(MODEL_NAMES)}")
    letter = size_letter(model_name)
    return merge_resources(*(profile.sizes[k] for k in ("default", letter, model_name) if k in profile.sizes))


def submitit_parameters(profile: ClusterProfile, model_name: str, resources: Resources | None = None,
                        gpus: int | None = None) -> dict:
    """`AutoExecutor.update_parameters` kwargs for one run of `model_name` ('GAT-B/2').

    `resources`: the run's row when already resolved (a sweep run's, with the spec's overrides); default the
    profile's row for the size. `gpus` overrides the row's GPU count. One task per GPU on each node
    (tasks_per_node = GPUs per node; a CPU-only run is one task).
    """
    row = resources if resources is not None else profile_resources(profile, model_name)
    where = f"sizes.{size_letter(model_name)}"  # the key a user most likely adds

    def fail(key, value, msg):
        raise ConfigError(profile.source, key, value, f"{msg} (model {model_name})")

    if gpus is None:
        gpus = row.gpus
        if gpus is None:
            fail(f"{where}.gpus", None, "no GPU count for this size: set it there or in sizes.default.gpus")
    elif isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        fail("gpus", gpus, "the gpus argument must be an integer >= 0")
    if row.time_min is None:
        fail(f"{where}.time_min", None, "no wall time for this size: set it there or in sizes.default.time_min")
    if row.time_min * 60 <= profile.signal_delay_s:
        fail("signal_delay_s", profile.signal_delay_s,
             f"must be shorter than the time limit {row.time_min} min, or the job is signalled as it starts")
    if gpus and profile.gpus_per_node == 0:
        fail("gpus_per_node", 0, f"a run with {gpus} GPUs needs a GPU cluster: set gpus_per_node")
    nodes = row.nodes or (math.ceil(gpus / profile.gpus_per_node) if gpus else 1)
    if gpus % nodes:
        fail(f"{where}.nodes", nodes, f"{gpus} GPUs do not split evenly over {nodes} nodes")
    per_node = gpus // nodes
    if per_node > profile.gpus_per_node and gpus:
        fail(f"{where}.nodes", nodes, f"{per_node} GPUs per node exceed gpus_per_node={profile.gpus_per_node}")
    tasks = max(per_node, 1)
    return dict(
        slurm_partition=row.partition or profile.partition,
        slurm_account=profile.account,
        slurm_qos=profile.qos,
        slurm_constraint=profile.constraint,
        gpus_per_node=per_node if per_node and profile.gres is None else None,
        slurm_gres=profile.gres.format(n=per_node) if per_node and profile.gres else None,
        tasks_per_node=tasks,
        cpus_per_task=profile.cpus_per_gpu,
        mem_gb=profile.mem_per_gpu * tasks,
        timeout_min=row.time_min,
        nodes=nodes,
        slurm_additional_parameters=dict(profile.additional_parameters),
        slurm_setup=list(profile.setup),
        slurm_array_parallelism=profile.array_parallelism,
        slurm_signal_delay_s=profile.signal_delay_s,
    )


def executor_kwargs(profile: ClusterProfile) -> dict:
    """`AutoExecutor(folder, **executor_kwargs(profile))`: settings submitit takes only at construction."""
    return dict(slurm_max_num_timeout=profile.max_requeue)
