"""`gatscale probe-lr`: the ladder/bisection on a synthetic stability oracle, resume from the trial folders, the
LR-law fit and its CI, the spec's probe errors, and the trainer's stability stop (train.stability)."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from gatscale.core.config import ConfigError, StabilityConfig
from gatscale.core.stats import fit_lr_law
from gatscale.sweep import launch as sweep_launch, probe_cli
from gatscale.sweep.probe import (
    ABOVE,
    BELOW,
    BRACKETED,
    OUT_OF_TRIALS,
    ProbeConfig,
    probe_config,
    probe_state,
    search,
    trials_spec,
)
from gatscale.sweep.spec import load_spec
from gatscale.train.stability import StabilityWatch
from gatscale.train.status import write_status
from gatscale.train.trainer import train
from sweep_fixtures import write_spec
from train_fixtures import tiny_config

DEMO = ProbeConfig(lr_start=0.04, factor=4, lr_min=1e-4, lr_max=1.0, resolution=1.25, max_trials=8)


def run_oracle(p: ProbeConfig, edge: float):
    """The search against 'stable iff lr <= edge', to its end."""
    verdicts = {}
    while (s := search(p, verdicts)).next_lr is not None:
        verdicts[s.next_lr] = s.next_lr <= edge
    return s


@pytest.mark.parametrize("edge", [0.011, 0.03, 0.05, 0.1, 0.2, 0.6])
def test_bisection_brackets_the_edge_to_x1_25_within_8_trials(edge):
    s = run_oracle(DEMO, edge)
    assert s.outcome == BRACKETED and s.lo <= edge < s.hi and s.hi / s.lo <= 1.25
    assert len(s.tried) <= 8 and len(set(s.tried)) == len(s.tried)
    assert s.lo <= s.lr_max <= s.hi


def test_edges_outside_the_ladder_are_reported_not_bracketed():
    assert run_oracle(DEMO, edge=10.0).outcome == ABOVE
    assert run_oracle(DEMO, edge=1e-9).outcome == BELOW
    few = ProbeConfig(**{**DEMO.__dict__, "max_trials": 3})
    s = run_oracle(few, edge=0.5)
    assert s.outcome == OUT_OF_TRIALS and len(s.tried) == 3 and s.lr_max is None


def test_search_is_a_pure_replay_of_the_verdicts():
    full = run_oracle(DEMO, edge=0.07)
    for k in range(len(full.tried)):  # any prefix of the verdicts names the next trial of the full search
        known = {lr: lr <= 0.07 for lr in full.tried[:k]}
        assert search(DEMO, known).next_lr == full.tried[k]


def test_censored_fit_recovers_a_known_exponent_with_its_interval():
    c = np.array([16, 32, 64, 128, 256])
    edge = 3.0 * c ** -0.8 * np.array([1.05, 0.97, 1.02, 0.95, 1.01])
    law = fit_lr_law(c, edge / 1.12, edge * 1.12)                     # brackets x1.25 around the edges
    assert law.b_lo < -0.8 < law.b_hi and law.b_hi - law.b_lo < 0.5 and law.n == 5 and law.p_negative > 0.99
    assert law.line().startswith(f"lr_max ∝ C^b: b = {law.b:.2f} (95% CI ")
    two = fit_lr_law([16, 32], [0.18, 0.09], [0.22, 0.11])
    assert two.b == pytest.approx(-1.0, abs=0.15) and math.isnan(two.b_lo) and "no interval" in two.line()
    with pytest.raises(ValueError, match="two or more widths"):
        fit_lr_law([16, 16], [0.2, 0.1], [0.3, 0.2])
    with pytest.raises(ValueError, match="one side known"):
        fit_lr_law([16, 32, 64], [0.2, None, 0.1], [0.3, None, 0.2])


def test_an_open_bracket_is_one_sided_evidence_not_a_midpoint():
    c = [16, 32, 64, 128]
    closed = fit_lr_law(c, [0.18, 0.09, 0.045, 0.0225], [0.22, 0.11, 0.055, 0.0275])
    # the widest width only known to be unstable down to 0.03: consistent with b = -1, and it cannot pull b up
    opened = fit_lr_law(c, [0.18, 0.09, 0.045, None], [0.22, 0.11, 0.055, 0.03])
    assert opened.b_lo < -1 < opened.b_hi and opened.b == pytest.approx(closed.b, abs=0.2)
    # stable up to 0.001, far below the law: no evidence against it, so the fit stays (its midpoint would not)
    stable_up = fit_lr_law(c, [0.18, 0.09, 0.045, 0.001], [0.22, 0.11, 0.055, None])   # stable up to 0.001
    assert stable_up.b == pytest.approx(closed.b, abs=0.2)


def stability_oracle_probe(rng, widths, b, seeds, p, law_sd=0.1, seed_sd=0.3):
    """One simulated probe: per width an edge on lr = 0.1 (C / 32)^b times a log-normal departure; a trial is
    stable when every seed's own noisy edge lies above its LR; searched as `gatscale probe-lr` does."""
    lo, hi = [], []
    for c in widths:
        edge = math.log(0.1) + b * math.log(c / 32) + law_sd * rng.standard_normal()
        verdicts = {}
        while (s := search(p, verdicts)).next_lr is not None:
            verdicts[s.next_lr] = bool(np.all(math.log(s.next_lr) < edge + seed_sd * rng.standard_normal(seeds)))
        lo.append(s.lo)
        hi.append(s.hi)
    return lo, hi


def test_lr_law_interval_covers_the_true_exponent_of_a_stability_oracle():
    p = ProbeConfig(lr_start=0.16, factor=4, lr_min=1e-4, lr_max=4.0, resolution=1.25, max_trials=8)  # the demo's
    rng = np.random.default_rng(8)
    covered = 0
    for _ in range(200):
        b = rng.uniform(-1.5, 0.5)
        law = fit_lr_law((16, 32, 48), *stability_oracle_probe(rng, (16, 32, 48), b, 2, p))
        covered += law.b_lo <= b <= law.b_hi
    assert covered / 200 >= 0.9


def probe_spec(tmp_path, probe=None, **spec):
    sizes = ["GAT-S/4", "GAT-B/4"]
    per_size = {"B": {"model": {"generator": {"hidden_size": 32, "num_heads": 2},
                                "discriminator": {"hidden_size": 32, "num_heads": 2}}}}
    return write_spec(tmp_path / "probe.yaml", name="p", runs_dir=str(tmp_path / "runs"), per_size=per_size,
                      zip={"model.generator.size": sizes, "model.discriminator.size": sizes}, seeds=[0, 1],
                      probe={"lr_start": 0.04, "factor": 4, "lr_min": 1e-4, "lr_max": 1.0, **(probe or {})}, **spec)


@pytest.mark.parametrize("probe, key, says", [
    ({"factor": 1.1}, "probe.factor", "must be > resolution"),
    ({"lr_strat": 1e-3}, "probe.lr_strat", "unknown key"),
    ({"lr_start": 2.0}, "probe.lr_start", "must lie in [lr_min, lr_max]"),
    ({"lr_min": 0}, "probe.lr_min", "must be > 0"),
    ({"resolution": 1.0}, "probe.resolution", "must be > 1"),
    ({"max_trials": 1}, "probe.max_trials", "must be >= 2"),
    ({"stability": {"g_loss_abov": 3}}, "probe.stability.g_loss_abov", "unknown key"),
    ({"stability": {"fd_rise": 0.5}}, "probe.stability.fd_rise", "must be > 1"),
])
def test_probe_errors_name_file_key_and_value(tmp_path, probe, key, says):
    with pytest.raises(ConfigError) as e:
        spec = load_spec(probe_spec(tmp_path, probe))
        probe_state(spec, probe_config(spec))
    assert str(tmp_path / "probe.yaml") in str(e.value) and f"{key} = " in str(e.value) and says in str(e.value)


def test_an_lr_axis_is_refused(tmp_path):
    path = write_spec(tmp_path / "lr.yaml", name="p", grid={"optim.lr": [1e-3, 2e-3]}, probe={"lr_start": 1e-3})
    spec = load_spec(path)
    with pytest.raises(ConfigError, match=r"lr.yaml: grid = .*differ only in their LR"):
        probe_state(spec, probe_config(spec))


def test_a_trial_is_its_spec_run_with_the_lr_part_of_its_name_replaced(tmp_path):
    spec = load_spec(probe_spec(tmp_path, settings={"ema": {"s1": {"optim.ema_decay": 0.9}}}, grid={"ema": ["s1"]}))
    for st in probe_state(spec, probe_config(spec)):
        assert st.line.key == f"{st.line.runs[0].name_parts['size']}-mng-repa-s1"  # a label that reads like a seed
        for run, trial in zip(st.line.runs, st.trials[0.04]):
            assert trial.name_parts == {**run.name_parts, "lr": "lr4e-2"}
            assert trial.name == run.name.replace("lrA", "lr4e-2")


def finish(run, status):
    run.run_dir.mkdir(parents=True, exist_ok=True)
    write_status(run.run_dir, status, 5, 20)


def test_a_half_done_probe_continues_from_its_trial_folders(tmp_path):
    spec = load_spec(probe_spec(tmp_path))
    p = probe_config(spec)
    (s_line, b_line) = probe_state(spec, p)
    assert [len(st.planned) for st in (s_line, b_line)] == [2, 2] and s_line.search.next_lr == 0.04
    for run in s_line.trials[0.04]:          # S: stable at 0.04 (both seeds)
        finish(run, "finished")
    finish(b_line.trials[0.04][0], "diverged")  # B: one seed diverged at 0.04: unstable, the other seed not needed
    s_line, b_line = probe_state(spec, p)
    assert s_line.search.next_lr == 0.16 and b_line.search.next_lr == 0.01
    assert [q.action for q in s_line.planned] == ["start", "start"]
    finish(s_line.trials[0.16][0], "finished")  # one seed of two: no verdict yet, nothing re-launched
    s_line, _ = probe_state(spec, p)
    assert s_line.search.next_lr == 0.16 and [q.action for q in s_line.planned] == ["skip", "start"]
    names = {r.name for r in trials_spec(spec).runs}  # what `gatscale status` lists
    assert "S4-mng-repa-lr1.6e-1-s1" in names and "B4-mng-repa-lr1e-2-s0" in names and len(names) == 8


def test_probe_cli_runs_rounds_to_the_fit_and_resumes(tmp_path, monkeypatch, capsys):
    """The CLI loop with a backend stand-in that writes each trial's verdict from an oracle (edge ~ 1.6 / C)."""
    launched = []

    def fake_launch(backend, runs, options):
        for run in runs:
            launched.append(run.name)
            edge = 1.6 / run.config.model.generator.arch()["hidden_size"]
            finish(run, "finished" if run.config.optim.lr <= edge else "diverged")
        return [SimpleNamespace(state="finished") for _ in runs]
    monkeypatch.setattr(sweep_launch, "launch", fake_launch)
    spec_path = probe_spec(tmp_path)
    args = SimpleNamespace(spec=str(spec_path), runs_dir=None, profile=None, overrides=[], dry_run=False,
                           backend="local", max_parallel=None, cluster="auto", ray_address=None, wait=False)
    assert probe_cli.main(args) == 0
    out = capsys.readouterr().out
    assert "lr_max ∝ C^b: b = -1." in out and "no interval with 2 widths" in out
    result = json.loads((tmp_path / "runs" / "p" / "probe.json").read_text())
    assert [w["outcome"] for w in result["widths"]] == [BRACKETED, BRACKETED]
    for w in result["widths"]:
        assert w["lo"] <= 1.6 / w["width"] < w["hi"] and w["trials"] <= 8
    first = len(launched)
    assert probe_cli.main(args) == 0 and len(launched) == first  # all done: a relaunch trains nothing


def test_stability_watch_needs_patience_ticks_in_a_row():
    watch = StabilityWatch(StabilityConfig(g_loss_above=10, patience=2))
    assert watch.check({"loss/g": 12.0}) is None
    assert watch.check({"loss/g": 3.0}) is None         # the run of ticks is broken
    assert watch.check({"loss/g": 12.0}) is None
    assert "G loss 12 > 10" in watch.check({"loss/g": 12.0})
    fd = StabilityWatch(StabilityConfig(fd_rise=1.5))
    assert fd.check({"fd_digits": 100.0}) is None and fd.check({"fd_digits": 140.0}) is None
    assert "fd_digits 160 > 1.5 x its first value 100" in fd.check({"fd_digits": 160.0})
    assert not StabilityWatch(StabilityConfig()).enabled


def test_trainer_ends_an_unstable_run_as_diverged_with_the_reason(tmp_path):
    cfg = tiny_config(train={"iterations": 20, "stability": {"logit_gap_above": 1e-9}})
    result = train(cfg, tmp_path / "run", device="cpu")
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert result.status == status["status"] == "diverged" and result.step == status["step"] == 5  # first log tick
    assert status["reason"].startswith("unstable: logit gap |real - fake|") and status["reason"].endswith("at step 5")
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["stability"]["logit_gap_above"] > 0


def test_lr_probe_figure_draws_brackets_fit_and_the_paper_slope(tmp_path):
    import pandas as pd

    from analysis import figures
    from analysis.load import MissingData
    rows = []
    for size, width in (("S", 16), ("B", 32), ("XL", 48)):
        s = run_oracle(DEMO, edge=1.6 / width)
        for lr in s.tried:
            rows.append(dict(run_id=f"{size}-{lr}", name=f"{size}-{lr}", model=f"GAT-{size}/2 (C={width})", size=size,
                             width=width, width_aware_lr=False, lr_g=lr, stand_in="",
                             status="finished" if lr <= 1.6 / width else "diverged"))
    runs = pd.DataFrame(rows)
    fig = figures.lr_probe(runs, out_dir=tmp_path / "figures")
    assert (tmp_path / "figures" / "lr_probe.png").is_file() and fig.lr_law.n == 3
    assert fig.lr_law.b_lo < -1 < fig.lr_law.b_hi
    assert ((fig.table["lo"] <= 1.6 / fig.table["width"]) & (1.6 / fig.table["width"] < fig.table["hi"])).all()
    assert any("paper Eq. 4" in label and "b = -1" in label for label in fig.axes[0].get_legend_handles_labels()[1])
    with pytest.raises(MissingData, match="gatscale probe-lr"):
        figures.lr_probe(runs[runs["size"] == "S"])


def test_shipped_probe_specs_dry_run_with_their_budget(tmp_path, capsys):
    from gatscale.cli import main as gatscale_main
    from train_fixtures import REPO
    for name, widths in (("lr_probe_demo", [16, 32, 48]), ("lr_probe", [384, 768, 1024, 1152])):
        assert gatscale_main(["probe-lr", str(REPO / "sweeps" / f"{name}.yaml"), "--dry-run",
                              "--runs-dir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "budget: at most" in out and "trials per width" in out and "device-hours" in out
        spec = load_spec(REPO / "sweeps" / f"{name}.yaml", runs_dir=tmp_path)
        assert [st.line.width for st in probe_state(spec, probe_config(spec))] == widths
    assert not any(tmp_path.iterdir())  # a dry run creates nothing


def test_probe_trials_go_through_the_sweeps_launch_sequence(tmp_path, monkeypatch, capsys):
    """As `gatscale sweep` does: trials a machine cannot start are said so and noted, with no parent run in the
    tracker (exit 1); a trial folder holding another config is one `gatscale: error:` line (exit 2)."""
    import gatscale.sweep.backends.local as local
    from gatscale.cli import main as gatscale_main
    from gatscale.sweep.record import read_record, update_record
    from train_fixtures import tiny_run_dict
    monkeypatch.setattr(local, "_num_gpus", lambda: 0)
    base = tiny_run_dict(tracking={"backend": "mlflow", "uri": f"sqlite:///{tmp_path}/mlflow.db"})
    path = probe_spec(tmp_path, base=base, resources={"gpus": 1})
    assert gatscale_main(["probe-lr", str(path)]) == 1
    err = capsys.readouterr().err
    assert "gatscale probe-lr: 4 runs cannot start here: needs 1 GPU" in err and "--backend submitit" in err
    assert not (tmp_path / "mlflow.db").exists()
    spec = load_spec(path)
    (first, second) = probe_state(spec, probe_config(spec))
    assert read_record(first.planned[0].run.run_dir)["not_started"].startswith("needs 1 GPU")
    update_record(second.planned[1].run.run_dir, config_hash="0123456789")
    assert gatscale_main(["probe-lr", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gatscale: error: {second.planned[1].run.run_dir}: this folder holds run")
    assert err.count("\n") == 1
