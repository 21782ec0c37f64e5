"""`predict` from a blend: each member predicts the test file (House Prices) or folder (Dogs vs.
Cats) from its fold checkpoints, and the members are combined as the blend combined their test
predictions when it was made. Predicting the competition's own test data from a blend (mean,
weights, stack, and a blend of blends) reproduces the blend's test_predictions.csv; a member that
is gone or was retrained since is refused in one line.

Small real trainings (House Prices: an MLP and a lasso; Dogs vs. Cats: two LeNets, one of them
with a wide clip), trained once per module and shared; the refusal tests work on a copy.
"""

import contextlib
import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from pipelines import blending as blend, hints, runs
from pipelines.cli import main

HOUSE, DOGS = "house-prices", "dogs-vs-cats"
BLENDS = ["b-mean", "b-weights", "b-stack", "b-of-b"]


def _quiet(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return main(argv)


def _house_train(data, name, *extra) -> list[str]:
    return ["train", HOUSE, "--data", str(data), "--name", name, "--device", "cpu", "--set", "folds=3", *extra]


HOUSE_MEMBERS = {"mlp": ["--config", "mlp", "--set", "epochs=4"],
                 "lasso": ["--config", "lasso", "--set", "comps=0"]}


def _dogs_train(data, name, *sets) -> list[str]:
    values = ["folds=2", "epochs=1", "batch_size=8", *sets]
    return ["train", DOGS, "--config", "lenet-modern", "--data", str(data), "--name", name, "--device", "cpu",
            *[x for v in values for x in ("--set", v)]]


DOGS_MEMBERS = {"a": [], "b": ["lr=0.01", "clip=0.3", "tta_flip=false"]}  # b's P(dog) clipped to [0.3, 0.7]


def _make_blends(competition, members, outer_method):
    outs = {f"b-{method}": blend.blend(competition, members, method, f"b-{method}") for method in blend.METHODS}
    outs["b-of-b"] = blend.blend(competition, ["b-weights", "b-stack"], outer_method, "b-of-b")
    return outs


@pytest.fixture(scope="module")
def house_home(tmp_path_factory, house_data):
    home = tmp_path_factory.mktemp("blend-predict-house")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPELINES_HOME", str(home))
        for name, extra in HOUSE_MEMBERS.items():
            assert _quiet(_house_train(house_data, name, *extra)) == 0
        outs = _make_blends(HOUSE, list(HOUSE_MEMBERS), "stack")
    assert all(w > 0.01 for w in outs["b-weights"]["config"].weights)  # both members count
    return home


@pytest.fixture(scope="module")
def dogs_home(tmp_path_factory, dogs_data):
    home = tmp_path_factory.mktemp("blend-predict-dogs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPELINES_HOME", str(home))
        for name, sets in DOGS_MEMBERS.items():
            assert _quiet(_dogs_train(dogs_data, name, *sets)) == 0
        _make_blends(DOGS, list(DOGS_MEMBERS), "mean")
    return home


def _predict(competition, run, test, out) -> int:
    return _quiet(["predict", competition, "--run", run, "--test", str(test), "--out", str(out), "--device", "cpu"])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


# --------------------------------------------------------------------------- reproduces the stored predictions

@pytest.mark.parametrize("run", BLENDS)
def test_house_blend_predicts_its_test_predictions(house_home, house_data, monkeypatch, tmp_path, run):
    monkeypatch.setenv("PIPELINES_HOME", str(house_home))
    assert _predict(HOUSE, run, house_data / "test.csv", tmp_path / "p.csv") == 0
    predicted = pd.read_csv(tmp_path / "p.csv")
    stored = pd.read_csv(house_home / "runs" / HOUSE / run / "test_predictions.csv")
    assert list(predicted.columns) == ["Id", "SalePrice"]
    assert predicted["Id"].tolist() == stored["Id"].tolist()
    np.testing.assert_allclose(predicted["SalePrice"], stored["SalePrice"], rtol=1e-9)


@pytest.mark.parametrize("run", BLENDS)
def test_dogs_blend_predicts_its_test_predictions(dogs_home, dogs_data, monkeypatch, tmp_path, run):
    monkeypatch.setenv("PIPELINES_HOME", str(dogs_home))
    assert _predict(DOGS, run, dogs_data / "test1", tmp_path / "p.csv") == 0
    predicted = pd.read_csv(tmp_path / "p.csv")
    stored = pd.read_csv(dogs_home / "runs" / DOGS / run / "test_predictions.csv")
    assert list(predicted.columns) == ["id", "label"]
    expected = sorted(int(p.stem) for p in (dogs_data / "test1").glob("*.jpg"))
    assert predicted["id"].tolist() == stored["id"].tolist() == expected
    np.testing.assert_allclose(predicted["label"], stored["label"], rtol=1e-6, atol=1e-7)


def test_dogs_member_clip_is_applied(dogs_home, dogs_data, monkeypatch):
    """Member b was trained with clip 0.3: the blend uses its P(dog) clipped, as it was at blend time."""
    monkeypatch.setenv("PIPELINES_HOME", str(dogs_home))
    frame = blend.predict(DOGS, dogs_home / "runs" / DOGS / "b-mean", dogs_data / "test1", "cpu")
    b = pd.read_csv(dogs_home / "runs" / DOGS / "b" / "test_predictions.csv")
    a = pd.read_csv(dogs_home / "runs" / DOGS / "a" / "test_predictions.csv")
    assert b["label"].between(0.3, 0.7).all()
    np.testing.assert_allclose(frame["label"], (a["label"] + b["label"]) / 2, rtol=1e-6)


def test_blend_records_what_predict_needs(house_home):
    folder = house_home / "runs" / HOUSE
    run = runs.load_run(folder / "b-stack")
    values = run["config_values"]
    assert blend.is_blend(run) and not blend.is_blend(runs.load_run(folder / "mlp"))
    assert values["method"] == "stack" and values["members"] == list(HOUSE_MEMBERS)
    assert values["member_hashes"] == [runs.load_run(folder / m)["config_hash"] for m in HOUSE_MEMBERS]
    assert values["member_training_ids"] == [runs.load_run(folder / m)["training_id"] for m in HOUSE_MEMBERS]
    assert values["member_paths"] == [f"runs/{HOUSE}/{m}" for m in HOUSE_MEMBERS]  # relative to the home
    assert len(values["weights"]) == 2 and isinstance(values["intercept"], float) and values["clip"] is None
    nested = runs.load_run(folder / "b-of-b")["config_values"]
    assert nested["member_training_ids"] == [runs.load_run(folder / m)["training_id"] for m in ("b-weights", "b-stack")]


# --------------------------------------------------------------------------- refusals

@pytest.fixture
def house_copy(house_home, tmp_path, monkeypatch):
    """A copy of the shared House Prices home, free to damage."""
    home = tmp_path / "home"
    shutil.copytree(house_home, home)
    monkeypatch.setenv("PIPELINES_HOME", str(home))
    return home


def test_refuses_a_retrained_member(house_copy, house_data, tmp_path, capsys):
    assert _quiet(_house_train(house_data, "lasso", *HOUSE_MEMBERS["lasso"], "--restart")) == 0  # same config
    capsys.readouterr()
    for run in ("b-weights", "b-of-b"):  # directly, and through the blends the blend of blends holds
        assert _predict(HOUSE, run, house_data / "test.csv", tmp_path / "p.csv") == 2
        err = _one_line_error(capsys)
        assert "member run lasso was retrained since the blend was made (training_id" in err
        assert "re-run the blend command" in err and "--method" in err
        assert not (tmp_path / "p.csv").exists()
    assert _predict(HOUSE, "mlp", house_data / "test.csv", tmp_path / "p.csv") == 0  # the member itself still predicts


def test_refuses_a_member_trained_with_another_config(house_copy, house_data, tmp_path, capsys):
    assert _quiet(_house_train(house_data, "lasso", *HOUSE_MEMBERS["lasso"], "--set", "alpha=0.001",
                               "--restart")) == 0
    capsys.readouterr()
    assert _predict(HOUSE, "b-mean", house_data / "test.csv", tmp_path / "p.csv") == 2
    assert "member run lasso was retrained since the blend was made (config hash" in _one_line_error(capsys)


def test_refuses_a_deleted_member(house_copy, house_data, tmp_path, capsys):
    shutil.rmtree(house_copy / "runs" / HOUSE / "mlp")
    assert _predict(HOUSE, "b-stack", house_data / "test.csv", tmp_path / "p.csv") == 2
    err = _one_line_error(capsys)
    assert "blend b-stack: member run mlp is missing" in err and "restore it" in err
    assert not (tmp_path / "p.csv").exists()


def test_refuses_a_member_without_checkpoints(house_copy, house_data, tmp_path, capsys):
    for fold in (house_copy / "runs" / HOUSE / "lasso").glob("fold[0-9]*"):
        shutil.rmtree(fold)
    assert _predict(HOUSE, "b-weights", house_data / "test.csv", tmp_path / "p.csv") == 2
    assert "member run lasso has no fold checkpoints" in _one_line_error(capsys)


def test_a_blend_made_before_predict_says_to_rerun_it(house_copy, house_data, tmp_path, capsys):
    path = house_copy / "runs" / HOUSE / "b-weights" / "run.json"
    run = json.loads(path.read_text())
    for key in ("member_training_ids", "member_paths"):  # what blends did not record before
        del run["config_values"][key]
    path.write_text(json.dumps(run))
    assert _predict(HOUSE, "b-weights", house_data / "test.csv", tmp_path / "p.csv") == 2
    err = _one_line_error(capsys)
    assert "blend b-weights was made before" in err and "member_training_ids" in err
    assert hints.pipelines(f"blend {HOUSE} mlp lasso --method weights --name b-weights --restart") in err


def test_dogs_refuses_a_deleted_member(dogs_home, dogs_data, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    shutil.copytree(dogs_home / "runs", home / "runs")
    monkeypatch.setenv("PIPELINES_HOME", str(home))
    shutil.rmtree(home / "runs" / DOGS / "b")
    assert _predict(DOGS, "b-of-b", dogs_data / "test1", tmp_path / "p.csv") == 2
    assert "blend b-weights: member run b is missing" in _one_line_error(capsys)
