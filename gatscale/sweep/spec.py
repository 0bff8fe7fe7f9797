"""Sweep specs: one YAML file per study -> its runs, each a validated RunConfig with a stable name and hash.

    name: lr_crosscheck                  # the study: one MLflow experiment, runs in <runs_dir>/<name>/
    base_config: ../configs/imagenet256.yaml
    base: {train.iterations: 50000}      # overrides on top (dotted or nested keys)
    settings:                            # named values: one name sets several keys together
      lr:
        lrA: {optim.width_aware_lr: true}
        lrS: {optim.width_aware_lr: false, optim.lr: 4.0e-4}
    grid:                                # Cartesian product of the axes
      lr: [lrA, lrS]
    zip:                                 # paired lists: the i-th values go together
      model.generator.size: [GAT-S/2, GAT-B/2]
      model.discriminator.size: [GAT-S/2, GAT-B/2]
    seeds: [0]
    per_size:                            # keyed by the generator size: letter ('B') or name ('GAT-B/2')
      B: {train.batch_size: 512, resources: {gpus: 2, time_min: 2880}}

`groups: [{grid, zip, seeds}, ...]` unions several such run sets. Runs that train the same thing (one
`training_hash`: the same config once the LR rule is resolved, e.g. S2-lrA and S2-lrS above) are one run,
under the first name; the others are its `aliases` (shown in the plan, tagged `gatscale.aliases` in the tracker).
`load_spec` is three steps: `parse_spec` (every key checked where it sits), `expand` (the runs, validated and
named), `attach_resources` (the cluster profile's row for each run's size under the spec's `resources`).
docs/sweeps.md is the full reference. Errors name the spec file and the key path in it.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import re
import typing
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatscale.core.config import (
    LR_RULE_KEYS,
    ConfigError,
    RunConfig,
    check_override,
    coerce_field,
    config_hash,
    field_types,
    from_dict,
    read_yaml,
    set_field,
    training_hash,
    validate,
)
from gatscale.core.sizes import GAT_SIZES, MODEL_NAMES, size_letter
from gatscale.tracking.store import resolve_uri
from .profile import ClusterProfile, Resources, load_profile, merge_resources, parse_resources, profile_resources

TOP_KEYS = ("name", "description", "base_config", "base", "settings", "grid", "zip", "seeds", "groups", "per_size",
            "resources", "runs_dir", "profile", "max_attempts", "device", "throughput", "probe", "findings")
GROUP_KEYS = ("grid", "zip", "seeds")
SIZE_KEYS = ("model.generator.size", "model.discriminator.size")
LR_TAG_KEYS = ("optim.width_aware_lr", "optim.lr")  # what `lr_tag` writes (an axis on optim.base_width gets a part)
SWITCH_KEYS = ("method.mng", "method.repa", *LR_TAG_KEYS)  # already spelled out in every run name
MNG_TAGS = {"exp": "mng", "linear": "mnglin", "vp": "mngvp", "off": "nomng"}
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")


@dataclass
class Run:
    """One expanded run: what every backend gets."""
    name: str
    config: RunConfig            # validated; tracking.experiment = the study
    config_hash: str
    run_dir: Path
    model: str                   # generator size name, e.g. 'GAT-B/2' (resource class, throughput key)
    resources: Resources     # GPUs, nodes, wall time: the profile's size row under the spec's overrides
    labels: dict = field(default_factory=dict)  # axis -> this run's value (its name if named), and the seed
    name_parts: dict = field(default_factory=dict)  # the name by role (run_name_parts): the name is them joined by '-'
    aliases: list[str] = field(default_factory=list)  # the spec's other names for this same training

    @property
    def gpus(self) -> int:
        return self.resources.gpus or 0


@dataclass
class Spec:
    path: Path
    name: str
    runs_dir: Path               # the study's runs live in runs_dir / name
    runs: list[Run]
    profile: ClusterProfile | None
    max_attempts: int
    device: str                  # GPU type for the GPU-hour estimate (throughput table key)
    throughput: Path | None
    description: str = ""
    probe: dict | None = None    # the `probe:` section, read by `gatscale probe-lr` (gatscale/sweep/probe.py)
    findings: "FindingsConfig" = None  # the `findings:` section (defaults when absent), read by sweep/findings.py
    root: Path | None = None     # the project root: where runs_dir and a relative tracking.uri start (project_root)

    def __post_init__(self):
        if self.findings is None:
            self.findings = FindingsConfig()

    @property
    def study_dir(self) -> Path:
        return self.runs_dir / self.name

    @property
    def tracking(self):
        return self.runs[0].config.tracking

    @property
    def spec_hash(self) -> str:
        """Identity of the study: its name and the set of its run hashes (a cosmetic edit keeps it)."""
        text = json.dumps([self.name, sorted(r.config_hash for r in self.runs)])
        return hashlib.sha1(text.encode()).hexdigest()[:10]


# ---------------------------------------------------------------------------------------------
# Keys: dotted paths into RunConfig, checked against its dataclasses.

def check_key(source: str, where: str, key: str, value: Any = None, check_value: bool = True):
    """Raise a ConfigError naming the spec file and the spec key path if `key` is not a RunConfig field; else
    check `value` against the field's type and rules where it sits in the spec (keys inside a dict field: not)."""
    node = RunConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(node)}
        if part not in fields:
            prefix = ".".join(parts[:i])
            section = f"in {prefix}" if prefix else "at the top level"
            raise ConfigError(source, where, value, f"unknown config key {key!r}; valid keys {section}: "
                                                    f"{', '.join(sorted(fields))}")
        tp = field_types(node)[part]
        if dataclasses.is_dataclass(tp):
            node = tp
        elif i < len(parts) - 1 and not (tp is dict or typing.get_origin(tp) is dict):
            raise ConfigError(source, where, value, f"{'.'.join(parts[:i + 1])} is a value, not a section "
                                                    f"(in config key {key!r})")
        else:
            if i == len(parts) - 1 and check_value:
                coerce_field(node, part, copy.deepcopy(value), where, source)
            return
    raise ConfigError(source, where, value, f"{key!r} is a whole config section; name one of its keys")


def flat_settings(source: str, where: str, mapping: Any) -> dict[str, Any]:
    """{a: {b: 1}, 'c.d': 2} -> {'a.b': 1, 'c.d': 2}, every key checked; dict-typed fields stay whole."""
    if not isinstance(mapping, dict):
        raise ConfigError(source, where, mapping, "expected a mapping of config keys to values")
    out = {}

    def walk(prefix: str, node: dict, at: str):
        for k, v in node.items():
            key, spot = f"{prefix}{k}", f"{at}.{k}"
            if isinstance(v, dict) and v and not _is_dict_field(key):
                walk(key + ".", v, spot)
            else:
                check_key(source, spot, key, v)
                if key in out:
                    raise ConfigError(source, spot, v, f"config key {key!r} is set twice here")
                out[key] = v
    walk("", mapping, where)
    return out


def _is_dict_field(key: str) -> bool:
    node = RunConfig
    for part in key.split("."):
        hints = field_types(node) if dataclasses.is_dataclass(node) else {}
        if part not in hints:
            return False
        node = hints[part]
    return node is dict or typing.get_origin(node) is dict


# ---------------------------------------------------------------------------------------------
# Axes: each value of an axis is a Choice, a set of config keys to assign.

@dataclass
class Choice:
    axis: str
    label: str | None        # a named value's name; None for a plain key-path value
    values: dict             # flat {key.path: value}


def parse_axis(source: str, where: str, axis: str, values: Any, settings: dict) -> list[Choice]:
    """One axis of `grid` or `zip`: a config key path with a list of values, a settings name with a list of
    value names, or an inline mapping {value name: {key: value}}."""
    if isinstance(values, dict):
        if not values:
            raise ConfigError(source, where, values, "an axis needs at least one value")
        return [Choice(axis, _label(source, f"{where}.{n}", n), flat_settings(source, f"{where}.{n}", s))
                for n, s in values.items()]
    if not isinstance(values, list) or not values:
        raise ConfigError(source, where, values, "expected a non-empty list of values (or a mapping of named values)")
    if axis in settings:
        named = settings[axis]
        for i, v in enumerate(values):
            if v not in named:
                raise ConfigError(source, f"{where}[{i}]", v, f"not a value of settings.{axis}; valid: "
                                                               f"{', '.join(map(str, named))}")
        return [Choice(axis, v, named[v]) for v in values]
    if "." not in axis:
        raise ConfigError(source, where, values, f"{axis!r} is neither a config key path (like optim.lr) nor a "
                                                 f"name under settings ({', '.join(settings) or 'none defined'})")
    check_key(source, where, axis, values, check_value=False)
    for i, v in enumerate(values):
        check_key(source, f"{where}[{i}]", axis, v)
    return [Choice(axis, None, {axis: v}) for v in values]


def _label(source: str, where: str, name: Any) -> str:
    if not isinstance(name, str) or not LABEL.match(name):
        raise ConfigError(source, where, name, "a value name must be letters, digits and . _ + = - "
                                               "(it becomes part of run names and folders)")
    return name


def _seeds(source: str, where: str, value: Any) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        if len(set(value)) != len(value):
            raise ConfigError(source, where, value, "seeds repeat")
        return list(value)
    raise ConfigError(source, where, value, "expected a list of integer seeds, or a count N (seeds 0..N-1)")


def _combinations(source: str, where: str, group: dict, settings: dict) -> list[list[Choice]]:
    """grid x zip of one group -> list of choice lists (zip rows outermost, then the grid in spec order)."""
    for k in group:
        if k not in GROUP_KEYS:
            raise ConfigError(source, f"{where}{k}", group[k], f"unknown key; valid keys here: {', '.join(GROUP_KEYS)}")
    zip_axes = [parse_axis(source, f"{where}zip.{a}", a, v, settings) for a, v in (group.get("zip") or {}).items()]
    if zip_axes and len({len(a) for a in zip_axes}) > 1:
        lengths = ", ".join(f"{a[0].axis}: {len(a)}" for a in zip_axes)
        raise ConfigError(source, f"{where}zip", None, f"zip lists must have equal lengths ({lengths})")
    zip_rows = list(zip(*zip_axes)) if zip_axes else [()]
    grid_axes = [parse_axis(source, f"{where}grid.{a}", a, v, settings) for a, v in (group.get("grid") or {}).items()]
    return [list(row) + list(combo) for row in zip_rows for combo in itertools.product(*grid_axes)]


# ---------------------------------------------------------------------------------------------
# Names: size+patch, switches, LR rule, other tags, seed.

def size_tag(name: str) -> str:
    return name.removeprefix("GAT-").replace("/", "")


def run_name_parts(cfg: RunConfig, choices: list[Choice]) -> dict[str, str]:
    """'B2-mng-repa-lrS-s0' by role: {"size": "B2", "mng": "mng", "repa": "repa", "lr": "lrS", <axis>: <its part>,
    ..., "seed": "s0"}: G size+patch (and D's when it differs), MNG, REPA, the LR rule (the name of a setting that
    sets it, else `lr_tag`), the other axes, the seed. A run's name is its parts joined by '-' (`join_name`)."""
    g, d = cfg.model.generator.size, cfg.model.discriminator.size
    parts = {"size": size_tag(g) + ("" if d == g else f"-D{size_tag(d)}"), "mng": MNG_TAGS[cfg.method.mng],
             "repa": "repa" if cfg.method.repa else "norepa"}
    sets_lr = [c for c in choices if c.label and set(c.values) & set(LR_RULE_KEYS)]
    parts["lr"] = sets_lr[0].label if sets_lr else lr_tag(cfg)
    others = {}
    for c in choices:
        if c.label and not set(c.values) <= set(SWITCH_KEYS + SIZE_KEYS):
            if c not in sets_lr:
                others[c.axis] = c.label
        elif c.label is None and c.axis not in SWITCH_KEYS + SIZE_KEYS + ("train.seed",):
            others[c.axis] = f"{c.axis.rsplit('.', 1)[-1]}{c.values[c.axis]}"
    parts.update({axis if axis not in parts else f"{axis}#": part for axis, part in others.items()})  # an axis 'lr'
    parts["seed"] = f"s{cfg.train.seed}"
    return {role: str(p).replace("/", "_") for role, p in parts.items()}


def join_name(parts: dict[str, str]) -> str:
    return "-".join(parts.values())


def lr_tag(cfg: RunConfig) -> str:
    """The run name's LR part when no named setting gives one: 'lrA' (width-aware, paper Eq. 4) or the fixed LR
    to 4 significant digits ('lr4e-4')."""
    return "lrA" if cfg.optim.width_aware_lr else "lr" + short_float(cfg.optim.lr)


def short_float(x: float) -> str:
    mantissa, exp = f"{x:.3e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"


# ---------------------------------------------------------------------------------------------
# Loading

def _per_size(source: str, value: Any) -> dict[str, tuple[dict, Resources]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(source, "per_size", value, "expected a mapping: size (S, B, L, XL or 'GAT-B/2') -> overrides")
    out = {}
    for size, entry in value.items():
        where = f"per_size.{size}"
        if size not in GAT_SIZES and size not in MODEL_NAMES:
            raise ConfigError(source, where, entry,
                              f"unknown size; valid: {', '.join(GAT_SIZES)} or a name like 'GAT-B/2'")
        if not isinstance(entry, dict):
            raise ConfigError(source, where, entry, "expected a mapping of config keys (and resources)")
        entry = dict(entry)
        resources = _resources(source, f"{where}.resources", entry.pop("resources", None))
        out[size] = (flat_settings(source, where, entry), resources)
    return out


def _resources(source: str, where: str, value: Any) -> Resources:
    """A spec's `resources` or `per_size.X.resources` (optional)."""
    return Resources() if value is None else parse_resources(value, source, where)


@dataclass
class ParsedSpec:
    """A spec file's keys, each checked where it sits, before expansion."""
    path: Path
    name: str
    base: RunConfig                              # base_config under the base overrides, tracking.experiment = name
    settings: dict[str, dict[str, dict]]         # axis -> value name -> flat {key: value}
    groups: list[tuple[str, dict]]               # (key prefix for errors, {grid, zip, seeds})
    seeds: list[int] | None                      # the top-level seeds
    per_size: dict[str, tuple[dict, Resources]]  # size -> (flat overrides, resources)
    resources: Resources                         # the spec's `resources`, under every run's
    max_attempts: int
    raw: dict                                    # the file's mapping (profile, runs_dir, device, ...)
    overrides: dict = field(default_factory=dict)  # `--set` on the command line: flat {key: value} over the base
    findings: "FindingsConfig" = None            # the `findings:` section, its sides not yet matched to runs


def add_set_argument(parser):
    """`--set KEY.PATH=VALUE` of the commands that read a spec (`load_spec`'s overrides): `gatscale sweep` and
    `probe-lr`, and `status` and `findings`, which need the same --set to name the same runs."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a value of the spec's base for every run, as `gatscale train --set` does, e.g. "
                             "--set train.iterations=200 (repeatable; a key an axis or per_size sets is an error)")


PROJECT_MARKERS = (".git", "pyproject.toml")


def project_root(spec_path: str | Path) -> Path:
    """The folder a spec's relative `runs_dir` and tracking.uri start from: the nearest folder at or above the spec
    file holding .git or pyproject.toml (the project the spec belongs to), else the spec's own folder. So
    `gatscale status /abs/path/sweeps/demo.yaml` finds the runs that `gatscale sweep sweeps/demo.yaml` wrote in
    the project, wherever either is typed."""
    folder = Path(spec_path).resolve().parent
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in PROJECT_MARKERS):
            return candidate
    return folder


def load_spec(path: str | Path, runs_dir: str | Path | None = None, profile: str | Path | None = None,
              overrides: list[str] | None = None) -> Spec:
    """Read, expand and validate a sweep spec: parse -> expand -> attach resources. `runs_dir`/`profile`
    override the spec's (command line: relative to the working directory), as do `overrides` (`--set
    key.path=value`) its base. The spec's own runs_dir (default runs) and a relative tracking.uri are taken from
    its project root (`project_root`), made absolute."""
    parsed = parse_spec(Path(path), overrides)
    raw, root = parsed.raw, project_root(parsed.path)
    runs_dir = Path(runs_dir).absolute() if runs_dir is not None else root / str(raw.get("runs_dir", "runs"))
    runs = expand(parsed, runs_dir / parsed.name)
    for run in runs:  # tracking is no part of a run's hash: the absolute URI changes no run's identity
        run.config.tracking.uri = resolve_uri(run.config.tracking.uri, root)
    match_findings(str(parsed.path), parsed.findings, runs)
    cluster = _profile(parsed.path, raw.get("profile"), profile)
    attach_resources(runs, cluster)
    throughput = raw.get("throughput")
    return Spec(path=parsed.path, name=parsed.name, runs_dir=runs_dir, runs=runs, profile=cluster,
                max_attempts=parsed.max_attempts, device=str(raw.get("device", "H100")),
                throughput=parsed.path.parent / throughput if throughput else None,
                description=str(raw.get("description", "")), probe=raw.get("probe"), findings=parsed.findings,
                root=root)


def parse_spec(path: Path, overrides: list[str] | None = None) -> ParsedSpec:
    """The spec file's keys, checked: errors name the file, the key path and the value; `overrides`: `--set
    key.path=value` over its base, parsed as `gatscale train` parses them (errors name --set)."""
    source = str(path)
    spec = read_yaml(path, "spec", source)
    for k in spec:
        if k not in TOP_KEYS:
            raise ConfigError(source, str(k), spec[k], f"unknown key; valid keys: {', '.join(TOP_KEYS)}")
    name = spec.get("name")
    if not isinstance(name, str) or not LABEL.match(name):
        raise ConfigError(source, "name", name, "the study needs a name (letters, digits, . _ + = -): "
                                                "its MLflow experiment and its folder under runs_dir")
    sets = {k: v for item in overrides or [] for k, v in flat_settings("--set", "--set", check_override(item)).items()}
    base, settings = _base_config(path, spec, name, sets), _settings(source, spec.get("settings") or {})
    groups = _groups(source, spec)
    seeds, per_size = _seeds(source, "seeds", spec.get("seeds")), _per_size(source, spec.get("per_size"))
    resources = _resources(source, "resources", spec.get("resources"))
    max_attempts = spec.get("max_attempts", 3)
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ConfigError(source, "max_attempts", max_attempts, "expected an integer >= 1 (launches of a failing run)")
    findings = parse_findings(source, spec.get("findings"), settings)
    return ParsedSpec(path, name, base, settings, groups, seeds, per_size, resources, max_attempts, raw=spec,
                      findings=findings, overrides=sets)


def _base_config(path: Path, spec: dict, name: str, sets: dict) -> RunConfig:
    """The base_config file, then the base overrides, then the command line's `--set` (`sets`); each expanded run is
    validated whole later."""
    source = str(path)
    base = RunConfig()
    if spec.get("base_config") is not None:
        base_path = path.parent / str(spec["base_config"])
        base = from_dict(RunConfig, read_yaml(base_path, "base_config", source), str(base_path))
    overrides = flat_settings(source, "base", spec.get("base") or {})
    if overrides.get("tracking.experiment", name) != name:
        raise ConfigError(source, "base.tracking.experiment", overrides["tracking.experiment"],
                          f"a study is one MLflow experiment named after the study ({name!r}): remove this key")
    if sets.get("tracking.experiment", name) != name:
        raise ConfigError("--set", "tracking.experiment", sets["tracking.experiment"],
                          f"a study is one MLflow experiment named after the study ({name!r}): remove this --set")
    for key, value in {**overrides, **sets}.items():
        set_field(base, key, value, source)
    base.tracking.experiment = name
    return base


def _settings(source: str, value: Any) -> dict[str, dict[str, dict]]:
    if not isinstance(value, dict):
        raise ConfigError(source, "settings", value, "expected a mapping: axis -> {value name: {key: value}}")
    settings = {}
    for axis, named in value.items():
        if not isinstance(named, dict) or not named:
            raise ConfigError(source, f"settings.{axis}", named, "expected a mapping of value names to {key: value}")
        settings[axis] = {_label(source, f"settings.{axis}.{n}", n): flat_settings(source, f"settings.{axis}.{n}", s)
                          for n, s in named.items()}
    return settings


def _groups(source: str, spec: dict) -> list[tuple[str, dict]]:
    """`groups: [...]`, or the top-level grid/zip as one group; each with the key prefix its errors name."""
    if spec.get("groups") is None:
        return [("", {k: spec[k] for k in ("grid", "zip") if k in spec})]
    if any(k in spec for k in ("grid", "zip")):
        raise ConfigError(source, "groups", "...", "use either groups or top-level grid/zip, not both")
    groups = spec["groups"]
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) for g in groups):
        raise ConfigError(source, "groups", groups, "expected a list of mappings with grid / zip / seeds")
    return [(f"groups[{i}].", g) for i, g in enumerate(groups)]


def expand(parsed: ParsedSpec, study_dir: Path) -> list[Run]:
    """Every run of the spec, validated and named; runs that train the same thing are one, with aliases."""
    source = str(parsed.path)
    runs: list[Run] = []
    seen: dict[str, Run] = {}
    for where, group in parsed.groups:
        seeds = _seeds(source, f"{where}seeds", group.get("seeds")) or parsed.seeds or [None]
        for choices in _combinations(source, where, group, parsed.settings):
            for seed in seeds:
                run = _expand_one(source, parsed.base, choices, seed, parsed.per_size, parsed.resources, study_dir,
                                  parsed.overrides)
                same = seen.setdefault(training_hash(run.config), run)
                if same is run:
                    runs.append(run)
                elif run.name != same.name and run.name not in same.aliases:
                    same.aliases.append(run.name)
    if not runs:
        raise ConfigError(source, "grid", None, "the spec expands to no runs")
    _dedupe_names(runs)
    return runs


def _profile(path: Path, in_spec: Any, on_command_line: str | Path | None) -> ClusterProfile | None:
    """The cluster profile: --profile as given, else the spec's, a path relative to the spec or a shipped name."""
    if on_command_line is not None:
        return load_profile(on_command_line)
    if in_spec is None:
        return None
    if "/" in str(in_spec) or str(in_spec).endswith(".yaml"):
        return load_profile(path.parent / str(in_spec))
    return load_profile(in_spec)


def attach_resources(runs: list[Run], cluster: ClusterProfile | None):
    """Each run's resources: the profile's row for its size under the spec's overrides (none: the spec's alone)."""
    if cluster is None:
        return
    for run in runs:
        run.resources = merge_resources(profile_resources(cluster, run.model), run.resources)


def _expand_one(source, base: RunConfig, choices, seed, per_size, common_resources, study_dir, sets=None) -> Run:
    """One run: the base (with `sets`, the command line's --set) under its axes' values, its seed and its size's
    per_size overrides; a key set in two of these places is an error naming both."""
    values: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for c in choices:
        for key, value in c.values.items():
            if key in values:
                raise ConfigError(source, key, value, f"set by two axes at once ({owner[key]} and {c.axis}); "
                                                      f"an axis value may set a key only one axis sets")
            values[key], owner[key] = value, c.axis
    if seed is not None:
        if "train.seed" in values:
            raise ConfigError(source, "seeds", seed, f"train.seed is also set by the axis {owner['train.seed']}")
        values["train.seed"] = seed
    model = values.get("model.generator.size", base.model.generator.size)
    letter = size_letter(model) if isinstance(model, str) else None
    size_values, size_rows = {}, []
    for key in (letter, model):
        if key in per_size:
            size_values.update(per_size[key][0])
            size_rows.append(per_size[key][1])
    label = ", ".join([f"{c.axis}={c.label or c.values[c.axis]}" for c in choices]
                      + [f"seed={seed}"] * (seed is not None))
    for key, value in size_values.items():
        if key in values:
            raise ConfigError(source, f"per_size.{letter}.{key}", value,
                              f"the run ({label}) gets this key from the axis {owner.get(key, 'seeds')} too; "
                              f"set it in one place")
    for key, value in (sets or {}).items():
        if key in values or key in size_values:
            by = f"per_size.{letter}" if key in size_values else f"the axis {owner[key]}" if key in owner else "seeds"
            raise ConfigError("--set", key, value, f"conflicts with the spec: {source} sets this key per run ({by}); "
                                                   f"--set changes only the base that every run shares: edit the spec")
    cfg, where = copy.deepcopy(base), f"{source} (run {label})"
    for key, value in {**size_values, **values}.items():
        set_field(cfg, key, value, where)
    validate(cfg, where)
    parts = run_name_parts(cfg, choices)
    name = join_name(parts)
    return Run(name=name, config=cfg, config_hash=config_hash(cfg), run_dir=study_dir / name,
               model=cfg.model.generator.size, resources=merge_resources(common_resources, *size_rows),
               labels={c.axis: c.label or c.values[c.axis] for c in choices} | {"seed": cfg.train.seed},
               name_parts=parts)


def run_at_size(spec_path: str | Path, size: str, study_dir: Path) -> Run:
    """The spec's base run at `size` (G and D), with that size's `per_size` overrides: the shape of a size the
    study may not train, e.g. the one `gatscale predict` extrapolates to."""
    parsed = parse_spec(Path(spec_path))
    choices = [Choice(f"model.{net}.size", None, {f"model.{net}.size": size}) for net in ("generator", "discriminator")]
    return _expand_one(str(parsed.path), parsed.base, choices, None, parsed.per_size, parsed.resources, study_dir)


def _dedupe_names(runs: list[Run]):
    """Two different configs with one readable name both get their hash appended."""
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.name] = counts.get(r.name, 0) + 1
    for r in runs:
        if counts[r.name] > 1:
            r.name_parts = {**r.name_parts, "hash": r.config_hash[:6]}
            r.name = join_name(r.name_parts)
            r.run_dir = r.run_dir.parent / r.name
    for r, short in zip(runs, short_names([r.name for r in runs])):
        r.config.name = r.name
        r.config.run_dir = str(r.run_dir)
        r.config.tracking.aliases = ",".join(r.aliases)
        r.config.tracking.run_name = short


def short_names(names: list[str]) -> list[str]:
    """The MLflow run names of a study: each run name without the parts it shares with most runs of the study,
    so they stay apart in a narrow column ('B2-mng-repa-lrS-s0' -> 'B2-lrS' beside 'B2', 'S2', 'B2-nomng').
    The size part always stays; names that would collide, or of differing shapes, stay whole."""
    split = [n.split("-") for n in names]
    if len({len(p) for p in split}) != 1:
        return list(names)
    common = [Counter(column).most_common(1)[0][0] for column in zip(*split)]
    short = ["-".join([p[0]] + [v for v, c in zip(p[1:], common[1:]) if v != c]) for p in split]
    return short if len(set(short)) == len(short) else list(names)


# ---------------------------------------------------------------------------------------------
# Run sets and seeds: what the findings compare (gatscale/sweep/findings.py) and what `--until-resolved` adds to.

def run_set_key(cfg: RunConfig) -> str:
    """The identity of a run's set: what it trains, but for its seed (the runs of a set are its seeds)."""
    cfg = copy.deepcopy(cfg)
    cfg.train.seed = 0
    return training_hash(cfg)


def with_seed(run: Run, seed: int) -> Run:
    """The same run at another seed: its config, name ('...-s<seed>'), folder and hash follow."""
    cfg = copy.deepcopy(run.config)
    cfg.train.seed = seed
    old = f"-s{run.config.train.seed}"
    parts = {**run.name_parts, "seed": f"s{seed}"}
    if "hash" in parts:  # a name shared by two configs (_dedupe_names): this config's hash
        parts["hash"] = config_hash(cfg)[:6]
    name = join_name(parts)
    short = cfg.tracking.run_name
    cfg.tracking.run_name = (short.removesuffix(old) + f"-s{seed}") if short and short.endswith(old) else name
    cfg.name, cfg.run_dir, cfg.tracking.aliases = name, str(run.run_dir.parent / name), ""
    return dataclasses.replace(run, name=name, config=cfg, config_hash=config_hash(cfg),
                               run_dir=run.run_dir.parent / name, labels={**run.labels, "seed": seed}, aliases=[],
                               name_parts=parts)


# ---------------------------------------------------------------------------------------------
# The `findings:` section (docs/findings.md): options of the derived findings, and declared ones.
#
#   findings:
#     metric: fd_digits        # default: fid, else fd_digits (whichever the runs logged)
#     delta: 0.1               # the smallest effect that matters, a log-ratio (0.1: about 10 %)
#     pairing: unpaired        # unpaired (Welch) | pooled (unpaired, one spread pooled over the study's sets) |
#                              # paired (by seed) | auto (paired when both sides share seeds)
#     max_seeds: 4             # the most seeds per side --until-resolved adds (the looks its intervals allow for)
#     derive: true             # also every pair of run sets that differ in one factor, and the size ladder
#     compare:                 # declared findings: two sides, each a selector that picks one run set
#       - {name: repa, a: {method.repa: true}, b: {method.repa: false}, direction: lower, delta: 0.2}

FINDINGS_KEYS = ("metric", "delta", "level", "pairing", "max_seeds", "derive", "compare")
COMPARE_KEYS = ("name", "a", "b", "metric", "direction", "delta")
PAIRINGS = ("unpaired", "pooled", "paired", "auto")
DIRECTIONS = ("lower", "higher")


@dataclass
class DeclaredFinding:
    name: str
    a: dict                      # flat {config key: value}: the runs of side A
    b: dict
    metric: str | None = None    # None: the section's metric
    direction: str | None = None  # which value is better, 'lower' or 'higher'; None: from the metric's name
    delta: float | None = None   # None: the section's delta
    where: str = ""              # its key path in the spec, for errors
    a_runs: list[str] = field(default_factory=list)  # matched by `match_findings`
    b_runs: list[str] = field(default_factory=list)


@dataclass
class FindingsConfig:
    metric: str | None = None    # None: fid, else fd_digits, whichever the runs logged
    delta: float | None = None   # None: 0.1 for a comparison (a log-ratio, ~10 %), 0.25 for a law's exponent
    level: float = 0.95          # the overall confidence of each finding (split over the looks by --until-resolved)
    pairing: str = "unpaired"    # docs/findings.md: why unpaired is the default at 2-4 seeds
    max_seeds: int = 5
    derive: bool = True
    compare: list[DeclaredFinding] = field(default_factory=list)


def _number(source, where, value, lo, hi, what, integer=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (not integer or isinstance(value, int))
    if not ok or not (lo <= value <= hi) or value != value:
        raise ConfigError(source, where, value, f"expected {'an integer' if integer else 'a number'} in "
                                                f"[{lo:g}, {hi:g}] ({what})")
    return value


def _metric(source, where, value):
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(source, where, value, "expected a metric name as the runs log it, e.g. fd_digits or fid")
    return value


def parse_findings(source: str, value: Any, settings: dict) -> FindingsConfig:
    """The `findings:` section, every key checked where it sits; the sides are matched to runs after expansion."""
    if value is None:
        return FindingsConfig()
    if not isinstance(value, dict):
        raise ConfigError(source, "findings", value, f"expected a mapping with keys {', '.join(FINDINGS_KEYS)}")
    for k in value:
        if k not in FINDINGS_KEYS:
            raise ConfigError(source, f"findings.{k}", value[k], f"unknown key; valid keys: {', '.join(FINDINGS_KEYS)}")
    out = FindingsConfig()
    out.metric = _metric(source, "findings.metric", value.get("metric"))
    if "delta" in value:
        out.delta = float(_number(source, "findings.delta", value["delta"], 0, 5, "a log-ratio; 0.1 is about 10 %"))
    if "level" in value:
        out.level = float(_number(source, "findings.level", value["level"], 0.51, 0.999, "e.g. 0.95"))
    if "pairing" in value:
        if value["pairing"] not in PAIRINGS:
            raise ConfigError(source, "findings.pairing", value["pairing"], f"valid: {', '.join(PAIRINGS)}")
        out.pairing = value["pairing"]
    if "max_seeds" in value:
        out.max_seeds = int(_number(source, "findings.max_seeds", value["max_seeds"], 2, 1000,
                                    "the most seeds per side --until-resolved may add", integer=True))
    if "derive" in value:
        if not isinstance(value["derive"], bool):
            raise ConfigError(source, "findings.derive", value["derive"], "expected true or false")
        out.derive = value["derive"]
    compare = value.get("compare") or []
    if not isinstance(compare, list):
        raise ConfigError(source, "findings.compare", compare, "expected a list of {name, a, b, metric, direction, "
                                                               "delta}")
    names = set()
    for i, entry in enumerate(compare):
        where = f"findings.compare[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(source, where, entry, "expected a mapping with keys " + ", ".join(COMPARE_KEYS))
        for k in entry:
            if k not in COMPARE_KEYS:
                raise ConfigError(source, f"{where}.{k}", entry[k],
                                  f"unknown key; valid keys: {', '.join(COMPARE_KEYS)}")
        for k in ("name", "a", "b"):
            if k not in entry:
                raise ConfigError(source, f"{where}.{k}", None, "missing: a declared finding needs a name and its two "
                                                                "sides a and b (each a mapping of config keys)")
        name = _label(source, f"{where}.name", entry["name"])
        if name in names:
            raise ConfigError(source, f"{where}.name", name, "two declared findings have this name")
        names.add(name)
        direction = entry.get("direction")
        if direction is not None and direction not in DIRECTIONS:
            raise ConfigError(source, f"{where}.direction", direction, "which value is better: lower or higher")
        delta = entry.get("delta")
        if delta is not None:
            delta = float(_number(source, f"{where}.delta", delta, 0, 5, "a log-ratio; 0.1 is about 10 %"))
        out.compare.append(DeclaredFinding(
            name=name, a=_selector(source, f"{where}.a", entry["a"], settings),
            b=_selector(source, f"{where}.b", entry["b"], settings),
            metric=_metric(source, f"{where}.metric", entry.get("metric")), direction=direction, delta=delta,
            where=where))
    return out


def _selector(source: str, where: str, value: Any, settings: dict) -> dict:
    """{config key: value, or a settings axis: a value name} -> flat {config key: value}."""
    if not isinstance(value, dict) or not value:
        raise ConfigError(source, where, value, "expected a mapping of config keys (or settings names) to values, "
                                                "e.g. {method.repa: false}")
    out = {}
    for k, v in value.items():
        if k in settings:
            if v not in settings[k]:
                raise ConfigError(source, f"{where}.{k}", v, f"not a value of settings.{k}; valid: "
                                                             f"{', '.join(map(str, settings[k]))}")
            out.update(settings[k][v])
        else:
            out.update(flat_settings(source, where, {k: v}))
    return out


def _matches(cfg: RunConfig, selector: dict) -> bool:
    from gatscale.core.config import flatten, to_dict
    flat = flatten(to_dict(cfg))
    return all(flat.get(k) == v for k, v in selector.items())


def match_findings(source: str, findings: FindingsConfig | None, runs: list[Run]):
    """Each declared side picks exactly one run set (its seeds): an error names the side that picks none or several."""
    for f in (findings.compare if findings else []):
        for side in ("a", "b"):
            picked = [r for r in runs if _matches(r.config, getattr(f, side))]
            sets = {run_set_key(r.config): r for r in picked}
            if not sets:
                raise ConfigError(source, f"{f.where}.{side}", getattr(f, side), "matches no run of the spec")
            if len(sets) > 1:
                shown = ", ".join(sorted(r.name for r in sets.values())[:4])
                raise ConfigError(source, f"{f.where}.{side}", getattr(f, side),
                                  f"matches {len(sets)} run sets ({shown}); add the keys that pick one")
            setattr(f, f"{side}_runs", [r.name for r in picked])
        if set(f.a_runs) == set(f.b_runs):
            raise ConfigError(source, f.where, {"a": f.a, "b": f.b}, "both sides pick the same runs")
