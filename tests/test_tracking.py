"""--track mlflow (pipelines/tracking.py), against a real local MLflow store: a run's config, fold
and CV figures, curves and report land in it; a sweep's trials each become an MLflow run; a store
that fails is one warning and the run is kept; without MLflow the flag is one line before training."""

from __future__ import annotations

import json

import pytest

from pipelines.cli import main

mlflow = pytest.importorskip("mlflow", reason="MLflow is the optional extra `track` (pip install -e '.[track]')")


@pytest.fixture
def store(home, monkeypatch):
    monkeypatch.chdir(home)  # a store of the user's own keeps MLflow's artifacts in the current folder
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PIPELINES_TRACK", raising=False)
    yield f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    from tabular_data import layout

    return layout("penguins", tmp_path_factory.mktemp("track") / "penguins")


def _runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return client, ([] if found is None else client.search_runs([found.experiment_id]))


def test_a_tracked_run_logs_its_config_figures_curves_and_report(home, store, penguins, monkeypatch):
    argv = ["train", str(penguins.spec_path), "--config", "mlp", "--data", str(penguins.folder), "--name", "net",
            "--set", "folds=3", "--set", "epochs=3", "--set", "hidden=[16]", "--device", "cpu", "--quiet",
            "--track", "mlflow"]
    assert main(argv) == 0
    client, runs = _runs(store, "penguins")
    assert len(runs) == 1
    run = runs[0]
    recorded = json.loads((home / "runs" / "penguins" / "net" / "run.json").read_text())
    assert run.info.run_name == "net" and run.data.tags["pipelines.config"] == "mlp"
    assert run.data.params["epochs"] == "3" and run.data.params["hidden"] == "[16]"
    assert run.data.metrics["cv_logloss"] == pytest.approx(recorded["cv"])
    folds = client.get_metric_history(run.info.run_id, "fold_logloss")
    assert sorted(m.step for m in folds) == [0, 1, 2]
    assert [m.value for m in sorted(folds, key=lambda m: m.step)] == pytest.approx(recorded["fold_scores"])
    assert len(client.get_metric_history(run.info.run_id, "fold0_valid_logloss")) == 3  # one point per epoch
    assert run.info.artifact_uri.startswith((home / "mlartifacts").as_uri())  # beside the store, not in the cwd
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert "report/report.md" in artifacts and any(p.endswith(".png") for p in artifacts)

    assert main(argv[:-2]) == 0  # untracked: nothing more in the store (the same run resumed, already finished)
    assert len(_runs(store, "penguins")[1]) == 1
    assert main(argv) == 0  # the same training logged again: its MLflow run is updated, not doubled
    assert len(_runs(store, "penguins")[1]) == 1


def test_a_tracked_sweep_logs_every_trial(home, store, penguins):
    assert main(["sweep", str(penguins.spec_path), "--config", "lightgbm", "--data", str(penguins.folder),
                 "--trials", "2", "--search", "lr=0.05:0.2:log", "--set", "folds=3", "--set", "n_estimators=30",
                 "--rerun-seeds", "none", "--device", "cpu", "--quiet", "--track", "mlflow"]) == 0
    _, runs = _runs(store, "penguins")
    assert len(runs) == 2 and len({r.data.params["lr"] for r in runs}) == 2


def test_a_store_that_fails_is_a_warning_and_the_run_is_kept(home, store, penguins, monkeypatch, capsys):
    (home / "a-file").write_text("not a folder")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'a-file' / 'mlflow.db'}")
    assert main(["train", str(penguins.spec_path), "--config", "linear", "--data", str(penguins.folder), "--name",
                 "lin", "--set", "folds=3", "--quiet", "--track", "mlflow"]) == 0
    err = capsys.readouterr().err
    assert "warning: run lin not logged to MLflow" in err
    assert (home / "runs" / "penguins" / "lin" / "run.json").exists()


def test_without_mlflow_the_flag_is_one_line_before_training(home, store, penguins, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    assert main(["train", str(penguins.spec_path), "--config", "linear", "--data", str(penguins.folder), "--name",
                 "lin", "--quiet", "--track", "mlflow"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install -e '.[track]'" in err
    assert not (home / "runs" / "penguins" / "lin").exists()


def test_the_api_tracks_one_call_at_a_time(home, store, penguins):
    import os

    import pipelines as pl

    pl.train(str(penguins.spec_path), "linear", data=penguins.folder, name="a", overrides={"folds": 3}, quiet=True,
             track="mlflow")
    assert "PIPELINES_TRACK" not in os.environ  # the next call is untracked unless it asks
    pl.train(str(penguins.spec_path), "linear", data=penguins.folder, name="b", overrides={"folds": 3}, quiet=True)
    pl.blend(str(penguins.spec_path), ["a", "b"], name="ab", quiet=True, track="mlflow")
    _, runs = _runs(store, "penguins")
    assert sorted(r.info.run_name for r in runs) == ["a", "ab"]
