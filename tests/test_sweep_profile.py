"""Cluster profiles: loading, validation errors that name file/key/value, and the submitit kwargs
`submitit_parameters` derives (no cluster needed)."""
import os

import pytest
import submitit
import yaml

from gatscale.core.config import ConfigError
from gatscale.sweep.profile import PROFILES_DIR, executor_kwargs, load_profile, profile_resources, submitit_parameters

MINIMAL = {"partition": "gpu", "gpus_per_node": 4, "sizes": {"default": {"gpus": 1, "time_min": 60}}}


def write_profile(tmp_path, **changes):
    data = {**MINIMAL, **changes}
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_example_h100_gives_paper_sizes_their_gpus_in_typed_gres():
    profile = load_profile("example-h100")
    gpus = {m: submitit_parameters(profile, m)["tasks_per_node"] for m in ("GAT-S/2", "GAT-B/2", "GAT-L/2", "GAT-XL/2")}
    assert gpus == {"GAT-S/2": 1, "GAT-B/2": 2, "GAT-L/2": 4, "GAT-XL/2": 8}
    xl = submitit_parameters(profile, "GAT-XL/2")
    assert xl["slurm_gres"] == "gpu:h100:8" and xl["gpus_per_node"] is None
    assert xl["mem_gb"] == 8 * profile.mem_per_gpu and xl["cpus_per_task"] == profile.cpus_per_gpu
    assert xl["timeout_min"] == profile.sizes["XL"].time_min
    assert submitit_parameters(profile, "GAT-XL/8")["slurm_gres"] == "gpu:h100:4"  # full name beats its letter


def test_gpus_beyond_one_node_span_several_nodes():
    profile = load_profile("example-h100")
    kw = submitit_parameters(profile, "GAT-XL/2", gpus=16)
    assert (kw["nodes"], kw["tasks_per_node"], kw["slurm_gres"]) == (2, 8, "gpu:h100:8")


def test_plain_gpus_per_node_when_no_gres_syntax(tmp_path):
    kw = submitit_parameters(load_profile(write_profile(tmp_path)), "GAT-B/2", gpus=4)
    assert (kw["gpus_per_node"], kw["slurm_gres"], kw["tasks_per_node"]) == (4, None, 4)


def test_local_test_profile_is_cpu_only_and_sends_xl_to_the_long_partition():
    profile = load_profile(PROFILES_DIR / "local-test.yaml")
    small, xl = submitit_parameters(profile, "GAT-S/2"), submitit_parameters(profile, "GAT-XL/2")
    assert small["gpus_per_node"] is None and small["slurm_gres"] is None and small["tasks_per_node"] == 1
    assert (small["slurm_partition"], xl["slurm_partition"]) == ("debug", "long")
    assert xl["timeout_min"] > small["timeout_min"]


def test_size_rows_fall_back_field_by_field(tmp_path):
    sizes = {"default": {"gpus": 1, "time_min": 60}, "XL": {"gpus": 8}, "GAT-XL/8": {"time_min": 30}}
    row = profile_resources(load_profile(write_profile(tmp_path, gpus_per_node=8, sizes=sizes)), "GAT-XL/8")
    assert (row.gpus, row.time_min) == (8, 30)


@pytest.fixture
def srun_on_path(tmp_path, monkeypatch):
    """An `srun` on PATH that refuses to run: submitit's SlurmExecutor only checks that one exists (its affinity()),
    and these tests only render the sbatch text, so they need no cluster (`make test` on any machine)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text("#!/bin/sh\necho 'srun: a stand-in for tests/test_sweep_profile.py; no cluster here' >&2\nexit 1\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.mark.parametrize("profile", ["example-h100", "local-test"])
def test_submitit_accepts_the_kwargs_and_writes_them_into_sbatch(profile, tmp_path, srun_on_path):
    p = load_profile(profile)
    executor = submitit.AutoExecutor(tmp_path, cluster="slurm", **executor_kwargs(p))
    executor.update_parameters(**submitit_parameters(p, "GAT-L/2"))  # raises on a kwarg submitit does not know
    text = executor._executor._make_submission_file_text("python -m x", "uid")
    assert f"#SBATCH --partition={p.partition}" in text
    assert f"#SBATCH --time={p.sizes.get('L', p.sizes.get('default')).time_min}" in text
    assert all(line in text for line in p.setup)
    assert executor._executor.max_num_timeout == p.max_requeue


@pytest.mark.parametrize("changes, key, value", [
    ({"gpus_per_node": "eight"}, "gpus_per_node", "eight"),
    ({"partiton": "gpu"}, "partiton", "gpu"),
    ({"gres": "gpu:h100:8"}, "gres", "gpu:h100:8"),
    ({"gres": "gpu:{count}"}, "gres", "gpu:{count}"),
    ({"setup": "module load cuda"}, "setup", "module load cuda"),
    ({"additional_parameters": {"--mail-type": "FAIL"}}, "additional_parameters.--mail-type", "FAIL"),
    ({"additional_parameters": {"time": 60}}, "additional_parameters.time", 60),
    ({"sizes": {"XXL": {"gpus": 1}}}, "sizes.XXL", {"gpus": 1}),
    ({"sizes": {"B": {"gpu": 2}}}, "sizes.B.gpu", 2),
    ({"sizes": {"B": {"time_min": 0}}}, "sizes.B.time_min", 0),
    ({"mem_per_gpu": 0}, "mem_per_gpu", 0.0),
])
def test_invalid_profile_errors_name_file_key_and_value(tmp_path, changes, key, value):
    path = write_profile(tmp_path, **changes)
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert (err.value.source, err.value.key, err.value.value) == (str(path), key, value)


@pytest.mark.parametrize("model, gpus, changes, key", [
    ("GAT-B/2", 7, {}, "sizes.B.nodes"),                              # 7 GPUs do not split over 2 nodes
    ("GAT-B/2", None, {"sizes": {"B": {"gpus": 8, "nodes": 1, "time_min": 5}}}, "sizes.B.nodes"),  # 8 > 4 per node
    ("GAT-B/2", 2, {"gpus_per_node": 0}, "gpus_per_node"),            # GPUs asked of a CPU cluster
    ("GAT-B/2", None, {"sizes": {"S": {"gpus": 1, "time_min": 5}}}, "sizes.B.gpus"),  # no row for B
    ("GAT-B/2", 1, {"signal_delay_s": 3600}, "signal_delay_s"),       # USR2 would arrive at the start
    ("GAT-B/3", 1, {}, "model"),
])
def test_submitit_parameters_name_what_cannot_be_satisfied(tmp_path, model, gpus, changes, key):
    profile = load_profile(write_profile(tmp_path, **changes))
    with pytest.raises(ConfigError) as err:
        submitit_parameters(profile, model, gpus=gpus)
    assert err.value.key == key and str(err.value).startswith(str(profile.source))


def test_unknown_profile_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="example-h100, local-test"):
        load_profile("no-such-cluster")
