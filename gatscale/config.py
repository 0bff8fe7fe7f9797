"""The run config: typed dataclasses, loaded from YAML, validated in one place.

Every number that matters for the science is a named field with the official default and a
comment saying where it comes from (github.com/hse1032/GAT, scripts/train_256_B2.sh, train.py).
Errors name the file, the key path and the value: `ConfigError: configs/x.yaml: train.batch_size = 7: ...`.
Each dataclass states what its fields may hold in `RULES`, beside the declarations (see `rule_error`); every
value is checked when it is read (config file, `--set`, sweep spec) and again, with the relations between
fields, in `validate`.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .atomic import atomic_write_text
from .errors import InputError
from .sizes import DIGITS_ENCODER, parse_model_name


class ConfigError(InputError, ValueError):
    """A config value is unknown, mistyped or impossible. The message names file, key and value."""

    def __init__(self, source: str | None, key: str, value: Any, message: str):
        self.source, self.key, self.value = source, key, value
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key} = {value!r}: {message}")


@dataclass
class NetConfig:
    """One network: a paper size name plus optional overrides (tiny configs shrink a size)."""
    size: str = "GAT-B/2"
    depth: int | None = None        # None: from the size table
    hidden_size: int | None = None
    num_heads: int | None = None
    RULES = {"size": "a GAT model name", "depth": "[1, 1024]", "hidden_size": "[1, 65536]", "num_heads": "[1, 1024]"}

    def arch(self) -> dict:
        arch = parse_model_name(self.size)
        arch.update({k: v for k in ("depth", "hidden_size", "num_heads") if (v := getattr(self, k)) is not None})
        return arch


@dataclass
class ModelConfig:
    generator: NetConfig = field(default_factory=NetConfig)
    discriminator: NetConfig = field(default_factory=NetConfig)
    num_levels: int = 4                 # K MNG heads, tapped every depth/K blocks (official rgb_every = depth // 4)
    z_dim: int = 64                     # latent code and class-embedding width of G's mapping network
    input_tokens: Literal["sincos", "fourier"] = "sincos"  # code: sin-cos PE; paper figure: Fourier PE
    pos_embed: Literal["trainable", "frozen"] = "trainable"  # G/D sin-cos PE: official train.py trains it (requires_grad_(True))
    qk_norm: bool = True                # official --qk-norm default
    cmap_dim: int = 2048                # D projection-head width
    projector_dim: int = 2048           # REPA projector hidden width (REPA build_mlp)
    grad_checkpointing: bool = False    # official checkpoints every block; costs ~1/3 more compute
    compile: bool = False               # torch.compile G and D
    RULES = {"num_levels": "[1, 1024]", "z_dim": "[1, 65536]", "cmap_dim": "[1, 65536]", "projector_dim": "[1, 65536]"}


@dataclass
class MethodConfig:
    mng: Literal["exp", "linear", "vp", "off"] = "exp"  # exp: official schedule; vp: paper's transcribed formula
    mng_min_info: float = 0.125         # I_min of info_per_layer: signal 1/8 at the earliest level
    mng_t_offset: float = 0.01          # official adds 1e-2 to every noise level (final level t = 0.01)
    r1_gamma: float = 0.1               # scripts/train_256_B2.sh R1_gamma; loss weight is gamma/2
    r2_gamma: float = 0.1               # R2_gamma
    gp_sigma: float = 0.01              # approximated_GP_std: finite-difference step of the approx R1/R2
    augment: str = "color,translation,cutout,flip"  # DiffAugment policy on latents (official policy)
    repa: bool = True                   # REPA on D (official --enc-type dinov2-vit-b)
    repa_weight: float = 1.0            # --proj-coeff
    RULES = {"mng_min_info": "(0, 1)", "mng_t_offset": "[0, 0.1)", "r1_gamma": ">= 0", "r2_gamma": ">= 0",
             "gp_sigma": "> 0", "augment": "a DiffAugment policy", "repa_weight": ">= 0"}


@dataclass
class EncoderConfig:
    """The REPA target encoder (DINOv2 ViT-B/14 in the paper) through timm."""
    name: str = "vit_base_patch14_dinov2.lvd142m"  # timm id of facebookresearch dinov2_vitb14, or 'digits-vit':
    #   the digits encoder (a tiny ViT trained on the digits set, cached; its own 16 px resolution, no kwargs)
    pretrained: bool = True            # False: random init, a stand-in for tests (runs are tagged so)
    checkpoint: str | None = None      # local weights file (safetensors/pt) instead of the hub
    resolution: int = 224              # raw images are bicubically resized to this before the encoder
    kwargs: dict = field(default_factory=dict)  # extra timm.create_model kwargs (tiny stand-ins)
    RULES = {"name": "non-empty", "checkpoint": "non-empty", "resolution": "[1, 4096]"}


@dataclass
class OptimConfig:
    lr: float = 2e-4                    # eta_base (train_256_B2.sh --learning-rate 2e-4)
    width_aware_lr: bool = True         # lr = lr * base_width / C_model, separately for G and D (paper Eq. 4)
    base_width: int = 768               # C_base (GAT-B)
    betas: tuple[float, float] = (0.0, 0.99)  # --adam-beta1/2
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0              # --max-grad-norm, G and D
    ema_decay: float = 0.999            # update_ema default in train.py (DiT uses 0.9999)
    RULES = {"lr": "> 0", "base_width": "[1, 65536]", "betas": "[0, 1)", "eps": "> 0", "weight_decay": ">= 0",
             "grad_clip": ">= 0", "ema_decay": "[0, 1)"}


SD_VAE_SCALE = 0.18215  # SD-VAE latent scaling factor (REPA/GAT preprocessing; shift 0)
DIGITS_CLASSES = 10     # sklearn's load_digits: the embedded data set of `source: digits`


@dataclass
class DataConfig:
    source: Literal["digits", "shards"] = "digits"  # digits: embedded sklearn set; shards: extract-latents output
    path: str | None = None             # shards folder (source: shards); digits cache folder (optional)
    tokenizer: Literal["pixels", "sd-vae"] = "pixels"  # pixels: identity with scaling (CPU runs)
    resolution: int = 16                # image side in pixels
    num_classes: int = 10
    latent_scale: float | None = None   # None: 0.18215 for sd-vae (REPA preprocessing), 1.0 for pixels
    vae_decoder: str = "stabilityai/sd-vae-ft-ema"  # hub id or local folder; official sampler decodes with ft-ema
    load_images: bool = True            # serve raw uint8 images for REPA (needed when method.repa)
    num_workers: int = 2
    RULES = {"path": "non-empty", "resolution": "[1, 4096]", "num_classes": "[1, 1000000]", "latent_scale": "> 0",
             "vae_decoder": "non-empty", "num_workers": "[0, 256]"}

    @property
    def latent_channels(self) -> int:
        return 4 if self.tokenizer == "sd-vae" else 3

    @property
    def scale(self) -> float:
        if self.latent_scale is not None:
            return self.latent_scale
        return SD_VAE_SCALE if self.tokenizer == "sd-vae" else 1.0

    @property
    def latent_size(self) -> int:
        return self.resolution // 8 if self.tokenizer == "sd-vae" else self.resolution


@dataclass
class StabilityConfig:
    """GAN failure modes that do not produce NaN, judged at each log tick (and FID evaluation); any one that holds
    for `patience` ticks in a row ends the run as `diverged` with the reason (what `gatscale probe-lr` needs to
    stop an unstable trial early). A non-finite loss or gradient norm always does, within one step. 0 = off."""
    d_loss_below: float = 0.0           # D's relativistic loss (loss/d_adv = softplus(-(real - fake))) under this: D wins outright
    g_loss_above: float = 0.0           # G's loss (loss/g) above this: G gets no useful gradient
    logit_gap_above: float = 0.0        # |logits/real - logits/fake| above this
    fd_rise: float = 0.0                # FID (or fd_digits) above this factor times its first evaluated value
    patience: int = 1                   # consecutive ticks a mode must hold before the run is stopped

    RULES = {"d_loss_below": ">= 0", "g_loss_above": ">= 0", "logit_gap_above": ">= 0", "patience": ">= 1"}


@dataclass
class TrainConfig:
    batch_size: int = 512               # global batch (4 GPUs x 128 in train_256_B2.sh)
    iterations: int = 400_000           # --max-train-steps
    epochs: float | None = None         # if set, iterations = ceil(epochs * dataset size / batch)
    seed: int = 0                       # rank r uses seed + r
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    tf32: bool = True                   # --allow-tf32
    log_every: int = 100                # metrics reduced and logged every N steps (no per-step host sync)
    sample_every: int = 1250            # --sampling-steps: EMA sample grid
    checkpoint_every: int = 1250        # --latest-checkpointing-steps
    keep_checkpoints: int = 3           # last K checkpoints kept
    divergence_check_every: int = 1     # steps between finiteness checks (1 = stop within one step)
    stability: StabilityConfig = field(default_factory=StabilityConfig)  # non-NaN failure modes (off by default)
    RULES = {"batch_size": "[1, 16777216]", "iterations": f"[1, {10**12}]", "epochs": "> 0",
             "seed": f"[0, {2**31 - 1}]",  # seed + rank must stay a valid numpy seed
             "log_every": ">= 1", "sample_every": ">= 1", "checkpoint_every": ">= 1", "keep_checkpoints": ">= 1",
             "divergence_check_every": ">= 1"}


@dataclass
class EvalConfig:
    fid_every: int = 2500               # --eval-steps; 0 disables in-training FID
    fid_samples: int = 5000             # FID-5K during training
    feature_extractor: Literal["inception", "digits"] = "inception"  # digits: offline extractor, metric 'fd_digits'
    inception_weights: str | None = None  # local path to pt_inception-2015-12-05 weights (torch-fidelity)
    reference_stats: str | None = None  # .npz with mu/sigma (ADM VIRTUAL_imagenet256_labeled.npz or our cache)
    truncation_psi: float = 0.0         # official: psi = 0 (none) for FID-5K in training
    batch_size: int = 64
    fid_decoder: str = "stabilityai/sd-vae-ft-mse"  # in-training FID-5K and grids (official train.py decodes with ft-mse)
    precision: Literal["fp32", "bf16"] = "fp32"  # G and decoder for metrics: official code runs them fp32 (TF32)

    RULES = {"fid_every": ">= 0", "fid_samples": ">= 1", "inception_weights": "non-empty",
             "reference_stats": "non-empty", "fid_decoder": "non-empty", "truncation_psi": "[0, 1]", "batch_size": "[1, 16777216]"}


@dataclass
class TrackingConfig:
    backend: Literal["mlflow", "none"] = "mlflow"  # none: the run folder's metrics.jsonl only (FolderTracker)
    uri: str = "sqlite:///mlflow.db"    # or http://host:port of a shared mlflow server
    experiment: str = "gatscale"
    system_metrics: bool = False
    parent_run_id: str | None = None    # set by the sweep: the sweep's parent run
    aliases: str = ""                   # set by the sweep: the spec's other names of this run (comma-separated)
    run_name: str | None = None         # the MLflow run name (default: name); the sweep sets a short one

    RULES = {"experiment": "non-empty"}


@dataclass
class RunConfig:
    name: str = "run"
    run_dir: str | None = None          # default: runs/<name>
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    RULES = {"name": "non-empty", "run_dir": "non-empty"}


# Sections and fields that do not change a run's result: left out of its identity hash.
NON_RESULT_KEYS = ("name", "run_dir", "tracking", "data.num_workers", "train.log_every", "train.sample_every",
                   "train.checkpoint_every", "train.keep_checkpoints", "eval.batch_size")


# ---------------------------------------------------------------------------------------------
# Rules: what a field may hold, as written in the RULES of its dataclass.
#   "> 0", ">= 1"            a bound
#   "[0, 1)", "[1, 1024]"    an interval (open or closed at each end); a tuple field applies it to each entry
#   a name in NAMED_RULES    a check of its own ("non-empty", "a GAT model name", "a DiffAugment policy")
# None passes every rule (the optional fields' "not set"); floats must also be finite (see _coerce).

AUGMENT_OPS = ("color", "translation", "cutout", "flip")
NAMED_RULES = {
    "non-empty": lambda v: None if v.strip() else "must not be empty",
    "a GAT model name": lambda v: _error_of(parse_model_name, v),
    "a DiffAugment policy": lambda v: None if all(p in AUGMENT_OPS for p in v.split(",") if p) else
    f"unknown DiffAugment op; valid: a comma list of {', '.join(AUGMENT_OPS)} (or empty)",
}
_BOUND = re.compile(r"^(>=?)\s*(\S+)$")
_INTERVAL = re.compile(r"^([\[(])\s*([^,\s]+),\s*([^\])\s]+)\s*([\])])$")


def _error_of(check, value) -> str | None:
    try:
        check(value)
    except ValueError as e:
        return str(e)
    return None


def rule_error(rule: str, value: Any) -> str | None:
    """Why `value` breaks `rule` (a RULES entry), or None if it does not."""
    if value is None:
        return None
    if rule in NAMED_RULES:
        return NAMED_RULES[rule](value)
    for v in value if isinstance(value, tuple) else (value,):
        if m := _BOUND.match(rule):
            op, bound = m.group(1), float(m.group(2))
            if not (v >= bound if op == ">=" else v > bound):
                return f"must be {rule}"
        elif m := _INTERVAL.match(rule):
            lo, hi = float(m.group(2)), float(m.group(3))
            if not ((lo <= v if m.group(1) == "[" else lo < v) and (v <= hi if m.group(4) == "]" else v < hi)):
                return f"must be in {rule}" + (" (each entry)" if isinstance(value, tuple) else "")
        else:
            raise ValueError(f"unknown config rule {rule!r}")  # a typo in a RULES table
    return None


def coerce_field(cls, name: str, value: Any, key: str, source: str | None):
    """`value` for field `name` of config dataclass `cls`: type-checked (_coerce), then held to cls.RULES."""
    value = _coerce(value, field_types(cls)[name], key, source)
    rule = getattr(cls, "RULES", {}).get(name)
    if rule is not None and (why := rule_error(rule, value)) is not None:
        raise ConfigError(source, key, value, why)
    return value


def check_fields(cfg, source: str | None = None, prefix: str = ""):
    """Every field of `cfg` (a config dataclass, nested ones included) against its type and RULES."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_fields(value, source, f"{prefix}{f.name}.")
        else:
            coerce_field(type(cfg), f.name, value, prefix + f.name, source)


# ---------------------------------------------------------------------------------------------
# Loading: dict -> dataclass with type checks, unknown keys rejected.

def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp, key: str, source: str | None):
    """Check (and lightly coerce: int -> float, list -> tuple) `value` against the type hint `tp`."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(source, key, value, f"expected a mapping for section {key!r}")
        return _from_dict(tp, value, source, prefix=key + ".")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except ConfigError:
                pass  # try the next type; the error names them all
        raise ConfigError(source, key, value, f"expected {' or '.join(_type_name(a) for a in args)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(source, key, value, f"must be one of {', '.join(map(repr, allowed))}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(source, key, value, f"expected a list of {len(args)} values")
        return tuple(_coerce(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, key, value, "expected a mapping")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML 1.1 reads '1e-4' (no dot) as a string; accept numeric strings.
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    pass
                else:
                    return _coerce(value, float, key, source)
            raise ConfigError(source, key, value, "expected a number")
        if not math.isfinite(value):
            raise ConfigError(source, key, value, "expected a finite number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, key, value, "expected an integer")
        if abs(value) >= 2**63:
            raise ConfigError(source, key, value, "out of range (more than 64 bits)")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, key, value, "expected true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(source, key, value, "expected a string")
        return value
    raise TypeError(f"unsupported config type {tp} at {key}")


@functools.cache
def field_types(cls) -> dict:
    """The resolved type hints of a config dataclass (cached: resolving string annotations is slow)."""
    return typing.get_type_hints(cls)


def _from_dict(cls, data: dict, source: str | None, prefix: str = ""):
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            raise ConfigError(source, prefix + str(k), data[k], f"unknown key; valid keys here: {', '.join(sorted(names))}")
    kwargs = {k: coerce_field(cls, k, v, prefix + k, source) for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict, source: str | None = None) -> RunConfig:
    cfg = _from_dict(RunConfig, data or {}, source)
    validate(cfg, source)
    return cfg


def read_yaml_mapping(path: str | os.PathLike, what: str, source: str | None = None, empty_ok: bool = False) -> dict:
    """A YAML file whose top level is a mapping. A missing file is reported as `source: what = path` (the
    file or option that named it); invalid YAML or another top level under the file's own name."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(source, what, str(path), "file not found") from None
    except IsADirectoryError:
        raise ConfigError(source, what, str(path), "is a folder; expected a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "<file>", None, "not a text file; expected YAML") from None
    except yaml.YAMLError as e:
        raise ConfigError(str(path), "<yaml>", None, f"not valid YAML: {e}") from None
    if data is None and empty_ok:
        return {}
    if data is None:
        raise ConfigError(str(path), "<root>", None, f"the file is empty; expected a {what} (a YAML mapping)")
    if not isinstance(data, dict):
        raise ConfigError(str(path), "<root>", data, "expected a mapping at the top level")
    return data


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> RunConfig:
    """Load a run config from YAML, apply `key.path=value` overrides (values parsed as YAML), validate.
    Each override is first checked on its own, so that its errors name `--set` rather than the file."""
    source = str(path)
    data = read_yaml_mapping(path, "config")
    for item in overrides or []:
        _from_dict(RunConfig, set_by_path({}, item, source="--set"), "--set")
        set_by_path(data, item, source="--set")
    return config_from_dict(data, source)


def set_by_path(data: dict, assignment: str, source: str = "--set"):
    """Apply 'a.b.c=value' to a nested dict; the value is parsed as YAML ('1e-4' -> float)."""
    if "=" not in assignment:
        raise ConfigError(source, assignment, None, "expected key.path=value")
    key, raw = assignment.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(source, key.strip(), raw, f"the value is not valid YAML ({str(e).splitlines()[0]})") from None
    node = data
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(source, key, value, "expected key.path=value with a dotted key path such as optim.lr")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(source, key, value, f"{p!r} is not a section")
    node[parts[-1]] = value
    return data


def validate(cfg: RunConfig, source: str | None = None, world_size: int = 1):
    """Every field against its RULES, then the relations between fields; raises ConfigError naming the key and
    value at fault."""
    def fail(key, msg):
        raise ConfigError(source, key, _get(cfg, key), msg)

    check_fields(cfg, source)
    if cfg.data.tokenizer == "sd-vae" and cfg.data.resolution % 8:
        fail("data.resolution", "must be a multiple of 8 for the SD-VAE")
    for net in ("generator", "discriminator"):
        key = f"model.{net}"
        try:
            arch = getattr(cfg.model, net).arch()
        except ValueError as e:
            fail(f"{key}.size", str(e))
        if cfg.data.latent_size % arch["patch_size"]:
            fail(f"{key}.size", f"patch size {arch['patch_size']} does not divide the latent size "
                                f"{cfg.data.latent_size} (data.resolution={cfg.data.resolution}, tokenizer={cfg.data.tokenizer})")
        if arch["hidden_size"] % arch["num_heads"] or (arch["hidden_size"] // arch["num_heads"]) % 4:
            fail(f"{key}.hidden_size", f"width {arch['hidden_size']} / {arch['num_heads']} heads must give a head width divisible by 4 (2-D RoPE)")
    g_depth = cfg.model.generator.arch()["depth"]
    if cfg.model.num_levels < 1 or g_depth % cfg.model.num_levels:
        fail("model.num_levels", f"must be >= 1 and divide the generator depth {g_depth}")
    if cfg.data.source == "shards" and not cfg.data.path:
        fail("data.path", "source 'shards' needs the folder written by `gatscale extract-latents`")
    if cfg.method.repa and not cfg.data.load_images:
        fail("data.load_images", "REPA (method.repa: true) needs the raw images")
    if cfg.data.source == "digits" and cfg.data.num_classes < DIGITS_CLASSES:  # labels past the class embedding
        fail("data.num_classes", f"the digits data set has {DIGITS_CLASSES} classes")
    if cfg.train.batch_size % world_size:
        fail("train.batch_size", f"global batch is not divisible by the world size {world_size}")
    if cfg.encoder.name == DIGITS_ENCODER and cfg.encoder.kwargs:
        fail("encoder.kwargs", f"encoder.name {DIGITS_ENCODER!r} has a fixed architecture; remove encoder.kwargs")
    if cfg.train.stability.fd_rise != 0 and not cfg.train.stability.fd_rise > 1:
        fail("train.stability.fd_rise", "must be > 1 (a factor over the first FID) or 0 (off)")
    return cfg


def _get(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


# ---------------------------------------------------------------------------------------------
# Output: resolved dict, YAML dump, identity hash, flattened params.

def to_dict(cfg) -> dict:
    def convert(x):
        if dataclasses.is_dataclass(x):
            return {f.name: convert(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, tuple):
            return [convert(v) for v in x]
        if isinstance(x, dict):
            return {k: convert(v) for k, v in x.items()}
        return x
    return convert(cfg)


def dump_config(cfg: RunConfig, path: str | os.PathLike):
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _fields_but(cfg: RunConfig, ignore: tuple[str, ...]) -> dict:
    """The flattened config without the keys (or sections) in `ignore`."""
    return {k: v for k, v in flatten(to_dict(cfg)).items() if not any(k == n or k.startswith(n + ".") for n in ignore)}


def _digest(fields: dict, length: int) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(canonical.encode()).hexdigest()[:length]


def config_hash(cfg: RunConfig, length: int = 10) -> str:
    """Stable identity of a run's result: sha1 of the canonical JSON of its result-relevant fields."""
    return _digest(_fields_but(cfg, NON_RESULT_KEYS), length)


def effective_lr(cfg: RunConfig, net: str) -> float:
    """Width-aware LR (paper Eq. 4): lr_base * C_base / C_model, or lr_base unchanged when off."""
    width = getattr(cfg.model, net).arch()["hidden_size"]
    return cfg.optim.lr * cfg.optim.base_width / width if cfg.optim.width_aware_lr else cfg.optim.lr


LR_RULE_KEYS = ("optim.lr", "optim.width_aware_lr", "optim.base_width")  # resolved into the two LRs


def training_hash(cfg: RunConfig, length: int = 10) -> str:
    """Identity of what is trained: config_hash's fields with the LR rule resolved into G's and D's LRs, so a
    width-aware LR and the fixed LR it resolves to at that width are one run (a sweep launches it once)."""
    kept = _fields_but(cfg, NON_RESULT_KEYS + LR_RULE_KEYS)
    kept.update({f"lr_{net}": float(f"{effective_lr(cfg, net):.12g}") for net in ("generator", "discriminator")})
    return _digest(kept, length)


def replace(cfg: RunConfig, **changes) -> RunConfig:
    """Deep copy with dotted-key changes: replace(cfg, **{'train.seed': 1})."""
    data = to_dict(cfg)
    for key, value in changes.items():
        set_by_path(data, f"{key}={json.dumps(value)}")
    return config_from_dict(data)


__all__ = [
    "ConfigError", "RunConfig", "ModelConfig", "NetConfig", "MethodConfig", "EncoderConfig", "OptimConfig",
    "DataConfig", "TrainConfig", "StabilityConfig", "EvalConfig", "TrackingConfig", "load_config", "config_from_dict", "validate",
    "to_dict", "dump_config", "flatten", "config_hash", "training_hash", "effective_lr", "replace", "set_by_path",
]
