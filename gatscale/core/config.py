"""The typed config: run configs (and the sweep's spec and cluster-profile sections) as dataclasses, loaded
from YAML, validated in one place.

Every number that matters for the science is a named field with the official default and a
comment saying where it comes from (github.com/hse1032/GAT, scripts/train_256_B2.sh, train.py).
Errors name the file, the key path and the value: `ConfigError: configs/x.yaml: train.batch_size = 7: ...`.
Each field states what it may hold next to its default, `lr: float = setting(2e-4, "> 0")` (see `rule_error`);
every value is checked when it is read (config file, `--set`, sweep spec) and again, with the relations between
fields, in `validate`. The loading API every layer shares: `from_dict`, `read_yaml`, `set_path`, `diff`.
"""
from __future__ import annotations

import copy
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


def setting(default, rule: str):
    """A config field with what it may hold (a rule, see `rule_error`) declared beside its default."""
    return field(default=default, metadata={"rule": rule})


@dataclass
class NetConfig:
    """One network: a paper size name plus optional overrides (tiny configs shrink a size)."""
    size: str = setting("GAT-B/2", "a GAT model name")
    depth: int | None = setting(None, "[1, 1024]")  # None: from the size table
    hidden_size: int | None = setting(None, "[1, 65536]")
    num_heads: int | None = setting(None, "[1, 1024]")

    def arch(self) -> dict:
        arch = parse_model_name(self.size)
        arch.update({k: v for k in ("depth", "hidden_size", "num_heads") if (v := getattr(self, k)) is not None})
        return arch


@dataclass
class ModelConfig:
    generator: NetConfig = field(default_factory=NetConfig)
    discriminator: NetConfig = field(default_factory=NetConfig)
    num_levels: int = setting(4, "[1, 1024]")  # K MNG heads, one every depth/K blocks (official rgb_every = depth // 4)
    z_dim: int = setting(64, "[1, 65536]")  # latent code and class-embedding width of G's mapping network
    input_tokens: Literal["sincos", "fourier"] = "sincos"  # code: sin-cos PE; paper figure: Fourier PE
    pos_embed: Literal["trainable", "frozen"] = "trainable"  # G/D sin-cos PE; official train.py: requires_grad_(True)
    qk_norm: bool = True                # official --qk-norm default
    cmap_dim: int = setting(2048, "[1, 65536]")  # D projection-head width
    projector_dim: int = setting(2048, "[1, 65536]")  # REPA projector hidden width (REPA build_mlp)
    grad_checkpointing: bool = False    # official checkpoints every block; costs ~1/3 more compute
    compile: bool = False               # torch.compile G and D


@dataclass
class MethodConfig:
    mng: Literal["exp", "linear", "vp", "off"] = "exp"  # exp: official schedule; vp: paper's transcribed formula
    mng_min_info: float = setting(0.125, "(0, 1)")  # I_min of info_per_layer: signal 1/8 at the earliest level
    mng_t_offset: float = setting(0.01, "[0, 0.1)")  # official adds 1e-2 to every noise level (final level t = 0.01)
    r1_gamma: float = setting(0.1, ">= 0")  # scripts/train_256_B2.sh R1_gamma; loss weight is gamma/2
    r2_gamma: float = setting(0.1, ">= 0")  # R2_gamma
    gp_sigma: float = setting(0.01, "> 0")  # approximated_GP_std: finite-difference step of the approx R1/R2
    augment: str = setting("color,translation,cutout,flip", "a DiffAugment policy")  # on latents (official policy)
    repa: bool = True                   # REPA on D (official --enc-type dinov2-vit-b)
    repa_weight: float = setting(1.0, ">= 0")  # --proj-coeff


@dataclass
class EncoderConfig:
    """The REPA target encoder (DINOv2 ViT-B/14 in the paper) through timm."""
    name: str = setting("vit_base_patch14_dinov2.lvd142m", "non-empty")  # timm id of facebookresearch dinov2_vitb14,
    #   or 'digits-vit': the digits encoder (a tiny ViT trained on the digits set, cached; 16 px, no kwargs)
    pretrained: bool = True            # False: random init, a stand-in for tests (runs are tagged so)
    checkpoint: str | None = setting(None, "non-empty")  # local weights file (safetensors/pt) instead of the hub
    resolution: int = setting(224, "[1, 4096]")  # raw images are bicubically resized to this before the encoder
    kwargs: dict = field(default_factory=dict)  # extra timm.create_model kwargs (tiny stand-ins)


@dataclass
class OptimConfig:
    lr: float = setting(2e-4, "> 0")        # eta_base (train_256_B2.sh --learning-rate 2e-4)
    width_aware_lr: bool = True         # lr = lr * base_width / C_model, separately for G and D (paper Eq. 4)
    base_width: int = setting(768, "[1, 65536]")  # C_base (GAT-B)
    betas: tuple[float, float] = setting((0.0, 0.99), "[0, 1)")  # --adam-beta1/2
    eps: float = setting(1e-8, "> 0")
    weight_decay: float = setting(0.0, ">= 0")
    grad_clip: float = setting(1.0, ">= 0")  # --max-grad-norm, G and D
    ema_decay: float = setting(0.999, "[0, 1)")  # update_ema default in train.py (DiT uses 0.9999)


SD_VAE_SCALE = 0.18215  # SD-VAE latent scaling factor (REPA/GAT preprocessing; shift 0)
DIGITS_CLASSES = 10     # sklearn's load_digits: the embedded data set of `source: digits`


@dataclass
class DataConfig:
    source: Literal["digits", "shards"] = "digits"  # digits: embedded sklearn set; shards: extract-latents output
    path: str | None = setting(None, "non-empty")  # shards folder (source: shards); digits cache folder (optional)
    tokenizer: Literal["pixels", "sd-vae"] = "pixels"  # pixels: identity with scaling (CPU runs)
    resolution: int = setting(16, "[1, 4096]")  # image side in pixels
    num_classes: int = setting(10, "[1, 1000000]")
    latent_scale: float | None = setting(None, "> 0")  # None: 0.18215 for sd-vae (REPA preprocessing), 1.0 for pixels
    vae_decoder: str = setting("stabilityai/sd-vae-ft-ema", "non-empty")  # hub id or folder; official sampler: ft-ema
    load_images: bool = True            # serve raw uint8 images for REPA (needed when method.repa)
    num_workers: int = setting(2, "[0, 256]")

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
    d_loss_below: float = setting(0.0, ">= 0")  # D's loss/d_adv = softplus(-(real - fake)) under this: D wins outright
    g_loss_above: float = setting(0.0, ">= 0")  # G's loss (loss/g) above this: G gets no useful gradient
    logit_gap_above: float = setting(0.0, ">= 0")  # |logits/real - logits/fake| above this
    fd_rise: float = 0.0                # FID (or fd_digits) above this factor times its first evaluated value
    patience: int = setting(1, ">= 1")      # consecutive ticks a mode must hold before the run is stopped


@dataclass
class TrainConfig:
    batch_size: int = setting(512, "[1, 16777216]")  # global batch (4 GPUs x 128 in train_256_B2.sh)
    iterations: int = setting(400_000, f"[1, {10**12}]")  # --max-train-steps
    epochs: float | None = setting(None, "> 0")  # if set, iterations = ceil(epochs * dataset size / batch)
    seed: int = setting(0, f"[0, {2**31 - 1}]")  # rank r uses seed + r (so it must stay a valid numpy seed)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    tf32: bool = True                   # --allow-tf32
    log_every: int = setting(100, ">= 1")   # metrics reduced and logged every N steps (no per-step host sync)
    sample_every: int = setting(1250, ">= 1")  # --sampling-steps: EMA sample grid
    checkpoint_every: int = setting(1250, ">= 1")  # --latest-checkpointing-steps
    keep_checkpoints: int = setting(3, ">= 1")  # last K checkpoints kept
    divergence_check_every: int = setting(1, ">= 1")  # steps between finiteness checks (1 = stop within one step)
    stability: StabilityConfig = field(default_factory=StabilityConfig)  # non-NaN failure modes (off by default)


@dataclass
class EvalConfig:
    fid_every: int = setting(2500, ">= 0")  # --eval-steps; 0 disables in-training FID
    fid_samples: int = setting(5000, ">= 1")  # FID-5K during training
    feature_extractor: Literal["inception", "digits"] = "inception"  # digits: offline extractor, metric 'fd_digits'
    inception_weights: str | None = setting(None, "non-empty")  # local pt_inception-2015-12-05 weights (torch-fidelity)
    # mu/sigma .npz (ADM's VIRTUAL_imagenet256_labeled.npz, or ours)
    reference_stats: str | None = setting(None, "non-empty")
    truncation_psi: float = setting(0.0, "[0, 1]")  # official: psi = 0 (none) for FID-5K in training
    batch_size: int = setting(64, "[1, 16777216]")
    fid_decoder: str = setting("stabilityai/sd-vae-ft-mse", "non-empty")  # in-training FID-5K, grids (official: ft-mse)
    precision: Literal["fp32", "bf16"] = "fp32"  # G and decoder for metrics: official code runs them fp32 (TF32)
    se_resamples: int = setting(100, "[0, 100000]")  # bootstrap resamples behind every FD's `<metric>_se`; 0: none
    fd_dinov2: bool = False  # also FD on DINOv2 features, `fd_dinov2` (Stein et al. 2023), network eval.dinov2
    dinov2: EncoderConfig = field(default_factory=EncoderConfig)  # the DINOv2 of fd_dinov2 (default: REPA's ViT-B/14)


@dataclass
class TrackingConfig:
    backend: Literal["mlflow", "none"] = "mlflow"  # none: the run folder's metrics.jsonl only (FolderTracker)
    uri: str = "sqlite:///mlflow.db"    # or http://host:port of a shared mlflow server
    experiment: str = setting("gatscale", "non-empty")
    system_metrics: bool = False
    parent_run_id: str | None = None    # set by the sweep: the sweep's parent run
    aliases: str = ""                   # set by the sweep: the spec's other names of this run (comma-separated)
    run_name: str | None = None         # the MLflow run name (default: name); the sweep sets a short one


@dataclass
class RunConfig:
    name: str = setting("run", "non-empty")
    run_dir: str | None = setting(None, "non-empty")  # default: runs/<name>
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


# Sections and fields that do not change a run's result: left out of its identity hash. The eval.se_resamples /
# fd_dinov2 / dinov2 settings only add metrics beside the FD (its SE, fd_dinov2): they change no logged number.
NON_RESULT_KEYS = ("name", "run_dir", "tracking", "data.num_workers", "train.log_every", "train.sample_every",
                   "train.checkpoint_every", "train.keep_checkpoints", "eval.batch_size", "eval.se_resamples",
                   "eval.fd_dinov2", "eval.dinov2")


# ---------------------------------------------------------------------------------------------
# Rules: what a field may hold, as its `setting(default, rule)` declares.
#   "> 0", ">= 1"            a bound, optionally with a note the message repeats: "> 0 (GB)"
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
_BOUND = re.compile(r"^(>=?)\s*([^\s(]+)(\s+\(.*\))?$")
_INTERVAL = re.compile(r"^([\[(])\s*([^,\s]+),\s*([^\])\s]+)\s*([\])])$")


def _error_of(check, value) -> str | None:
    try:
        check(value)
    except ValueError as e:
        return str(e)
    return None


def rule_error(rule: str, value: Any) -> str | None:
    """Why `value` breaks `rule` (a field's declared rule), or None if it does not."""
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
            raise ValueError(f"unknown config rule {rule!r}")  # a typo in a setting(...)
    return None


@functools.cache
def field_types(cls) -> dict:
    """The resolved type hints of a config dataclass (cached: resolving string annotations is slow)."""
    return typing.get_type_hints(cls)


@functools.cache
def field_rules(cls) -> dict[str, str]:
    """{field name: rule} of a config dataclass, from its `setting(default, rule)` declarations."""
    return {f.name: f.metadata["rule"] for f in dataclasses.fields(cls) if "rule" in f.metadata}


def coerce_field(cls, name: str, value: Any, key: str, source: str | None):
    """`value` for field `name` of config dataclass `cls`: type-checked (_coerce), then held to its rule."""
    value = _coerce(value, field_types(cls)[name], key, source)
    rule = field_rules(cls).get(name)
    if rule is not None and (why := rule_error(rule, value)) is not None:
        raise ConfigError(source, key, value, why)
    return value


def check_fields(cfg, source: str | None = None, prefix: str = ""):
    """Every field of `cfg` (a config dataclass, nested ones included) against its type and rule."""
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


YAML_BOOLEANS = {True: ("yes", "on", "true"), False: ("no", "off", "false")}  # what YAML 1.1 reads as booleans


def _boolean_hint(value: Any, key: str, source: str | None, allowed=()) -> str:
    """For a boolean where a string was expected (`mng: off` reads as False): say so, and how to quote the word (a
    --set value is YAML too: quoted inside the shell's quotes)."""
    if not isinstance(value, bool):
        return ""
    word = next((a for a in allowed if isinstance(a, str) and a.lower() in YAML_BOOLEANS[value]), None)
    if word is None:
        quoted = ""
    elif source == "--set":
        quoted = f", --set \"{key}='{word}'\""
    else:
        quoted = f", {word!r}"
    return f", got {value} (YAML reads off/no/yes/on as booleans: quote it{quoted})"


def _coerce(value: Any, tp, key: str, source: str | None):
    """Check (and lightly coerce: int -> float, list -> tuple) `value` against the type hint `tp`."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(source, key, value, f"expected a mapping for section {key!r}")
        return from_dict(tp, value, source, prefix=key + ".")
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
        words = [w for arg in args if typing.get_origin(arg) is Literal for w in typing.get_args(arg)]
        hint = _boolean_hint(value, key, source, words) if str in args or words else ""
        raise ConfigError(source, key, value, f"expected {' or '.join(_type_name(a) for a in args)}{hint}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(source, key, value, f"must be one of {', '.join(map(repr, allowed))}"
                                                  f"{_boolean_hint(value, key, source, allowed)}")
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
            raise ConfigError(source, key, value, f"expected a string{_boolean_hint(value, key, source)}")
        return value
    raise TypeError(f"unsupported config type {tp} at {key}")


def from_dict(cls, data: Any, source: str | None = None, prefix: str = ""):
    """A `cls` (a config dataclass) from a mapping of some of its fields: every key known, every value of its
    field's type and rule (nested sections likewise). Fields declared `init=False` are not keys. Relations
    between fields are `validate`'s (for a RunConfig, `config_from_dict` does both)."""
    names = sorted(f.name for f in dataclasses.fields(cls) if f.init)
    if not isinstance(data, dict):
        raise ConfigError(source, prefix.removesuffix(".") or "<root>", data,
                          f"expected a mapping with keys {', '.join(names)}")
    for k in data:
        if k not in names:
            raise ConfigError(source, prefix + str(k), data[k], f"unknown key; valid keys here: {', '.join(names)}")
    return cls(**{k: coerce_field(cls, k, v, prefix + k, source) for k, v in data.items()})


def config_from_dict(data: dict, source: str | None = None) -> RunConfig:
    """A validated RunConfig (`from_dict`, then `validate`)."""
    return validate(from_dict(RunConfig, data or {}, source), source)


def read_yaml(path: str | os.PathLike, what: str, source: str | None = None, empty_ok: bool = False) -> dict:
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
    data = read_yaml(path, "config")
    for item in overrides or []:
        check_override(item)
        set_path(data, item, source="--set")
    return config_from_dict(data, source)


def check_override(item: str) -> dict:
    """One `--set key.path=value` (`set_path`) as a nested dict, its key and value checked on their own against
    RunConfig, so that its errors name `--set` (`gatscale train` and `gatscale sweep` read --set alike)."""
    data = set_path({}, item, source="--set")
    from_dict(RunConfig, data, "--set")
    return data


def set_path(data: dict, assignment: str, source: str = "--set") -> dict:
    """Apply 'a.b.c=value' to a nested dict; the value is parsed as YAML ('[0.5, 0.9]' -> a list; YAML 1.1 leaves
    '1e-4' a string, which a float field then reads)."""
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


def set_field(cfg, key: str, value: Any, source: str | None = None):
    """cfg.a.b = value for key 'a.b' (in place), type- and rule-checked as when loading a config file; a key
    inside a dict-typed field (encoder.kwargs.depth) is set as given."""
    *parents, leaf = key.split(".")
    node = cfg
    for name in parents:
        node = node[name] if isinstance(node, dict) else getattr(node, _field_of(node, name, key, value, source))
    if isinstance(node, dict):
        node[leaf] = copy.deepcopy(value)
    else:
        setattr(node, leaf, coerce_field(type(node), _field_of(node, leaf, key, value, source), copy.deepcopy(value),
                                         key, source))


def _field_of(node, name: str, key: str, value: Any, source: str | None) -> str:
    names = [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) else []
    if name not in names:
        valid = ", ".join(sorted(names)) or "none"
        raise ConfigError(source, key, value, f"unknown config key; valid keys here: {valid}")
    return name


def validate(cfg: RunConfig, source: str | None = None, world_size: int = 1):
    """Every field against its rule, then the relations between fields; raises ConfigError naming the key and
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
                                f"{cfg.data.latent_size} (data.resolution={cfg.data.resolution}, "
                                f"tokenizer={cfg.data.tokenizer})")
        if arch["hidden_size"] % arch["num_heads"] or (arch["hidden_size"] // arch["num_heads"]) % 4:
            fail(f"{key}.hidden_size", f"width {arch['hidden_size']} / {arch['num_heads']} heads must give a head "
                                       "width divisible by 4 (2-D RoPE)")
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
    if cfg.eval.fd_dinov2 and cfg.eval.dinov2.name == DIGITS_ENCODER:
        fail("eval.dinov2.name", f"{DIGITS_ENCODER!r} is not DINOv2; fd_dinov2 needs a timm DINOv2 "
                                 f"(e.g. vit_base_patch14_dinov2.lvd142m)")
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


def _fields_but(cfg, ignore: tuple[str, ...]) -> dict:
    """The flattened config without the keys (or sections) in `ignore`."""
    return {k: v for k, v in flatten(to_dict(cfg)).items() if not any(k == n or k.startswith(n + ".") for n in ignore)}


def diff(a, b, *, ignore: tuple[str, ...]) -> list[str]:
    """'key: old -> new' for every flattened key where configs `a` and `b` differ, in key order, leaving out the
    keys (or whole sections) in `ignore`: each caller says which differences do not matter to it."""
    old, new = _fields_but(a, ignore), _fields_but(b, ignore)
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def _digest(fields: dict, length: int) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(canonical.encode()).hexdigest()[:length]


def config_hash(cfg: RunConfig, length: int = 10) -> str:
    """Stable identity of a run's result: sha1 of the canonical JSON of its result-relevant fields."""
    return _digest(_fields_but(cfg, NON_RESULT_KEYS), length)


def width_aware_lr(lr: float, base_width: int, width: int) -> float:
    """Paper Eq. 4: eta = eta_base * C_base / C_model."""
    return lr * base_width / width


def effective_lr(cfg: RunConfig, net: str) -> float:
    """The LR of `net` ('generator' or 'discriminator'): width-aware (Eq. 4) at its width, or lr_base when off."""
    if not cfg.optim.width_aware_lr:
        return cfg.optim.lr
    return width_aware_lr(cfg.optim.lr, cfg.optim.base_width, getattr(cfg.model, net).arch()["hidden_size"])


LR_RULE_KEYS = ("optim.lr", "optim.width_aware_lr", "optim.base_width")  # resolved into the two LRs


def training_hash(cfg: RunConfig, length: int = 10) -> str:
    """Identity of what is trained: config_hash's fields with the LR rule resolved into G's and D's LRs, so a
    width-aware LR and the fixed LR it resolves to at that width are one run (a sweep launches it once)."""
    kept = _fields_but(cfg, NON_RESULT_KEYS + LR_RULE_KEYS)
    kept.update({f"lr_{net}": float(f"{effective_lr(cfg, net):.12g}") for net in ("generator", "discriminator")})
    return _digest(kept, length)


def replace(cfg: RunConfig, **changes) -> RunConfig:
    """A validated deep copy with dotted-key changes: replace(cfg, **{'train.seed': 1})."""
    cfg = copy.deepcopy(cfg)
    for key, value in changes.items():
        set_field(cfg, key, value)
    return validate(cfg)


__all__ = [
    "ConfigError", "RunConfig", "ModelConfig", "NetConfig", "MethodConfig", "EncoderConfig", "OptimConfig",
    "DataConfig", "TrainConfig", "StabilityConfig", "EvalConfig", "TrackingConfig", "setting", "load_config",
    "from_dict", "config_from_dict", "read_yaml", "set_path", "check_override", "set_field", "validate", "to_dict",
    "dump_config", "flatten", "diff", "config_hash", "training_hash", "LR_RULE_KEYS", "width_aware_lr", "effective_lr",
    "replace",
]
