"""Loaders and `gatscale figures` against a planted study written into a temporary SQLite MLflow store."""
import argparse

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from analysis import cli, load, load_histories, load_lpips, load_runs
from analysis.load import MissingData
from analysis_fixtures import DIVERGENCE_REASON, STUDY, study_frames, write_study
from gatscale.cli import main as gatscale_main

TYPED = ["name", "status", "model", "size", "patch", "width", "model_d", "width_d", "mng", "repa", "width_aware_lr",
         "lr_g", "lr_d", "seed", "batch_size", "gflops_g", "gflops_d", "epochs_per_step", "flops_per_step",
         "diverged_step", "stand_in"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    ids = write_study(uri, "study", root / "artifacts")
    # a run of the same experiment outside the sweep, and a one-model experiment with nothing to compare
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name("study").experiment_id
    ids["outsider"] = client.create_run(exp_id, run_name="outsider").info.run_id
    client.log_param(ids["outsider"], "model.generator.size", "GAT-XL/2")
    write_study(uri, "small", root / "artifacts-small", runs=[STUDY[1]], lpips=False)
    return uri, ids, root


def test_load_runs_reads_params_tags_and_nesting(store):
    uri, ids, _ = store
    runs = load_runs("study", uri, parent_run_id=ids["parent"])
    expected, _, _ = study_frames()
    got = runs.set_index("name").loc[expected["name"], TYPED[1:]].reset_index()
    pd.testing.assert_frame_equal(got, expected[TYPED], check_dtype=False)
    assert set(runs["run_id"]) == {ids[name] for name in expected["name"]}
    assert (runs["parent_run_id"] == ids["parent"]).all()
    assert runs.loc[runs["name"] == "B2-lrS", "divergence_reason"].item() == DIVERGENCE_REASON
    assert runs["method.mng_min_info"].iloc[0] == 0.125 and runs["model.generator.hidden_size"].iloc[0] is None
    everything = load_runs("study", uri)  # the whole experiment: the outsider too, never the sweep's parent run
    assert set(everything["run_id"]) == set(runs["run_id"]) | {ids["outsider"]}


def test_histories_hold_every_logged_value(store, tmp_path):
    uri, ids, _ = store
    runs = load_runs("study", uri, parent_run_id=ids["parent"])
    got = load_histories(runs, uri, cache_dir=tmp_path)
    _, expected, _ = study_frames()
    expected = expected.assign(run_id=expected["name"].map(ids))
    key = ["run_id", "metric", "step"]
    got, expected = (f.sort_values(key).reset_index(drop=True) for f in (got, expected[got.columns]))
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)  # NaN of the diverged step included
    assert set(load_histories(runs, uri, metrics=["fid"], cache_dir=tmp_path)["metric"]) == {"fid"}


def test_finished_runs_come_from_the_cache(store, tmp_path, monkeypatch):
    uri, ids, _ = store
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name("study").experiment_id
    live = client.create_run(exp_id, run_name="live", tags={"gatscale.status": "running"}).info.run_id
    client.log_param(live, "model.generator.size", "GAT-S/2")
    client.log_batch(live, metrics=[Metric("loss/d", 1.0, 1, 10)])
    runs = load_runs("study", uri)
    first = load_histories(runs, uri, cache_dir=tmp_path)
    client.log_batch(live, metrics=[Metric("loss/d", 0.5, 2, 20)])
    fetched = []
    original = MlflowClient.get_metric_history
    monkeypatch.setattr(MlflowClient, "get_metric_history",
                        lambda self, run_id, key: fetched.append(run_id) or original(self, run_id, key))
    second = load_histories(load_runs("study", uri), uri, cache_dir=tmp_path)
    assert set(fetched) == {live}  # only the run that changed is fetched again
    assert list(second.loc[second["run_id"] == live, "value"]) == [1.0, 0.5]
    assert len(second) == len(first) + 1
    client.delete_run(live)


def test_the_history_cache_is_parquet_and_never_unpickled(store, tmp_path, monkeypatch):
    uri, ids, _ = store
    runs = load_runs("study", uri, parent_run_id=ids["parent"])
    first = load_histories(runs, uri, cache_dir=tmp_path)
    files = sorted(tmp_path.rglob("*.*"))
    assert files and all(f.suffix == ".parquet" for f in files)
    files[0].write_bytes(b"\x80\x04 not parquet")  # a tampered entry is fetched again, not trusted
    monkeypatch.setattr(pd, "read_pickle", lambda *a, **k: pytest.fail("the cache must never unpickle"))
    second = load_histories(runs, uri, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(second, first)


def test_lpips_tables_come_from_the_run_artifacts(store):
    uri, ids, _ = store
    runs = load_runs("study", uri, parent_run_id=ids["parent"])
    got = load_lpips(runs, uri)
    _, _, expected = study_frames()
    assert set(got["name"]) == {"B2-full", "B2-nomng"}
    np.testing.assert_allclose(got.sort_values(["name", "block"])["contribution"],
                               expected.sort_values(["name", "block"])["contribution"])


def test_unknown_experiment_and_missing_store_are_explained(store, tmp_path):
    uri, _, _ = store
    with pytest.raises(MissingData, match="no MLflow experiment 'nope'.*experiments there: .*small, study"):
        load_runs("nope", uri)
    with pytest.raises(MissingData, match="does not exist; give the store.*--tracking-uri.*TRACKING_URI in a notebook"):
        load_runs("study", f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()


def figures_args(**kw):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([])
    vars(args).update(kw)
    return args


@pytest.mark.slow  # ~10-25 s: renders and writes all 12 PNG/PDF files
def test_cli_writes_every_figure_of_a_full_study(store, tmp_path, capsys):
    uri, ids, _ = store
    args = figures_args(experiment="study", tracking_uri=uri, parent_run_id=ids["parent"], out=str(tmp_path / "f"),
                        cache_dir=str(tmp_path / "cache"))
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "missing" not in out
    for stem in ("lr_crosscheck", "lpips_contribution", "fid_vs_iteration_by_size", "fid_vs_iteration_by_patch",
                 "fid_vs_train_compute", "fid_vs_inference_gflops", "samples"):
        for ext in ("png", "pdf"):
            assert f"{tmp_path / 'f' / stem}.{ext}" in out and (tmp_path / "f" / f"{stem}.{ext}").stat().st_size > 0
    assert (tmp_path / "f" / "ablation.tex").exists()


def test_cli_says_which_figures_are_missing_and_why(store, tmp_path, capsys):
    uri, _, _ = store
    args = figures_args(experiment="small", tracking_uri=uri, out=str(tmp_path), cache_dir="none")
    assert cli.main(args) == 0  # the one-model experiment still gives its FID curve
    out = capsys.readouterr().out
    assert "wrote fid_vs_iteration_by_size" in out
    assert "missing lr_crosscheck: needs runs of two widths" in out
    assert "missing lpips_contribution: no LPIPS tables: run gatscale analyze lpips-contribution" in out
    assert "missing fid_vs_iteration_by_patch: needs one model size at two or more patch sizes" in out
    assert "missing fid_vs_train_compute: needs fid at iteration 1,000" in out
    assert "missing ablation: needs runs of one model that differ" in out


def test_cli_reads_experiment_and_uri_from_a_sweep_spec(store, tmp_path, capsys):
    uri, _, _ = store
    spec = tmp_path / "sweep.yaml"
    spec.write_text(f"name: small\nbase:\n  tracking:\n    uri: {uri}\n")
    assert cli.read_spec(spec) == ("small", uri)
    assert cli.main(figures_args(spec=str(spec), out=str(tmp_path / "f"), cache_dir="none")) == 0
    assert "1 runs of experiment 'small'" in capsys.readouterr().out
    # Read as `gatscale sweep` reads it: a base_config file, dotted keys in base (the later wins).
    (tmp_path / "base.yaml").write_text("tracking:\n  uri: sqlite:///from-base.db\n")
    spec.write_text("name: other\nbase_config: base.yaml\n")
    assert cli.read_spec(spec) == ("other", f"sqlite:///{tmp_path / 'from-base.db'}")  # from the spec's folder
    spec.write_text(f"name: other\nbase_config: base.yaml\nbase:\n  tracking.uri: {uri}\n")
    assert cli.read_spec(spec) == ("other", uri)
    spec.write_text("name: other\nbase:\n  tracking:\n    experiment: elsewhere\n")  # a study is its experiment
    for argv, says in ([["--spec", str(spec)], "base.tracking.experiment = 'elsewhere'"],
                       [["--spec", str(tmp_path / "absent.yaml")], "sweep spec"],
                       [["--experiment", "nope", "--tracking-uri", uri, "--cache-dir", "none"],
                        "no MLflow experiment 'nope'"],
                       [["--experiment", "nope", "--tracking-uri", f"sqlite:///{tmp_path}/absent.db"],
                        "does not exist"],
                       [["--run-dirs", str(tmp_path)], "no metrics.jsonl"], [[], "pass --experiment NAME"]):
        assert gatscale_main(["figures", *argv, "--out", str(tmp_path / "f")]) == 2, argv  # bad input (README)
        err = capsys.readouterr().err
        assert err.startswith("gatscale: error: ") and says in err and err.count("\n") == 1, err


def test_figures_for_a_probe_spec_draw_the_probe_figure_only(store, tmp_path, capsys):
    uri, _, _ = store
    spec = tmp_path / "probe.yaml"  # the planted study read as a probe's trials: no cross-check, no FD figure
    spec.write_text(f"name: study\nbase:\n  tracking:\n    uri: {uri}\nprobe: {{lr_start: 1.0e-3}}\n")
    assert cli.main(figures_args(spec=str(spec), out=str(tmp_path / "f"), cache_dir="none")) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == [out[1]] and out[1].startswith("missing lr_probe: needs runs at fixed LRs")
    assert not (tmp_path / "f").exists()


def test_shrunk_models_are_named_with_their_overrides():
    params = {"model.generator.depth": 4, "model.generator.hidden_size": 32, "model.discriminator.depth": None}
    assert load.model_label("GAT-S/2", params, "generator") == "GAT-S/2 (d=4, C=32)"
    assert load.model_label("GAT-S/2", params, "discriminator") == "GAT-S/2"
    assert load.model_width("GAT-S/2", 32) == 32 and load.model_width("GAT-XL/2") == 1152


def _write_run_folder(run_dir, name, mlflow_run, history):
    """The run folder as the trainer leaves it: its metrics.jsonl (FolderTracker) and status.json."""
    from gatscale.tracking import FolderTracker

    t = FolderTracker()
    t.start(run_dir, name, mlflow_run.data.params,
            {k: v for k, v in mlflow_run.data.tags.items() if k.startswith("gatscale.") and k != "gatscale.status"})
    for step, group in history.groupby("step"):
        t.log_metrics(dict(zip(group["metric"], group["value"])), step)
    t.finish("finished")
    (run_dir / "status.json").write_text('{"status": "finished"}')


def test_a_reachable_run_folder_is_read_instead_of_mlflow_and_a_relogged_step_counts_once(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = write_study(uri, "folders", tmp_path / "artifacts", runs=[STUDY[0]])
    from_mlflow = load_runs("folders", uri)
    run = from_mlflow.iloc[0]
    assert run["folder"] is None  # the fixture's folder has no metrics.jsonl yet
    expected = load_histories(from_mlflow, uri, cache_dir=None)
    run_dir = tmp_path / "artifacts" / "runs" / run["name"]
    _write_run_folder(run_dir, run["name"], MlflowClient(uri).get_run(run["run_id"]), expected)
    from gatscale.tracking import FolderTracker
    resumed = FolderTracker()  # a resumed attempt logs the last step again: the later value is the one read
    resumed.start(run_dir, run["name"], {}, {})
    resumed.log_metrics({"fid": 1.25}, 1000)
    resumed.finish("finished")

    monkeypatch.setattr(MlflowClient, "get_metric_history", lambda *a: pytest.fail("read from MLflow"))
    runs = load_runs("folders", uri)
    assert runs["folder"].tolist() == [str(run_dir)] and runs["run_id"].tolist() == [ids[run["name"]]]
    got = load_histories(runs, uri, cache_dir=None)
    expected.loc[(expected["metric"] == "fid") & (expected["step"] == 1000), "value"] = 1.25
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    alone = load.load_run_folders([run_dir])  # no MLflow at all (tracking.backend: none)
    pd.testing.assert_frame_equal(alone[TYPED], runs[TYPED], check_dtype=False)
    pd.testing.assert_frame_equal(load_histories(alone).drop(columns="run_id"), got.drop(columns="run_id"),
                                  check_dtype=False)
    assert cli.main(figures_args(run_dirs=[str(run_dir)], out=str(tmp_path / "f"))) == 0
    assert (tmp_path / "f" / "fid_vs_iteration_by_size.csv").is_file()


def test_a_run_without_logged_lrs_gets_them_from_its_config_by_eq_4():
    from gatscale.core.config import config_from_dict, effective_lr, flatten, to_dict
    cfg = config_from_dict({"model": {"generator": {"size": "GAT-B/2"}, "discriminator": {"size": "GAT-S/2"}},
                            "optim": {"lr": 3e-4, "base_width": 384}})
    row = load._run_row("r", {k: str(v) for k, v in flatten(to_dict(cfg)).items()}, {}, "finished", pd.NaT, "", None)
    assert row["lr_g"] == effective_lr(cfg, "generator") == 1.5e-4 and row["lr_d"] == effective_lr(cfg, "discriminator")
