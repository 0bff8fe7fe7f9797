"""`gatscale predict` on ladders with a planted law: its answers, and its refusals when the data cannot carry them."""
import math

import numpy as np
import pandas as pd
import pytest

from analysis import predict
from train_fixtures import REPO

A, B = 400.0, -0.3
C = np.array([10.0, 40.0, 90.0, 160.0])      # training GFLOPs at the matched iteration, per size


def ladder(rng, sd=0.1, seeds=3, b=B, sizes=C):
    rows = [(c, A * c ** b * math.exp(sd * rng.standard_normal())) for c in sizes for _ in range(seeds)]
    return pd.DataFrame(rows, columns=["c", "value"])


def test_predicts_the_planted_law_with_an_interval_that_holds_it():
    pts = ladder(np.random.default_rng(0))
    p = predict.predict_at(pts, flops_per_iteration=2e9, iterations=160)          # C = 320 GFLOPs: 2x the largest
    assert p.compute == pytest.approx(320) and p.extrapolation == pytest.approx(2)
    assert p.value == pytest.approx(A * 320 ** B, rel=0.1)
    assert p.lo95 < p.lo80 < A * 320 ** B < p.hi80 < p.hi95
    assert p.backtest is not None and p.law.runs == 12


def test_iterations_for_a_target_are_the_fewest_that_reach_it_with_the_probability():
    pts = ladder(np.random.default_rng(1))
    target = A * 400 ** B
    p = predict.iterations_for(pts, flops_per_iteration=1e9, target=target, probability=0.8)
    assert p.law.quantile(p.compute, 0.8) <= target * 1.001
    assert p.law.quantile(p.compute * 0.99, 0.8) > target * 0.999        # a little less compute does not
    assert p.iterations == math.ceil(p.compute)                          # 1 GFLOP per iteration
    sure = predict.iterations_for(pts, 1e9, target, 0.95)
    assert sure.iterations > p.iterations                                # more certainty costs more iterations


def test_refuses_too_few_sizes_a_rising_law_and_an_interval_wider_than_the_prediction():
    rng = np.random.default_rng(2)
    with pytest.raises(predict.CannotPredict, match="at least three"):
        predict.predict_at(ladder(rng, sizes=C[:2]), 1e9, 100)
    with pytest.raises(predict.CannotPredict, match="does not fall with compute"):
        predict.iterations_for(ladder(rng, b=0.2), 1e9, 10.0, 0.8)
    noisy = ladder(rng, sd=0.6, seeds=1)
    with pytest.raises(predict.CannotPredict, match="wider than the prediction"):
        predict.predict_at(noisy, 1e9, 10 ** 7)                           # 60,000x beyond the largest compute
    with pytest.raises(predict.CannotPredict, match="not reached"):
        predict.iterations_for(ladder(rng, sd=0.3, seeds=1), 1e9, 1e-3, 0.99)


def test_cli_errors_through_the_one_error_path(tmp_path, capsys):
    from gatscale.cli import main
    spec = str(REPO / "sweeps" / "demo.yaml")
    assert main(["predict", spec, "--size", "GAT-H/2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gatscale: error:") and "--size 'GAT-H/2'" in err and "GAT-XL/2" in err
    assert "\n" not in err.strip()
    assert main(["predict", spec, "--size", "GAT-XL/2", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gatscale: error: no law to predict from") and "Traceback" not in err


def test_a_size_the_study_does_not_train_takes_its_per_size_shape():
    from analysis.predict import size_run
    from gatscale.sweep.spec import load_spec
    spec = load_spec(REPO / "sweeps" / "demo.yaml")
    assert "GAT-XL/2" not in {r.model for r in spec.runs}
    xl = size_run(spec, "GAT-XL/2")
    assert xl.config.model.generator.hidden_size == 48 and xl.config.model.discriminator.hidden_size == 48
