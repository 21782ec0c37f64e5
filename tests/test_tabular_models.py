"""CatBoost and TabM (plain and with piecewise-linear embeddings) as House Prices models: k-fold
training on the Ames look-alike files (conftest.house_data), prediction from the fold checkpoints
alone, a real fit, and the failure modes (a damaged CatBoost file, a killed TabM run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT
from pipelines import checkpoint, train_state
from pipelines.cli import main
from pipelines.competitions.house_prices import models, task
from pipelines.competitions.house_prices.data import read_csv
from pipelines.competitions.house_prices.features import Preprocessor

# Small and quick: a few iterations or epochs, tiny TabMs.
SETTINGS = {
    "catboost": ["--set", "n_estimators=80", "--set", "lr=0.1", "--set", "depth=4"],
    "tabm": ["--set", "epochs=4", "--set", "hidden=[32]", "--set", "tabm_k=4", "--set", "lr=3e-3"],
    "tabm-pwl": ["--set", "epochs=4", "--set", "hidden=[32]", "--set", "tabm_k=4", "--set", "lr=3e-3",
                 "--set", "n_bins=16", "--set", "d_embedding=4"],
}


def _train(house_data, config, name, *extra):
    return main(["train", "house-prices", "--config", config, "--data", str(house_data), "--name", name,
                 "--device", "cpu", "--quiet", "--set", "folds=3", *SETTINGS[config], *extra])


def _mean_prediction_cv(prices: np.ndarray, folds: np.ndarray) -> float:
    """The CV of predicting each fold's rows with its training rows' mean log price."""
    log = np.log(prices)
    oof = np.empty_like(log)
    for fold in np.unique(folds):
        oof[folds == fold] = log[folds != fold].mean()
    return float(np.sqrt(np.mean((oof - log) ** 2)))


@pytest.mark.parametrize("config", ["catboost", "tabm", "tabm-pwl"])
def test_trains_scores_and_predicts_from_checkpoints(home, house_data, config, capsys):
    assert _train(house_data, config, config) == 0
    run_dir = home / "runs" / "house-prices" / config
    oof = pd.read_csv(run_dir / "oof.csv")
    n_train = len(read_csv(house_data / "train.csv", with_target=True))
    assert len(oof) == n_train and oof["oof_SalePrice"].notna().all()  # every row scored
    metrics = json.loads((run_dir / "metrics.json").read_text())
    baseline = _mean_prediction_cv(oof["SalePrice"].to_numpy(), oof["fold"].to_numpy())
    assert metrics["cv"]["rmse_log"] < 0.6 * baseline, (metrics["cv"]["rmse_log"], baseline)  # a real fit

    assert main(["predict", "house-prices", "--run", config, "--test", str(house_data / "test.csv"),
                 "--out", str(home / "p.csv"), "--device", "cpu"]) == 0
    stored = pd.read_csv(run_dir / "test_predictions.csv")
    predicted = pd.read_csv(home / "p.csv")
    assert predicted["Id"].tolist() == stored["Id"].tolist()
    np.testing.assert_allclose(predicted["SalePrice"], stored["SalePrice"], rtol=1e-9 if config == "catboost" else 1e-5)

    state, meta = checkpoint.load(run_dir / "fold0" / "member0")
    assert meta["config"]["model"] == ("catboost" if config == "catboost" else "tabm")
    if config == "catboost":  # CatBoost's own binary format beside an empty safetensors: no pickle
        assert state == {} and (run_dir / "fold0" / "member0" / "model.cbm").read_bytes()[:4] == b"CBM1"
    if config == "tabm":
        assert meta["history"][-1]["epoch"] == 4 and meta["best_epoch"] == 4  # keep: last


def test_pwl_bins_come_from_the_folds_training_rows_and_live_in_the_checkpoint(home, house_data):
    assert _train(house_data, "tabm-pwl", "bins", "--folds", "0") == 0
    run_dir = home / "runs" / "house-prices" / "bins"
    state, meta = checkpoint.load(run_dir / "fold0" / "member0")
    frame = read_csv(house_data / "train.csv", with_target=True)
    folds = pd.read_csv(run_dir / "folds.csv")
    assert folds["id"].tolist() == frame["Id"].tolist()
    training_rows = frame[folds["fold"].to_numpy() != 0]
    pre = Preprocessor(state=meta["preprocessor"])
    cfg = task.load_config("tabm-pwl", {"n_bins": 16, "d_embedding": 4})
    expected = models.fit_bins(cfg, pre.transform(training_rows), len(pre.state["numeric"]))
    assert torch.equal(state["embedded"], expected.columns)
    assert torch.equal(state["bin_counts"], expected.counts) and torch.equal(state["bin_edges"], expected.edges)
    n_numeric = len(pre.state["numeric"])
    assert int(state["embedded"].max()) < n_numeric  # one-hot and interaction columns stay plain
    assert 1 < int(state["bin_counts"].max()) <= 17  # at most n_bins + 1 edges
    everything = models.fit_bins(cfg, pre.transform(frame), n_numeric)  # what the scored rows would add
    assert not torch.equal(everything.edges, expected.edges)


def test_a_damaged_catboost_file_is_a_one_line_error(home, house_data, capsys):
    assert _train(house_data, "catboost", "cb", "--set", "n_estimators=20") == 0
    model_file = home / "runs" / "house-prices" / "cb" / "fold1" / "member0" / "model.cbm"
    model_file.write_bytes(b"CBM1 not a model at all")
    capsys.readouterr()
    assert main(["predict", "house-prices", "--run", "cb", "--test", str(house_data / "test.csv"),
                 "--out", str(home / "q.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.cbm" in err and "not a CatBoost model" in err, err
    assert not (home / "q.csv").exists()
    model_file.unlink()
    assert main(["predict", "house-prices", "--run", "cb", "--test", str(house_data / "test.csv"),
                 "--out", str(home / "q.csv")]) == 2
    assert "CatBoost model file missing" in capsys.readouterr().err


def test_tabm_needs_one_block_width(home, house_data, capsys):
    assert main(["train", "house-prices", "--config", "tabm", "--data", str(house_data),
                 "--set", "hidden=[64, 32]"]) == 2
    assert "one width" in capsys.readouterr().err


def test_tabm_pwl_run_killed_mid_epoch_then_rerun_equals_uninterrupted(home, house_data, capsys, monkeypatch):
    monkeypatch.delenv(train_state.KILL_ENV, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        def argv(name):
            return ["train", "house-prices", "--config", "tabm-pwl", "--data", str(house_data), "--name", name,
                    "--device", "cpu", "--quiet", "--set", "folds=2", *SETTINGS["tabm-pwl"], "--set", "epochs=3"]
        env = {**os.environ, "PIPELINES_HOME": str(home), "PIPELINES_QUIET": "1",
               train_state.KILL_ENV: "fold=1,epoch=2,step=3", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", "pipelines", *argv("cut")], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == -9, done.stderr[-2000:]
        runs = home / "runs" / "house-prices"
        assert (runs / "cut" / "fold1" / "last").exists() and not (runs / "cut" / "oof.csv").exists()
        capsys.readouterr()
        assert main(argv("cut")) == 0, capsys.readouterr().err
        assert main(argv("whole")) == 0
    finally:
        torch.set_num_threads(before)
    for name in ("oof.csv", "test_predictions.csv"):
        assert (runs / "cut" / name).read_bytes() == (runs / "whole" / name).read_bytes(), name
    a, _ = checkpoint.load(runs / "cut" / "fold1" / "member0")
    b, _ = checkpoint.load(runs / "whole" / "fold1" / "member0")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
