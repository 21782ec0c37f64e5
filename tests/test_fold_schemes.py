"""The fold schemes Kaggle competitions use (pipelines/folds.py): by group, in time order, from the
competition's own file; each on its own and through a run on a real table, and a blend of runs
that share the scheme."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines import folds as folding, kfold
from pipelines.errors import UserError


def test_group_folds_keep_each_group_in_one_fold_and_balance_classes():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, 600)
    target = rng.integers(0, 2, 600)
    folds = folding.group_folds(target, groups, 5, 42, True, "patient")
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1
    assert np.array_equal(folds, folding.group_folds(target, groups, 5, 42, True, "patient"))  # seeded
    regression = folding.group_folds(rng.normal(size=600), groups, 5, 42, False, "patient")
    assert all(len(set(regression[groups == g])) == 1 for g in np.unique(groups))
    with pytest.raises(UserError, match="group: 'patient' has 3 distinct values, fewer than the 5 folds"):
        folding.group_folds(target[:30], np.arange(30) % 3, 5, 42, True, "patient")


def test_time_folds_train_on_the_past_and_validate_on_the_future():
    days = pd.date_range("2020-01-01", periods=50).strftime("%Y-%m-%d").to_numpy()
    times = np.repeat(days, 4)[np.random.default_rng(1).permutation(200)]  # four rows a day, shuffled
    folds = folding.time_folds(times, 4, "date")
    assert sorted(set(folds)) == [-1, 0, 1, 2, 3] and np.sum(folds == -1) == 40
    for day in days:  # a day is never cut in two
        assert len(set(folds[times == day])) == 1
    order = pd.to_datetime(times)
    for fold in range(4):
        train, valid = kfold.fold_indices(folds, fold, ordered=True)
        assert order[train].max() < order[valid].min()  # only the past trains
        assert len(train) == 40 * (fold + 1)
    with pytest.raises(UserError, match="time: 'date' row 4: 'soon' is neither a number nor a date"):
        folding.time_folds(np.array(["2020-01-01", "2020-01-02", "soon"]), 2, "date")
    with pytest.raises(UserError, match="has 2 distinct values; 4 folds in time order need at least 5"):
        folding.time_folds(np.array([1, 1, 2, 2, 2]), 4, "week")


def test_a_folds_file_is_read_and_checked(tmp_path):
    ids = ["a", "b", "c", "d"]
    path = tmp_path / "folds.csv"
    path.write_text("Id,fold\nd,1\nc,0\nb,1\na,0\n")
    assert folding.file_folds(path, ids, "Id").tolist() == [0, 1, 0, 1]
    for text, message in [("Id,fold\na,0\nb,1\nc,0\n", "no fold for Id d of train.csv"),
                          ("Id,fold\na,0\nb,x\nc,0\nd,1\n", "row 3: fold 'x' is not a whole number"),
                          ("Id,fold\na,0\nb,2\nc,0\nd,2\n", "numbered 0, 1, ... (at least two); found [0, 2]"),
                          ("id,k\na,0\n", "expected the columns Id and fold")]:
        path.write_text(text)
        with pytest.raises(UserError) as exc:
            folding.file_folds(path, ids, "Id")
        assert message in str(exc.value) and "\n" not in str(exc.value) and str(path) in str(exc.value)


@pytest.fixture(scope="module")
def laid(tmp_path_factory):
    from tabular_data import layout

    root = tmp_path_factory.mktemp("schemes")
    return {"exam": layout("exam", root / "exam", rows=1200), "births": layout("births", root / "births", rows=1500)}


FAST = {"folds": 3, "n_estimators": 60, "lr": 0.1}


def test_a_group_fold_run_never_splits_a_school(home, laid):
    import pipelines as pl

    table = laid["exam"]
    run = pl.train(str(table.spec_path), "lightgbm", data=table.folder, name="gbm", overrides=FAST, device="cpu",
                   quiet=True)
    train = pd.read_csv(table.folder / "train.csv")
    folds = pd.read_csv(run.folder / "folds.csv")
    assert folds["id"].tolist() == train["Id"].tolist()
    assert (train.assign(fold=folds["fold"]).groupby("school")["fold"].nunique() == 1).all()
    record = json.loads((run.folder / "run.json").read_text())
    assert record["folds_scheme"] == "group:school"
    assert "school" not in json.loads((run.folder / "fold0" / "meta.json").read_text())["preprocessor"]["numeric"]


def test_a_time_fold_run_scores_only_the_future_and_blends(home, laid):
    import pipelines as pl

    table = laid["births"]
    spec = str(table.spec_path)
    gbm = pl.train(spec, "lightgbm", data=table.folder, name="gbm", overrides=FAST, device="cpu", quiet=True)
    pl.train(spec, "linear", data=table.folder, name="lin", overrides={"folds": 3}, device="cpu", quiet=True)
    oof = pd.read_csv(gbm.folder / "oof.csv")
    first = oof["fold"] == -1
    assert first.sum() > 0 and oof.loc[first, "oof_births"].isna().all() and oof.loc[~first, "oof_births"].notna().all()
    dates = pd.to_datetime(pd.read_csv(table.folder / "train.csv")["date"])
    assert dates[first].max() < dates[~first].min()
    metrics = json.loads((gbm.folder / "metrics.json").read_text())
    assert metrics["cv"]["rows_scored"] == int((~first).sum())
    assert json.loads((gbm.folder / "run.json").read_text())["folds_scheme"] == "time:date"
    # the test predictions are the latest fold's model alone (trained on every earlier block), and
    # predict from the checkpoints repeats them
    from pipelines.tabular import spec as specs, task

    stored = task.read_predictions(gbm.folder / "test_predictions.csv", specs.load(table.spec_path))
    again = task.predict(gbm.folder, table.folder / "test.csv", "cpu")
    assert np.array_equal(again.iloc[:, 1:].to_numpy(float), stored.iloc[:, 1:].to_numpy(float))
    meta = json.loads((gbm.folder / "fold2" / "meta.json").read_text())
    assert meta["spec"]["folds_scheme"] == "time:date"
    both = pl.blend(spec, ["gbm", "lin"], method="weights", name="both", quiet=True)
    blended = pd.read_csv(both.folder / "oof.csv")
    assert blended.loc[first, "oof_births"].isna().all() and np.isfinite(both.cv)
    assert pl.submit(spec, "both", quiet=True)


def test_a_spec_takes_one_fold_scheme(tmp_path):
    from pipelines.tabular import spec as specs

    base = {"name": "t", "kind": "tabular", "id": "Id", "target": "y", "task": "regression", "metric": "rmse"}
    for extra, message in [({"group": "a", "time": "b"}, "group and time: give one fold scheme"),
                           ({"group": "Id"}, "group: 'Id' is the id column"),
                           ({"folds_file": "../folds.csv"}, "folds_file: '../folds.csv' must be a path inside")]:
        path = tmp_path / "t.yaml"
        path.write_text(yaml.safe_dump({**base, **extra}))
        with pytest.raises(UserError, match=message):
            specs.load(path)


def test_time_ordered_test_predictions_are_the_latest_folds():
    folds = np.array([-1, -1, 0, 0, 1, 1])
    outputs = {f: kfold.FoldOutput(np.full(2, float(f)), np.full(3, 10.0 * (f + 1))) for f in (0, 1)}

    def score(index, prediction):
        return {"rmse": float(np.mean(prediction))}

    ordered = kfold._assemble(folds, outputs, score, "rmse", 0.0, [0, 1], ordered=True)
    assert ordered.test_prediction.tolist() == [20.0, 20.0, 20.0]  # fold 1's model alone
    shuffled = kfold._assemble(folds, outputs, score, "rmse", 0.0, [0, 1])
    assert shuffled.test_prediction.tolist() == [15.0, 15.0, 15.0]  # every other scheme: the mean
    assert np.isnan(ordered.oof_prediction[:2]).all() and ordered.cv["rows_scored"] == 4
