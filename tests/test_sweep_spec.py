"""Sweep specs and plans: expansion, identity, validation, dry run, skip/resume/retry decisions (fast)."""
import json
import os
import sys

import pytest
import yaml

from gatscale.cli import main as gatscale_main
from gatscale.core.config import ConfigError, config_hash, effective_lr, load_config
from gatscale.sweep.backends import prepare
from gatscale.sweep.plan import plan
from gatscale.sweep.record import RECORD_FILE, note_failure, update_record
from gatscale.sweep.spec import load_spec, with_seed
from gatscale.train.status import write_status
from sweep_fixtures import REPO, tiny_run_dict, two_run_spec, write_spec

LR_SETTINGS = {"lr": {"lrA": {"optim.width_aware_lr": True},
                      "lrS": {"optim.width_aware_lr": False, "optim.lr": 4e-3}}}
SIZES = {"model.generator.size": ["GAT-S/4", "GAT-B/4"], "model.discriminator.size": ["GAT-S/4", "GAT-B/4"]}


def test_grid_zip_and_seeds_multiply(tmp_path):
    spec = load_spec(write_spec(tmp_path / "s.yaml", settings=LR_SETTINGS, zip=SIZES,
                                grid={"lr": ["lrA", "lrS"], "method.repa": [True, False]}, seeds=3))
    assert len(spec.runs) == 2 * 2 * 2 * 3
    assert len({r.name for r in spec.runs}) == len({r.config_hash for r in spec.runs}) == 24
    assert {(r.config.model.generator.size, r.config.model.discriminator.size) for r in spec.runs} == \
        {("GAT-S/4", "GAT-S/4"), ("GAT-B/4", "GAT-B/4")}  # zip pairs, never crosses
    assert {r.config.train.seed for r in spec.runs} == {0, 1, 2}
    assert all(r.run_dir == spec.runs_dir / "t" / r.name for r in spec.runs)


def test_named_value_sets_several_keys_and_names_the_run(tmp_path):
    spec = load_spec(write_spec(tmp_path / "s.yaml", settings=LR_SETTINGS, zip=SIZES, grid={"lr": ["lrA", "lrS"]}))
    runs = {r.name: r for r in spec.runs}
    assert set(runs) == {"S4-mng-repa-lrA-s0", "S4-mng-repa-lrS-s0", "B4-mng-repa-lrA-s0", "B4-mng-repa-lrS-s0"}
    fixed = runs["B4-mng-repa-lrS-s0"].config
    assert not fixed.optim.width_aware_lr and effective_lr(fixed, "generator") == 4e-3
    assert runs["B4-mng-repa-lrA-s0"].config.optim.width_aware_lr
    assert all(r.config.tracking.experiment == "t" for r in spec.runs)  # one experiment per study


def test_hashes_stable_across_key_order_and_yaml_formatting(tmp_path):
    block = """
name: t
base:
  model:
    generator: {size: GAT-S/4, depth: 4, hidden_size: 16, num_heads: 1}
    discriminator: {size: GAT-S/4, depth: 4, hidden_size: 16, num_heads: 1}
    cmap_dim: 16
    projector_dim: 16
    z_dim: 16
  encoder: {name: vit_tiny_patch16_224, pretrained: false, resolution: 8,
            kwargs: {patch_size: 4, embed_dim: 16, depth: 1, num_heads: 1}}
  data: {resolution: 8, num_workers: 0}
  train: {batch_size: 8, iterations: 20}
  eval: {fid_every: 0}
grid:
  optim.lr: [1.0e-3, 2.0e-3]
  method.mng: [exp, linear]
"""
    flow = """
grid: {method.mng: [exp, linear], optim.lr: [0.001, 0.002]}
base:
  eval.fid_every: 0
  train: {iterations: 20, batch_size: 8}
  data.num_workers: 0
  data.resolution: 8
  encoder: {kwargs: {num_heads: 1, depth: 1, embed_dim: 16, patch_size: 4}, resolution: 8, pretrained: false,
            name: vit_tiny_patch16_224}
  model: {z_dim: 16, projector_dim: 16, cmap_dim: 16,
          discriminator: {num_heads: 1, hidden_size: 16, depth: 4, size: GAT-S/4},
          generator: {num_heads: 1, hidden_size: 16, depth: 4, size: GAT-S/4}}
name: t
"""
    a = {r.name: r.config_hash for r in load_spec(write_spec(tmp_path / "a.yaml", block)).runs}
    b = {r.name: r.config_hash for r in load_spec(write_spec(tmp_path / "b.yaml", flow)).runs}
    assert a == b and len(set(a.values())) == 4


def test_run_hash_is_the_trainers_config_hash(tmp_path):
    spec = load_spec(two_run_spec(tmp_path / "s.yaml"), runs_dir=tmp_path / "runs")
    planned = plan(spec)
    prepare(planned[0], spec, None, f"sqlite:///{tmp_path / 'x.db'}")
    run = spec.runs[0]
    assert config_hash(load_config(run.run_dir / "config.yaml")) == run.config_hash
    assert json.loads((run.run_dir / RECORD_FILE).read_text())["config_hash"] == run.config_hash


def test_per_size_overrides_apply_to_that_size_only(tmp_path):
    spec = load_spec(write_spec(tmp_path / "s.yaml", zip=SIZES, per_size={
        "S": {"train.batch_size": 4, "resources": {"gpus": 1}},
        "GAT-B/4": {"optim": {"lr": 5e-4}}}))
    runs = {r.model: r for r in spec.runs}
    assert runs["GAT-S/4"].config.train.batch_size == 4 and runs["GAT-S/4"].gpus == 1
    assert runs["GAT-B/4"].config.train.batch_size == 8 and runs["GAT-B/4"].gpus == 0
    assert runs["GAT-B/4"].config.optim.lr == 5e-4 and runs["GAT-S/4"].config.optim.lr == 2e-3


@pytest.mark.parametrize("spec, where", [
    ({"grid": {"optim.lrr": [1e-3]}}, "grid.optim.lrr"),
    ({"zip": {"train.batchsize": [8]}}, "zip.train.batchsize"),
    ({"settings": {"lr": {"x": {"optim.width_aware": False}}}, "grid": {"lr": ["x"]}},
     "settings.lr.x.optim.width_aware"),
    ({"per_size": {"B": {"model": {"generator": {"widht": 8}}}}}, "per_size.B.model.generator.widht"),
    ({"grid": {"lr": [1e-3]}}, "grid.lr"),  # neither a key path nor a settings name
    ({"grdi": {"optim.lr": [1e-3]}}, "grdi"),
])
def test_unknown_key_rejected_naming_file_and_key_path(tmp_path, spec, where):
    path = write_spec(tmp_path / "bad.yaml", **spec)
    with pytest.raises(ConfigError) as e:
        load_spec(path)
    assert str(path) in str(e.value) and where in str(e.value)


def test_every_expanded_config_is_validated_naming_the_run(tmp_path):
    path = write_spec(tmp_path / "s.yaml", grid={"model.num_levels": [4, 3]})  # 3 does not divide the depth 4
    with pytest.raises(ConfigError) as e:
        load_spec(path)
    assert "model.num_levels=3" in str(e.value) and "model.num_levels = 3" in str(e.value) and str(path) in str(e.value)


def test_two_axes_setting_one_key_are_rejected(tmp_path):
    path = write_spec(tmp_path / "s.yaml", settings=LR_SETTINGS, grid={"lr": ["lrS"], "optim.lr": [1e-3]})
    with pytest.raises(ConfigError, match="set by two axes"):
        load_spec(path)


def test_colliding_names_get_the_hash(tmp_path):
    spec = load_spec(write_spec(tmp_path / "s.yaml", grid={"optim.lr": [1e-3, 2e-3]}))  # both width-aware: 'lrA'
    assert sorted(r.name for r in spec.runs) == sorted(f"S4-mng-repa-lrA-s0-{r.config_hash[:6]}" for r in spec.runs)


def test_a_run_name_is_its_parts_and_another_seed_changes_only_its_seed_part(tmp_path):
    """The parts by role (size, mng, repa, lr, other axes, seed, and the hash of a name two configs share) are kept
    with the run, so nothing splits names on '-'; a seed copy of a shared name gets its own config's hash."""
    spec = load_spec(write_spec(tmp_path / "s.yaml", settings={**LR_SETTINGS, "lr-x": {"s0": {"optim.ema_decay": 0.9}}},
                                groups=[{"grid": {"optim.lr": [1e-3, 2e-3]}},
                                        {"grid": {"lr": ["lrS"], "lr-x": ["s0"], "method.augment": ["color,cutout"]}}]))
    for run in spec.runs:
        assert "-".join(run.name_parts.values()) == run.name and run.name_parts["seed"] == "s0"
        copy = with_seed(run, 3)
        assert {k: v for k, v in copy.name_parts.items() if v != run.name_parts[k]} == (
            {"seed": "s3", "hash": copy.config_hash[:6]} if "hash" in run.name_parts else {"seed": "s3"})
        assert copy.name == "-".join(copy.name_parts.values())
    named = next(r for r in spec.runs if "hash" not in r.name_parts)
    assert named.name_parts == {"size": "S4", "mng": "mng", "repa": "repa", "lr": "lrS", "lr-x": "s0",
                                "method.augment": "augmentcolor,cutout", "seed": "s0"}


def test_a_sweep_set_overrides_the_base_of_every_run(tmp_path, capsys):
    path = write_spec(tmp_path / "s.yaml", grid={"method.repa": [True, False]})
    plain = load_spec(path, runs_dir=tmp_path / "runs")
    spec = load_spec(path, runs_dir=tmp_path / "runs", overrides=["train.batch_size=4", "optim={lr: 1.0e-3}"])
    assert [r.name for r in spec.runs] == [r.name for r in plain.runs] and spec.spec_hash != plain.spec_hash
    for run, before in zip(spec.runs, plain.runs):
        assert (run.config.train.batch_size, run.config.optim.lr, run.config.optim.base_width) == (4, 1e-3, 16)
        assert run.config_hash != before.config_hash
    assert gatscale_main(["sweep", str(path), "--dry-run", "--runs-dir", str(tmp_path / "runs"),
                          "--set", "train.batch_size=4"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("S4-")]
    assert len(rows) == 2 and all(row[-7] == "4" for row in rows)  # the batch column (then GPUs ... action)


def test_shipped_specs_expand(tmp_path):
    counts = {"demo": 16, "lr_crosscheck": 4, "scaling": 4, "ablation": 8}  # lr_crosscheck: 6 names, 2 aliases
    for name, n in counts.items():
        spec = load_spec(REPO / "sweeps" / f"{name}.yaml", runs_dir=tmp_path)
        assert len(spec.runs) == n and spec.name == name
    scaling = load_spec(REPO / "sweeps" / "scaling.yaml", runs_dir=tmp_path)
    assert [r.gpus for r in scaling.runs] == [1, 2, 4, 8]  # from the cluster profile's size table
    assert {r.config.eval.fid_every for r in scaling.runs} == {10000}
    demo = {r.name: r for r in load_spec(REPO / "sweeps" / "demo.yaml", runs_dir=tmp_path).runs}
    s, b = demo["S2-mng-repa-lrA-s0"].config, demo["B2-mng-repa-lrA-s0"].config
    assert effective_lr(s, "generator") == 2 * effective_lr(b, "generator")  # width ratio 1:2 as S:B
    assert effective_lr(demo["B2-mng-repa-lrS-s0"].config, "generator") == effective_lr(s, "generator")


@pytest.mark.parametrize("cwd", ["project", "elsewhere"])
def test_runs_dir_and_a_relative_store_resolve_from_the_specs_project_not_the_shell(tmp_path, monkeypatch, cwd):
    project = tmp_path / "project"
    (project / "sweeps" / "deep").mkdir(parents=True)
    (project / ".git").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / cwd)
    spec = load_spec(two_run_spec(project / "sweeps" / "deep" / "s.yaml", uri="sqlite:///mlflow.db"))
    assert spec.root == project and spec.study_dir == project / "runs" / "t"
    assert {r.config.tracking.uri for r in spec.runs} == {f"sqlite:///{project / 'mlflow.db'}"}
    assert load_spec(project / "sweeps" / "deep" / "s.yaml", runs_dir="mine").runs_dir == tmp_path / cwd / "mine"


def test_resolve_uri_takes_relative_stores_from_the_root_and_leaves_the_rest():
    from gatscale.tracking.store import resolve_uri

    assert resolve_uri("sqlite:///a/m.db?x=1", "/p") == "sqlite:////p/a/m.db?x=1"
    assert resolve_uri("sqlite:////abs/m.db", "/p") == "sqlite:////abs/m.db"
    assert resolve_uri("file:mlruns", "/p") == "file:///p/mlruns" and resolve_uri("mlruns", "/p") == "/p/mlruns"
    assert resolve_uri("http://host:5000", "/p") == "http://host:5000"
    assert resolve_uri("file:///abs/mlruns", "/p") == "file:///abs/mlruns"


def test_runs_that_train_the_same_thing_are_one_run_with_aliases(tmp_path, capsys):
    # width-aware LR at GAT-S/4 (base_width 16 = its width) is 2e-3: lrF is the same training under another name
    settings = {"lr": {"lrA": {"optim.width_aware_lr": True}, "lrF": {"optim.width_aware_lr": False, "optim.lr": 2e-3},
                       "lrS": {"optim.width_aware_lr": False, "optim.lr": 4e-3}}}
    path = write_spec(tmp_path / "s.yaml", settings=settings, grid={"lr": ["lrA", "lrF", "lrS"]})
    runs = {r.name: r for r in load_spec(path, runs_dir=tmp_path / "runs").runs}
    assert set(runs) == {"S4-mng-repa-lrA-s0", "S4-mng-repa-lrS-s0"}
    assert runs["S4-mng-repa-lrA-s0"].aliases == ["S4-mng-repa-lrF-s0"]
    assert runs["S4-mng-repa-lrA-s0"].config.tracking.aliases == "S4-mng-repa-lrF-s0"  # the trainer's tag
    assert gatscale_main(["sweep", str(path), "--runs-dir", str(tmp_path / "runs"), "--dry-run"]) == 0
    assert "S4-mng-repa-lrA-s0 (= S4-mng-repa-lrF-s0)" in capsys.readouterr().out


def test_dry_run_has_no_side_effects(tmp_path, monkeypatch, capsys):
    spec = two_run_spec(tmp_path / "s.yaml", uri="sqlite:///mlflow.db")
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    assert gatscale_main(["sweep", str(spec), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == before  # no runs/, no mlflow.db
    assert "2 start" in out and "GPU-h" in out and "assumed MFU" in out


def _status(run, state, step=5, **kw):
    run.run_dir.mkdir(parents=True, exist_ok=True)
    write_status(run.run_dir, state, step, run.config.train.iterations, **kw)


def test_plan_skips_terminal_resumes_the_rest_and_gives_up_on_repeated_failures(tmp_path):
    spec = load_spec(write_spec(tmp_path / "s.yaml", grid={"train.seed": [0, 1, 2, 3, 4, 5, 6]}, max_attempts=2),
                     runs_dir=tmp_path / "runs")
    r = spec.runs
    _status(r[0], "finished", 20)
    _status(r[1], "diverged", 3, reason="non-finite loss/d at step 3")
    _status(r[2], "preempted")
    _status(r[3], "running")  # no process holds its lock: killed
    _status(r[4], "failed", reason="RuntimeError: boom")
    _status(r[5], "failed", reason="RuntimeError: boom")
    note_failure(r[5].run_dir, "exit1@123")  # a failure before this one: 2 of max 2
    actions = [(p.state, p.action) for p in plan(spec)]
    assert actions == [("finished", "skip"), ("diverged", "skip"), ("preempted", "resume"), ("interrupted", "resume"),
                       ("failed", "retry"), ("failed", "give-up"), ("new", "start")]


def test_plan_reads_each_record_once_and_writes_nothing(tmp_path, monkeypatch):
    from gatscale.sweep import plan as plan_module, record
    spec = load_spec(write_spec(tmp_path / "s.yaml", grid={"train.seed": [0, 1, 2]}), runs_dir=tmp_path / "runs")
    _status(spec.runs[0], "failed", reason="RuntimeError: boom")
    note_failure(spec.runs[0].run_dir, "exit1@123")
    _status(spec.runs[1], "preempted")
    reads = []

    def counted(run_dir):
        reads.append(run_dir)
        return record.read_record(run_dir)
    monkeypatch.setattr(plan_module, "read_record", counted)
    before = sorted((f, f.stat().st_mtime_ns) for f in (tmp_path / "runs").rglob("*"))
    planned = plan(spec)
    assert sorted(map(str, reads)) == sorted(str(r.run_dir) for r in spec.runs)  # one read per run
    assert sorted((f, f.stat().st_mtime_ns) for f in (tmp_path / "runs").rglob("*")) == before
    assert [p.action for p in planned] == ["retry", "resume", "start"]
    assert len(planned[0].failures) == 2  # the recorded one and the one status.json shows, for prepare to record


def test_plan_refuses_a_folder_of_another_config(tmp_path):
    spec = load_spec(two_run_spec(tmp_path / "s.yaml"), runs_dir=tmp_path / "runs")
    run = spec.runs[0]
    run.run_dir.mkdir(parents=True)
    update_record(run.run_dir, config_hash="0123456789")
    p = plan(spec)[0]
    assert p.action == "refuse" and "0123456789" in p.detail and run.config_hash in p.detail


def test_editing_a_result_key_under_the_same_name_is_refused_with_the_difference(tmp_path, capsys):
    path = two_run_spec(tmp_path / "s.yaml")
    spec = load_spec(path, runs_dir=tmp_path / "runs")
    prepare(plan(spec)[0], spec, None, "")
    path.write_text(path.read_text().replace("lr: 0.002", "lr: 0.001"))  # same names (lrA), new hashes
    assert gatscale_main(["sweep", str(path), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "optim.lr: 0.002 -> 0.001" in err and spec.runs[0].name in err
    assert not spec.runs[1].run_dir.exists()  # nothing launched


def test_plan_reads_the_trainers_lock(tmp_path):
    from gatscale.train.status import RunLock
    spec = load_spec(two_run_spec(tmp_path / "s.yaml"), runs_dir=tmp_path / "runs")
    _status(spec.runs[0], "running")
    with RunLock(spec.runs[0].run_dir):
        assert (plan(spec)[0].state, plan(spec)[0].action) == ("running", "skip")


def test_local_backend_retries_a_failing_run_then_gives_up(tmp_path, monkeypatch):
    from gatscale.sweep import backends
    from gatscale.sweep.backends import local
    spec = load_spec(two_run_spec(tmp_path / "s.yaml"), runs_dir=tmp_path / "runs")
    run = spec.runs[0]
    for p in plan(spec)[:1]:
        prepare(p, spec, None, "")
    monkeypatch.setattr(local, "train_command", lambda r: [sys.executable, "-c", "import sys; sys.exit(1)"])
    [outcome] = backends.launch("local", [run], backends.Options(max_attempts=3, study_dir=spec.study_dir))
    assert outcome.state == "failed" and "failed 3 of 3 attempts" in outcome.detail
    assert len(json.loads((run.run_dir / RECORD_FILE).read_text())["failures"]) == 3
    assert plan(spec)[0].action == "give-up"  # a later launch does not try again


def test_status_command_lists_every_run(tmp_path, monkeypatch, capsys):
    spec_path = two_run_spec(tmp_path / "s.yaml")
    spec = load_spec(spec_path, runs_dir=tmp_path / "runs")
    _status(spec.runs[0], "finished", 20, metrics={"loss/d": 1.25, "loss/g": 0.5, "fd_digits": 321.0})
    assert gatscale_main(["status", str(spec_path), "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("S4-")}
    assert len(lines) == 2
    done = lines[spec.runs[0].name]
    assert "finished" in done and "20/20" in done and "1.25" in done and "321 fd_digits" in done
    assert "new" in lines[spec.runs[1].name]


def test_spec_names_resolve_relative_to_the_spec(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "base.yaml").write_text(yaml.safe_dump(tiny_run_dict()))
    (tmp_path / "sweeps").mkdir()
    spec = load_spec(write_spec(tmp_path / "sweeps" / "s.yaml", text="name: t\nbase_config: ../cfg/base.yaml\n"
                                                                   "grid: {train.seed: [0, 1]}\n"))
    assert [r.config.model.generator.hidden_size for r in spec.runs] == [16, 16]


@pytest.mark.parametrize("text, key", [("measured: [unclosed", "<yaml>"), ("- a list", "<root>"),
                                       ("measured: 3", "measured")])
def test_a_bad_throughput_table_is_an_error_naming_the_file(tmp_path, text, key):
    from gatscale.sweep.throughput import load_table
    table = tmp_path / "throughput.yaml"
    table.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_table(table)
    assert (e.value.source, e.value.key) == (str(table), key)
    with pytest.raises(ConfigError, match=r"throughput = '.*absent.yaml': file not found"):
        load_table(tmp_path / "absent.yaml")


def test_a_folder_of_another_config_is_refused_naming_the_changed_keys_but_not_name_or_tracking(tmp_path, capsys):
    from gatscale.core.config import dump_config, replace
    spec = load_spec(two_run_spec(tmp_path / "s.yaml"), runs_dir=tmp_path / "runs")
    run = spec.runs[0]
    run.run_dir.mkdir(parents=True)
    dump_config(replace(run.config, **{"optim.lr": 1e-3, "tracking.experiment": "old"}), run.run_dir / "config.yaml")
    gatscale_main(["sweep", str(spec.path), "--runs-dir", str(tmp_path / "runs"), "--dry-run"])
    out = capsys.readouterr()
    assert "Differences (folder -> spec): optim.lr: 0.001 -> 0.002." in out.out + out.err
    assert "tracking.experiment" not in out.out + out.err


def test_a_finished_run_records_its_throughput_and_the_estimates_use_it_first(tmp_path):
    from gatscale.sweep.throughput import estimate, load_table, measured_runs
    from gatscale.train.trainer import train
    spec = load_spec(two_run_spec(tmp_path / "s.yaml"), runs_dir=tmp_path / "runs")
    run = spec.runs[0]
    table = load_table()
    assumed = estimate(run, "cpu", table, measured_runs(spec.study_dir.parent))
    assert assumed.how.startswith("assumed MFU")
    cfg = run.config
    cfg.train.iterations, cfg.tracking.backend = 2, "none"
    train(cfg, run.run_dir, device="cpu")
    record = json.loads((run.run_dir / "status.json").read_text())["throughput"]
    assert record["device"] == "cpu" and record["precision"] == "fp32" and record["images_per_s"] > 0
    assert record["batch_size"] == cfg.train.batch_size and record["generator"]["hidden_size"] > 0
    measured = measured_runs(spec.study_dir.parent)
    est = estimate(run, "cpu", table, measured)
    assert est.how == "measured (1 run)"
    assert est.hours == pytest.approx(run.config.train.iterations * run.config.train.batch_size
                                      / record["images_per_s"] / 3600)
    assert estimate(spec.runs[1], "cpu", table, measured).how == "measured (1 run)"   # another seed, the same shape
    spec.runs[1].config.train.batch_size *= 2                                          # another batch: not measured
    assert estimate(spec.runs[1], "cpu", table, measured).how.startswith("assumed")
