"""Every mistake gets one clear line: a corpus of malformed configs, specs, --set overrides and CLI calls.

Each case runs `gatscale ...` in-process and checks: a non-zero exit, no traceback, the key or value at fault
named in the message, and nothing written. A few end-to-end cases run a real subprocess.
"""
import copy
import os
import subprocess
import sys
import time

import pytest
import torch
import yaml

from gatscale.cli import main as gatscale_main
from train_fixtures import REPO, tiny_run_dict


def with_value(data: dict, dotted: str, value) -> dict:
    data = copy.deepcopy(data)
    *parents, leaf = dotted.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return data


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working folder: the test asserts that a failed command left it as it found it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fails_cleanly(capsys, workdir, argv, named, code=2, may_write=()) -> str:
    """Run `gatscale argv`; assert exit `code`, no traceback, `named` in the message and no new file (but
    `may_write`, paths relative to workdir)."""
    before = {p for p in workdir.rglob("*")}
    try:
        rc = gatscale_main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    out, err = capsys.readouterr()
    assert rc == code, (rc, out, err)
    assert "Traceback" not in out + err
    assert named in err, err
    new = {p for p in workdir.rglob("*")} - before - {workdir / p for p in may_write}
    assert not new, f"a failed command wrote {new}"
    return err


# --- run configs: every field's range, type and relations ------------------------------------------

CONFIG_CASES = [  # (dotted key, bad value); the message must name the key
    ("model.generator.num_heads", 0), ("model.generator.num_heads", -2), ("model.generator.hidden_size", 0),
    ("model.generator.hidden_size", -16), ("model.generator.hidden_size", 2**40), ("model.generator.hidden_size", 18),
    ("model.generator.depth", 0), ("model.generator.size", "GAT-Q/3"), ("model.discriminator.size", "GAT-S/3"),
    ("model.discriminator.hidden_size", 22), ("model.num_levels", 3), ("model.z_dim", 0), ("model.cmap_dim", -1),
    ("model.projector_dim", 0), ("model.input_tokens", "rope"), ("model.qk_norm", "yes"),
    ("method.mng", "expo"), ("method.mng_min_info", 1.5), ("method.mng_t_offset", 0.5), ("method.r1_gamma", -0.1),
    ("method.gp_sigma", 0), ("method.augment", "color,zoom"), ("method.repa_weight", -1),
    ("encoder.resolution", 0), ("encoder.name", " "), ("encoder.pretrained", "no"),
    ("optim.lr", float("inf")), ("optim.lr", float("nan")), ("optim.lr", 0), ("optim.lr", "fast"),
    ("optim.betas", [0.5, 2.0]), ("optim.betas", [0.9]), ("optim.eps", -1), ("optim.ema_decay", 1.0),
    ("optim.grad_clip", -1), ("optim.base_width", 0), ("optim.weight_decay", float("-inf")),
    ("data.num_classes", 3), ("data.num_workers", -1), ("data.resolution", 0), ("data.tokenizer", "vqgan"),
    ("data.source", "imagenet"), ("data.latent_scale", 0), ("data.load_images", False),
    ("train.seed", -1), ("train.seed", 2**70), ("train.batch_size", "sixteen"), ("train.batch_size", 0),
    ("train.iterations", 0), ("train.epochs", -1), ("train.log_every", 0), ("train.precision", "fp16"),
    ("train.keep_checkpoints", 0), ("eval.truncation_psi", 2), ("eval.fid_every", -5),
    ("eval.feature_extractor", "clip"), ("tracking.backend", "wandb"), ("optim.learning_rate", 1e-3),
    ("eval.se_resamples", -1), ("eval.fd_dinov2", "yes"), ("eval.dinov2.resolution", 0),
    ("trainer", {"steps": 5}),
]


@pytest.mark.parametrize("key, value", CONFIG_CASES, ids=[f"{k}={v!r}"[:40] for k, v in CONFIG_CASES])
def test_a_bad_config_value_is_one_line_naming_the_key(workdir, capsys, key, value):
    config = workdir / "bad.yaml"
    config.write_text(yaml.safe_dump(with_value(tiny_run_dict(), key, value)))
    err = fails_cleanly(capsys, workdir, ["train", str(config), "--run-dir", str(workdir / "run")], key)
    assert err.startswith("gatscale: error: ") and "bad.yaml" in err


def test_a_section_that_is_not_a_mapping_is_named(workdir, capsys):
    config = workdir / "bad.yaml"
    config.write_text(yaml.safe_dump({**tiny_run_dict(), "model": 5}))
    fails_cleanly(capsys, workdir, ["train", str(config)], "expected a mapping for section 'model'")


def test_an_sd_vae_config_needs_a_resolution_divisible_by_8(workdir, capsys):
    config = workdir / "bad.yaml"
    config.write_text(yaml.safe_dump(tiny_run_dict(data={"tokenizer": "sd-vae", "resolution": 12})))
    fails_cleanly(capsys, workdir, ["train", str(config)], "data.resolution = 12")


# --- --set overrides: the same checks, and the message names --set ---------------------------------

SET_CASES = [  # (override, what the message names)
    ("train.iterations=[1, 2", "not valid YAML"),
    ("train.iterations=!!python/object/apply:os.system [ls]", "not valid YAML"),
    ("optim.lr=.inf", "optim.lr = inf"), ("optim.lr=.nan", "optim.lr = nan"), ("train.seed=-1", "train.seed = -1"),
    ("model.generator.num_heads=0", "model.generator.num_heads = 0"), ("noequals", "expected key.path=value"),
    ("optim.lrr=1", "optim.lrr"), ("train.iterations.x=1", "train.iterations"), ("=5", "key.path=value"),
    ("model.generator.size=GAT-Q/3", "GAT-Q/3"), ("data.num_workers=-1", "data.num_workers = -1"),
]


@pytest.mark.parametrize("override, named", SET_CASES, ids=[o[:40] for o, _ in SET_CASES])
def test_a_bad_set_override_is_one_line_naming_it(workdir, capsys, override, named):
    config = workdir / "ok.yaml"
    config.write_text(yaml.safe_dump(tiny_run_dict()))
    err = fails_cleanly(capsys, workdir, ["train", str(config), "--set", override], named)
    assert "--set" in err


# --- files and command lines ------------------------------------------------------------------------

def test_a_folder_given_as_the_config(workdir, capsys):
    (workdir / "configs").mkdir()
    fails_cleanly(capsys, workdir, ["train", "configs"], "is a folder")


@pytest.mark.parametrize("content, named", [
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "not a text file"), (b"", "the file is empty"),
    (b"model: {generator: [", "not valid YAML"), (b"- a\n- list\n", "expected a mapping at the top level"),
], ids=["binary", "empty", "invalid-yaml", "a-list"])
def test_an_unreadable_config_file(workdir, capsys, content, named):
    (workdir / "c.yaml").write_bytes(content)
    fails_cleanly(capsys, workdir, ["train", "c.yaml"], named)


def test_a_missing_config_file(workdir, capsys):
    fails_cleanly(capsys, workdir, ["train", "nope.yaml"], "nope.yaml")


def test_a_run_dir_that_is_a_file(workdir, capsys):
    (workdir / "c.yaml").write_text(yaml.safe_dump(tiny_run_dict()))
    (workdir / "taken").write_text("x")
    fails_cleanly(capsys, workdir, ["train", "c.yaml", "--run-dir", "taken"], "--run-dir = 'taken'")


def test_train_without_a_config_or_a_run_to_resume(workdir, capsys):
    fails_cleanly(capsys, workdir, ["train", "--run-dir", "nothing-here"], "give a CONFIG.yaml")


@pytest.mark.parametrize("argv, named", [
    (["trian", "c.yaml"], "invalid choice: 'trian'"), (["train", "--sett", "x=1"], "unrecognized arguments"),
    (["sweep", "s.yaml", "--max-parallel", "0"], "--max-parallel = 0"),
    (["sweep", "s.yaml", "--backend", "k8s"], "k8s"),
    (["eval", "run", "--fd-inf", "--num-samples", "3"], "--fd-inf --num-samples 3: too few samples"),
], ids=["command", "option", "max-parallel", "backend", "fd-inf"])
def test_a_bad_command_line(workdir, capsys, argv, named):
    fails_cleanly(capsys, workdir, argv, named)


@pytest.mark.parametrize("argv, named", [
    (["train", "--run-dir", "nothing-here"], "give a CONFIG.yaml"),
    (["eval", "nothing-here", "--device", "cpu"], "nothing-here: neither a run folder nor a checkpoint file"),
    (["eval", "run", "--num-samples", "1"], "--num-samples 1: must be >= 2"),
    (["analyze", "pca", "nothing-here", "--device", "cpu"], "pca: nothing-here: neither a run folder"),
    (["extract-latents", "no-images", "dest"], "SRC = 'no-images': folder not found"),
    (["prepare-digits", "dest", "--shard-size", "0"], "shard_size = 0"),
    (["probe-lr", "s.yaml", "--max-parallel", "0"], "--max-parallel = 0"),
    (["probe-lr", "s.yaml"], "s.yaml: probe = None: gatscale probe-lr needs a `probe:` mapping"),
    (["figures", "--out", "f"], "pass --experiment NAME or --spec SWEEP.yaml"),
    (["figures", "--spec", "s.yaml", "--out", "f"], "mlflow.db does not exist"),  # a study never run
    (["report", "s.yaml", "--out", "r.html"], "mlflow.db does not exist"),
    (["sync", "nothing-here"], "nothing-here/tracking.json: not found"),
], ids=["train", "eval-path", "eval-option", "analyze", "extract-latents", "prepare-digits", "probe-max-parallel",
        "probe-spec", "figures-no-study", "figures-study", "report-study", "sync"])
def test_every_command_reports_bad_input_as_one_gatscale_error_line(workdir, capsys, argv, named):
    (workdir / "s.yaml").write_text(yaml.safe_dump(spec_with(
        base=tiny_run_dict(tracking={"backend": "mlflow", "uri": f"sqlite:///{workdir}/mlflow.db"}))))
    err = fails_cleanly(capsys, workdir, argv, named)
    assert err.startswith("gatscale: error: ") and err.count("\n") == 1, err


@pytest.mark.parametrize("content", [b"not a checkpoint at all", None], ids=["garbage", "not-gatscale"])
def test_eval_of_a_file_that_is_not_a_gatscale_checkpoint(workdir, capsys, content):
    path = workdir / "ckpt-0000010.pt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        path.write_bytes(content)
    fails_cleanly(capsys, workdir, ["eval", str(path), "--device", "cpu"], "not a readable gatscale checkpoint")


# --- sweep specs: every value checked where it sits -------------------------------------------------

def spec_with(**top) -> dict:
    return {"name": "t", "base": tiny_run_dict(), **top}


SPEC_CASES = [  # (spec, the spec key path the message must name)
    ({**spec_with(groups=[{"grid": {"model.generator.size": ["GAT-S/4"]}}]),
      "base": with_value(tiny_run_dict(), "model.generator.size", "GAT-Q/3")}, "base.model.generator.size"),
    ({**spec_with(), "base": with_value(tiny_run_dict(), "optim.lr", float("inf"))}, "base.optim.lr"),
    (spec_with(settings={"lr": {"ok": {"optim.lr": 1e-3}, "bad": {"optim.lr": -1}}}, grid={"lr": ["ok"]}),
     "settings.lr.bad.optim.lr"),
    (spec_with(grid={"optim.lr": [1e-3, -1]}), "grid.optim.lr[1]"),
    (spec_with(zip={"train.seed": [0, 2**70]}), "zip.train.seed[1]"),
    (spec_with(groups=[{"grid": {"model.generator.num_heads": [0]}}]), "groups[0].grid.model.generator.num_heads[0]"),
    (spec_with(per_size={"S": {"train.batch_size": 0}}), "per_size.S.train.batch_size"),
    (spec_with(grid={"lr": {"fast": {"optim.betas": [0.5, 2.0]}}}), "grid.lr.fast.optim.betas"),
    (spec_with(max_attempts=0), "max_attempts"), (spec_with(grdi={}), "grdi"), ({"base": tiny_run_dict()}, "name"),
    (spec_with(base_config="missing.yaml"), "missing.yaml"), (spec_with(seeds=[0, 0]), "seeds"),
    (spec_with(grid={"optim.lr": []}), "grid.optim.lr"),
    # the findings: section (docs/findings.md)
    (spec_with(findings=[1]), "findings"), (spec_with(findings={"detla": 0.1}), "findings.detla"),
    (spec_with(findings={"delta": -0.1}), "findings.delta"), (spec_with(findings={"level": 1.5}), "findings.level"),
    (spec_with(findings={"pairing": "by-seed"}), "findings.pairing"),
    (spec_with(findings={"max_seeds": 1}), "findings.max_seeds"),
    (spec_with(findings={"derive": "yes"}), "findings.derive"),
    (spec_with(findings={"compare": [{"name": "x", "a": {"method.repa": True}}]}), "findings.compare[0].b"),
    (spec_with(findings={"compare": [{"name": "x", "a": {"method.repa": True}, "b": {"method.rpa": False}}]}),
     "findings.compare[0].b"),
    (spec_with(findings={"compare": [{"name": "x", "a": {"method.repa": True}, "b": {"method.repa": False},
                                      "direction": "up"}]}), "findings.compare[0].direction"),
    (spec_with(grid={"method.repa": [True, False]}, findings={"compare": [
        {"name": "x", "a": {"method.repa": True}, "b": {"method.mng": "off"}}]}), "findings.compare[0].b"),
    (spec_with(grid={"method.repa": [True, False], "method.mng": ["exp", "off"]}, findings={"compare": [
        {"name": "x", "a": {"method.repa": True}, "b": {"method.repa": False}}]}), "findings.compare[0].a"),
]


@pytest.mark.parametrize("spec, named", SPEC_CASES, ids=[n for _, n in SPEC_CASES])
@pytest.mark.parametrize("command", ["sweep", "status"])
def test_a_bad_spec_value_is_one_line_naming_its_place(workdir, capsys, spec, named, command):
    (workdir / "s.yaml").write_text(yaml.safe_dump(spec))
    err = fails_cleanly(capsys, workdir, [command, "s.yaml"], named)
    assert err.startswith("gatscale: error: s.yaml")


@pytest.mark.parametrize("spec, named", [c for c in SPEC_CASES if "findings" in c[1]],
                         ids=[n for _, n in SPEC_CASES if "findings" in n])
def test_a_bad_findings_section_is_one_line_for_gatscale_findings_too(workdir, capsys, spec, named):
    (workdir / "s.yaml").write_text(yaml.safe_dump(spec))
    assert fails_cleanly(capsys, workdir, ["findings", "s.yaml"], named).startswith("gatscale: error: s.yaml")


@pytest.mark.parametrize("argv, named", [
    (["sweep", "s.yaml", "--set", "method.repa=false"], "--set: method.repa = False: conflicts with the spec: s.yaml "
                                                         "sets this key per run (the axis method.repa)"),
    (["sweep", "s.yaml", "--set", "lr=fast"], "--set: lr = 'fast': unknown key"),
    (["sweep", "s.yaml", "--set", "train.batch_size=8"], "--set: train.batch_size = 8: conflicts with the spec: "
                                                          "s.yaml sets this key per run (per_size.S)"),
    (["sweep", "s.yaml", "--set", "train.seed=3"], "--set: train.seed = 3: conflicts with the spec: s.yaml sets this "
                                                    "key per run (seeds)"),
    (["sweep", "s.yaml", "--set", "train.iterations=0"], "--set: train.iterations = 0: must be"),
    (["sweep", "s.yaml", "--set", "tracking.experiment=x"], "--set: tracking.experiment = 'x': a study is one MLflow "
                                                             "experiment"),
    (["probe-lr", "s.yaml", "--set", "method.repa=false"], "--set: method.repa = False: conflicts with the spec"),
    (["status", "s.yaml", "--set", "method.repa=false"], "--set: method.repa = False: conflicts with the spec"),
], ids=["axis", "unknown", "per-size", "seeds", "value", "experiment", "probe", "status"])
def test_a_sweep_set_is_checked_and_may_not_change_what_the_spec_sets_per_run(workdir, capsys, argv, named):
    (workdir / "s.yaml").write_text(yaml.safe_dump(spec_with(
        grid={"method.repa": [True, False]}, seeds=[0, 1], per_size={"S": {"train.batch_size": 4}},
        probe={"lr_start": 1e-3})))
    assert fails_cleanly(capsys, workdir, argv, named).startswith("gatscale: error: --set: ")


@pytest.mark.parametrize("where, argv, hint", [
    ("config", ["train", "c.yaml"], "c.yaml: method.mng = False: must be one of 'exp', 'linear', 'vp', 'off', got "
                                    "False (YAML reads off/no/yes/on as booleans: quote it, 'off')"),
    ("spec", ["sweep", "s.yaml"], "s.yaml: base.method.mng = False: must be one of 'exp', 'linear', 'vp', 'off', got "
                                  "False (YAML reads off/no/yes/on as booleans: quote it, 'off')"),
    ("train --set", ["train", "ok.yaml", "--set", "method.mng=off"],
     "--set: method.mng = False: must be one of 'exp', 'linear', 'vp', 'off', got False (YAML reads off/no/yes/on as "
     "booleans: quote it, --set \"method.mng='off'\")"),
    ("sweep --set", ["sweep", "ok.yaml", "--set", "method.mng=off"], "quote it, --set \"method.mng='off'\""),
    ("string", ["train", "ok.yaml", "--set", "encoder.name=no"],
     "--set: encoder.name = False: expected a string, got False (YAML reads off/no/yes/on as booleans: quote it)"),
], ids=["config", "spec", "train-set", "sweep-set", "string"])
def test_a_yaml_boolean_where_a_word_was_meant_says_to_quote_it(workdir, capsys, where, argv, hint):
    (workdir / "c.yaml").write_text(yaml.safe_dump(tiny_run_dict()) + "method:\n  mng: off\n")  # as one writes it
    (workdir / "s.yaml").write_text(yaml.safe_dump(spec_with(base={**tiny_run_dict(), "method": {"mng": "MNG"}}))
                                    .replace("mng: MNG", "mng: off"))
    (workdir / "ok.yaml").write_text(yaml.safe_dump(spec_with() if "sweep" in argv else tiny_run_dict()))
    assert fails_cleanly(capsys, workdir, argv, hint).count("\n") == 1


def test_until_resolved_flags_without_it_and_a_bad_budget(workdir, capsys):
    (workdir / "s.yaml").write_text(yaml.safe_dump(spec_with()))
    fails_cleanly(capsys, workdir, ["sweep", "s.yaml", "--max-seeds", "4"], "--max-seeds needs --until-resolved")
    fails_cleanly(capsys, workdir, ["sweep", "s.yaml", "--until-resolved", "--budget", "-1"], "--budget")
    fails_cleanly(capsys, workdir, ["sweep", "s.yaml", "--until-resolved", "--max-seeds", "1"], "--max-seeds")


def test_a_spec_that_is_a_folder(workdir, capsys):
    (workdir / "sweeps").mkdir()
    fails_cleanly(capsys, workdir, ["sweep", "sweeps", "--dry-run"], "is a folder")


# --- the machine: locks, other configs, missing weights, bugs --------------------------------------

def test_a_locked_run_folder_is_refused_with_the_already_running_exit_code(workdir, capsys):
    from gatscale.train.status import EXIT_LOCKED, RunLock
    (workdir / "c.yaml").write_text(yaml.safe_dump(tiny_run_dict()))
    (workdir / "run").mkdir()
    with RunLock(workdir / "run"):
        fails_cleanly(capsys, workdir, ["train", "c.yaml", "--run-dir", "run"], "already being trained",
                      code=EXIT_LOCKED, may_write=["run/log.txt"])


def test_resuming_a_folder_of_another_config_is_refused_in_one_line(workdir, capsys):
    (workdir / "c.yaml").write_text(yaml.safe_dump(tiny_run_dict(train={"iterations": 2, "checkpoint_every": 1})))
    assert gatscale_main(["train", "c.yaml", "--run-dir", "run"]) == 0
    capsys.readouterr()
    fails_cleanly(capsys, workdir, ["train", "c.yaml", "--run-dir", "run", "--set", "optim.lr=1e-4"],
                  "different config")


def test_a_bug_shows_its_traceback_and_says_it_is_one(workdir, capsys, monkeypatch):
    import gatscale.sweep.status as status
    monkeypatch.setattr(status, "main", lambda args: 1 / 0)
    assert gatscale_main(["status", "s.yaml"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError is a bug in gatscale" in err
    saved = err.rsplit("(saved in ", 1)[1].split(")")[0]
    assert "ZeroDivisionError" in open(saved).read()
    os.unlink(saved)


def test_the_tracker_is_never_touched_before_it_started(tmp_path):
    from gatscale.core.config import TrackingConfig
    from gatscale.tracking.mlflow_tracker import MlflowTracker
    with pytest.raises(RuntimeError, match="set_tags before start"):
        MlflowTracker(TrackingConfig(uri=f"sqlite:///{tmp_path}/m.db")).set_tags({"a": "b"})


# --- end to end: real processes --------------------------------------------------------------------

def gatscale(*args, cwd, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "gatscale.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_end_to_end_a_bad_value_exits_2_with_one_line(tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_run_dict()))
    done = gatscale("train", "c.yaml", "--set", "model.generator.num_heads=0", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "gatscale: error: --set: model.generator.num_heads = 0: must be in [1, 1024]"]
    assert sorted(os.listdir(tmp_path)) == ["c.yaml"]


def test_end_to_end_missing_weights_offline_fail_in_seconds_without_a_tracker_traceback(tmp_path):
    """The paper's DINOv2 encoder, offline and not cached: one message, exit 1, tracker never touched."""
    config = tiny_run_dict(encoder={"name": "vit_base_patch14_dinov2.lvd142m", "pretrained": True, "resolution": 224,
                                    "kwargs": {}},
                           tracking={"backend": "mlflow", "uri": f"sqlite:///{tmp_path}/mlflow.db"})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    empty_cache = tmp_path / "hf"
    start = time.monotonic()
    done = gatscale("train", "c.yaml", "--run-dir", "run", cwd=tmp_path,
                    env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(empty_cache)})
    assert time.monotonic() - start < 60
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output and "AttributeError" not in output
    assert "gatscale: error: encoder.name = 'vit_base_patch14_dinov2.lvd142m'" in done.stderr
    assert "encoder.checkpoint" in done.stderr  # what to do about it
    assert not (tmp_path / "mlflow.db").exists()


def test_eval_fd_dinov2_without_the_weights_offline_is_one_line_naming_eval_dinov2(workdir, capsys, monkeypatch):
    import huggingface_hub

    from eval_fixtures import run_with_checkpoint

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)  # nothing cached
    run_dir, _, _ = run_with_checkpoint(workdir / "run", step=5)
    fails_cleanly(capsys, workdir, ["eval", str(run_dir), "--fd-dinov2", "--num-samples", "10", "--device", "cpu"],
                  "gatscale: error: eval.dinov2 (fd_dinov2): encoder.name = 'vit_base_patch14_dinov2.lvd142m'", code=1)


# --- a sweep whose runs need GPUs this machine lacks -----------------------------------------------

def test_a_local_sweep_says_which_runs_need_gpus_and_starts_no_parent_run(workdir, capsys, monkeypatch):
    import gatscale.sweep.backends.local as local
    monkeypatch.setattr(local, "_num_gpus", lambda: 0)
    base = tiny_run_dict(tracking={"backend": "mlflow", "uri": f"sqlite:///{workdir}/mlflow.db"})
    spec = {"name": "t", "base": base, "seeds": [0, 1], "resources": {"gpus": 1}}
    (workdir / "s.yaml").write_text(yaml.safe_dump(spec))
    assert gatscale_main(["sweep", "s.yaml"]) == 1
    err = capsys.readouterr().err
    assert "2 runs cannot start here: needs 1 GPU; this machine" in err and "--backend submitit" in err
    assert "Traceback" not in err and not (workdir / "mlflow.db").exists()  # no FAILED parent run
    assert gatscale_main(["status", "s.yaml"]) == 0
    table = capsys.readouterr().out
    assert table.count("not started (needs 1 GPU)") == 2 and "never started training" not in table


def test_run_folders_of_another_config_stop_the_sweep_in_one_line_before_anything_is_written(workdir, capsys):
    from gatscale.sweep.record import update_record
    from gatscale.sweep.spec import load_spec
    base = tiny_run_dict(tracking={"backend": "mlflow", "uri": f"sqlite:///{workdir}/mlflow.db"})
    (workdir / "s.yaml").write_text(yaml.safe_dump({"name": "t", "base": base, "seeds": [0, 1, 2]}))
    runs = load_spec(workdir / "s.yaml").runs
    for run in runs[:2]:
        update_record(run.run_dir, config_hash="0123456789")
    for argv in (["sweep", "s.yaml"], ["sweep", "s.yaml", "--dry-run"], ["sweep", "s.yaml", "--until-resolved"]):
        err = fails_cleanly(capsys, workdir, argv, f"2 run folders hold another config under their run's name "
                                                   f"({runs[0].name}, {runs[1].name}); nothing was launched")
        assert err.startswith("gatscale: error: ") and err.count("\n") == 1 and "0123456789" in err
    assert not (workdir / "mlflow.db").exists() and not runs[2].run_dir.exists()


def test_an_unreachable_tracking_server_is_one_line_in_seconds(workdir, capsys):
    base = tiny_run_dict(tracking={"backend": "mlflow", "uri": "http://127.0.0.1:9"})  # nothing listens on port 9
    (workdir / "s.yaml").write_text(yaml.safe_dump({"name": "t", "base": base}))
    start = time.monotonic()
    fails_cleanly(capsys, workdir, ["sweep", "s.yaml"], "the tracking server cannot be reached", code=1)
    assert time.monotonic() - start < 60


def test_the_hub_check_says_why_it_cannot_download(monkeypatch):
    from gatscale.core.hub import PROXY_VARIABLES, hub_unreachable
    for v in PROXY_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_unreachable() == "HF_HUB_OFFLINE is set"
    assert "127.0.0.1 cannot be reached" in hub_unreachable("http://127.0.0.1:9")  # nothing listens on port 9
