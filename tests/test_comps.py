"""The comparable-sales adjustment (comps): its arithmetic, its inner folds, and runs that use it."""

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.cli import main
from pipelines.competitions.house_prices import comps
from pipelines.competitions.house_prices.comps import Comps


def toy_comps(k=3, hood_weight=3.0):
    # columns: two numeric coordinates, then a two-level neighbourhood one-hot
    x = np.array([[0.0, 0.0, 1, 0], [0.1, 0.0, 1, 0], [0.0, 0.1, 1, 0],    # hood A, sold 0.2 above the model
                  [0.0, 0.0, 0, 1], [0.05, 0.0, 0, 1], [0.0, 0.05, 0, 1],  # hood B, sold 0.5 below
                  [9.0, 9.0, 1, 0]])                                       # far away in hood A
    residuals = np.array([0.2, 0.2, 0.2, -0.5, -0.5, -0.5, 3.0])
    fitted = Comps.fit(x, residuals, ([0, 1], [2, 3]), k, hood_weight)
    fitted.trust = np.array([1.0])  # the arithmetic below, at full trust
    return fitted


def test_a_house_is_priced_by_its_neighbours_sales_shrunk_towards_none():
    fitted = toy_comps()
    query = np.array([[0.02, 0.02, 1, 0], [0.02, 0.02, 0, 1]])
    # its three nearest comparables share its neighbourhood: mean residual, times K / (K + PRIOR)
    np.testing.assert_allclose(fitted.adjust(query), [0.2 * 3 / (3 + comps.PRIOR), -0.5 * 3 / (3 + comps.PRIOR)])
    # without the neighbourhood weighting, hood B's houses (numerically closer) would be its comparables
    assert toy_comps(hood_weight=0.0).adjust(query[:1])[0] < 0


def test_nearer_comparables_weigh_more():
    fitted = toy_comps(k=7)
    near_far = fitted.adjust(np.array([[8.9, 8.9, 1, 0], [0.0, 0.0, 1, 0]]))
    assert near_far[0] > near_far[1] > 0  # next to the +3.0 house, it pulls hardest


def test_trust_is_how_well_comparables_predict_the_training_houses_own_residuals():
    rng = np.random.default_rng(0)
    hood = rng.integers(0, 4, 400)
    x = np.column_stack([rng.normal(size=(400, 2)), np.eye(4)[hood]])
    local = np.array([0.3, -0.2, 0.1, -0.3])[hood]  # what each neighbourhood's sales share
    shared = Comps.fit(x, local + rng.normal(0, 0.05, 400), ([0, 1], [2, 3, 4, 5]), 20, 3.0)
    noise = Comps.fit(x, rng.normal(0, 0.05, 400), ([0, 1], [2, 3, 4, 5]), 20, 3.0)
    assert shared.trust[0] > 0.8 and noise.trust[0] < 0.2
    # every adjustment the fold makes is scaled by its trust
    query = x[:5]
    untrusted = Comps(*(getattr(shared, name) for name in comps.TENSORS[:-1]), 1.0, 20, 3.0)
    np.testing.assert_allclose(shared.adjust(query), shared.trust[0] * untrusted.adjust(query))
    np.testing.assert_allclose(shared.adjust(query), local[:5], atol=0.1)


def test_inner_residuals_never_use_a_house_to_price_itself():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 2)), rng.normal(size=40)

    def mean_of_training(x_train, y_train, x_held, y_held, inner):
        return np.full(len(x_held), y_train.mean())

    base = comps.inner_residuals(mean_of_training, x, y, seed=1)
    moved = y.copy()
    moved[7] += 10.0
    again = comps.inner_residuals(mean_of_training, x, moved, seed=1)
    assert again[7] == pytest.approx(base[7] + 10.0)  # its own price moved only its own residual...
    changed = np.flatnonzero(~np.isclose(again, base))
    assert 7 in changed and len(changed) > 1  # ...and the predictions of houses in other inner folds
    assert len(changed) < 40


@pytest.mark.parametrize("config,extra", [
    ("lasso", ["--set", "alpha=0.01"]),  # strong enough to leave local structure that comps are trusted to fix
    ("mlp", ["--set", "epochs=3", "--set", "hidden=[16]", "--device", "cpu"]),
])
def test_runs_with_comps_store_them_per_fold_and_predict_from_them(home, house_data, config, extra):
    common = ["--data", str(house_data), "--set", "folds=3", *extra]
    assert main(["train", "house-prices", "--config", config, "--name", "plain", "--quiet", "--set", "comps=0",
                 *common]) == 0
    assert main(["train", "house-prices", "--config", config, "--name", "comps", "--quiet",
                 "--set", "comps=20", *common]) == 0
    runs = home / "runs" / "house-prices"
    assert all((runs / "comps" / f"fold{k}" / "comps" / "model.safetensors").exists() for k in range(3))
    assert not (runs / "plain" / "fold0" / "comps").exists()
    folds = json.loads((runs / "comps" / "metrics.json").read_text())["folds"]
    assert all(0.0 <= f["comps_trust"] <= 1.0 for f in folds) and any(f["comps_trust"] > 0 for f in folds)
    plain = pd.read_csv(runs / "plain" / "oof.csv")
    adjusted = pd.read_csv(runs / "comps" / "oof.csv")
    shift = np.log(adjusted["oof_SalePrice"] / plain["oof_SalePrice"])
    assert shift.abs().max() > 0.01 and shift.abs().median() < 0.1  # a correction, not a new model
    # predict from the checkpoints alone gives the stored test predictions, adjustment included
    assert main(["predict", "house-prices", "--run", "comps", "--test", str(house_data / "test.csv"),
                 "--out", str(home / "p.csv")]) == 0
    stored = pd.read_csv(runs / "comps" / "test_predictions.csv")
    np.testing.assert_allclose(pd.read_csv(home / "p.csv")["SalePrice"], stored["SalePrice"], rtol=1e-9)
    unadjusted = pd.read_csv(runs / "plain" / "test_predictions.csv")
    assert not np.allclose(stored["SalePrice"], unadjusted["SalePrice"], rtol=1e-3)


def test_comps_need_the_full_recipe_and_log_prices(home, house_data, capsys):
    assert main(["train", "house-prices", "--config", "d2l-linear", "--data", str(house_data), "--name", "bad",
                 "--set", "comps=20"]) == 2
    err = capsys.readouterr().err.strip()
    assert "comps" in err and "features: full" in err and len(err.splitlines()) == 1
    assert not (home / "runs" / "house-prices" / "bad").exists()


def test_a_damaged_comps_checkpoint_is_a_clear_error(home, house_data, capsys):
    assert main(["train", "house-prices", "--config", "lasso", "--data", str(house_data), "--name", "c",
                 "--quiet", "--set", "folds=2", "--set", "comps=5"]) == 0
    (home / "runs" / "house-prices" / "c" / "fold1" / "comps" / "model.safetensors").unlink()
    assert main(["predict", "house-prices", "--run", "c", "--test", str(house_data / "test.csv"),
                 "--out", str(home / "p.csv")]) == 2
    assert "fold1/comps" in capsys.readouterr().err
    assert not (home / "p.csv").exists()
