"""The typed-config API every layer shares: from_dict, read_yaml, set_path, set_field, replace, diff, and the
rules declared on the fields (the bad-input corpus in test_bad_input.py checks them end to end)."""
import dataclasses

import pytest

from gatscale.core import config
from gatscale.core.config import ConfigError, RunConfig, diff, from_dict, read_yaml, replace, set_field, set_path
from gatscale.sweep.profile import ClusterProfile, Resources


def config_classes(cls=RunConfig):
    yield cls
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(config.field_types(cls)[f.name]):
            yield from config_classes(config.field_types(cls)[f.name])


@pytest.mark.parametrize("cls", [*dict.fromkeys(config_classes()), ClusterProfile, Resources],
                         ids=lambda c: c.__name__)
def test_every_declared_rule_is_understood_and_holds_for_its_default(cls):
    for name, rule in config.field_rules(cls).items():
        assert config.rule_error(rule, getattr(cls(), name)) is None, (cls.__name__, name, rule)


def test_from_dict_builds_nested_sections_and_names_an_unknown_key_with_the_valid_ones():
    cfg = from_dict(RunConfig, {"optim": {"lr": 1, "betas": [0.5, 0.9]}}, "x.yaml")
    assert (cfg.optim.lr, cfg.optim.betas) == (1.0, (0.5, 0.9))
    with pytest.raises(ConfigError) as err:
        from_dict(RunConfig, {"optim": {"learning_rate": 1e-3}}, "x.yaml")
    assert (err.value.source, err.value.key, err.value.value) == ("x.yaml", "optim.learning_rate", 1e-3)
    assert ("valid keys here: base_width, betas, ema_decay, eps, grad_clip, lr, weight_decay, width_aware_lr"
            in str(err.value))


def test_from_dict_rejects_a_value_outside_its_declared_range_with_the_rule():
    with pytest.raises(ConfigError, match=r"x.yaml: sizes.B.time_min = 0: must be >= 1 \(minutes\)"):
        from_dict(Resources, {"time_min": 0}, "x.yaml", prefix="sizes.B.")


def test_from_dict_says_what_a_non_mapping_should_have_been():
    with pytest.raises(ConfigError,
                       match=r"sizes.B = 4: expected a mapping with keys gpus, nodes, partition, time_min"):
        from_dict(Resources, 4, "x.yaml", prefix="sizes.B.")


def test_a_field_declared_init_false_is_not_a_key():
    with pytest.raises(ConfigError, match="source = 'x': unknown key"):
        from_dict(ClusterProfile, {"source": "x"}, "p.yaml")


def test_read_yaml_names_the_option_that_named_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=f"s.yaml: base_config = '{tmp_path}/no.yaml': file not found"):
        read_yaml(tmp_path / "no.yaml", "base_config", source="s.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert read_yaml(tmp_path / "empty.yaml", "throughput", empty_ok=True) == {}


def test_set_path_parses_the_value_as_yaml_into_nested_sections():
    assert set_path({"optim": {"eps": 1e-8}}, "optim.betas=[0.5, 0.9]") == {"optim": {"eps": 1e-8, "betas": [0.5, 0.9]}}
    with pytest.raises(ConfigError, match=r"--set: train.iterations.x = 1: 'iterations' is not a section"):
        set_path({"train": {"iterations": 5}}, "train.iterations.x=1")
    with pytest.raises(ConfigError, match="expected key.path=value"):
        set_path({}, "optim.lr")


def test_replace_returns_a_checked_deep_copy_and_leaves_the_original_alone():
    cfg = RunConfig()
    new = replace(cfg, **{"train.seed": 3, "optim.betas": [0.5, 0.9], "encoder.kwargs": {"depth": 2}})
    assert (new.train.seed, new.optim.betas, new.encoder.kwargs) == (3, (0.5, 0.9), {"depth": 2})
    assert (cfg.train.seed, cfg.optim.betas, cfg.encoder.kwargs) == (0, (0.0, 0.99), {})
    new.model.generator.depth = 4
    assert cfg.model.generator.depth is None  # no section shared between the two
    with pytest.raises(ConfigError, match="train.seed = -1: must be in"):
        replace(cfg, **{"train.seed": -1})
    with pytest.raises(ConfigError, match="train.sed = 1: unknown config key; valid keys here: batch_size"):
        replace(cfg, **{"train.sed": 1})


def test_set_field_sets_a_key_inside_a_dict_field_as_given():
    cfg = RunConfig()
    set_field(cfg, "encoder.kwargs.depth", 2, "s.yaml")
    assert cfg.encoder.kwargs == {"depth": 2}


def test_diff_lists_changed_keys_in_order_without_the_ignored_sections():
    a = RunConfig()
    b = replace(a, **{"optim.lr": 1e-3, "name": "other", "tracking.experiment": "x", "train.log_every": 7})
    assert diff(a, b, ignore=("name", "tracking")) == ["optim.lr: 0.0002 -> 0.001", "train.log_every: 100 -> 7"]
    assert diff(a, b, ignore=())[0] == "name: 'run' -> 'other'"
    assert diff(a, a, ignore=()) == []
