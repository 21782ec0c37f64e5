"""A spec's plugin (pipelines/plugins.py): the competition's own code, called by the tabular engine
on train.csv (without its target), test.csv and every file predict reads; bad plugins are one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from pipelines import api, checkpoint
from pipelines.errors import UserError
from pipelines.tabular import spec as specs, task
from tabular_data import layout

WATER_CEMENT = '''
def features(frame):
    assert "compressive_strength" not in frame.columns   # the hook never sees the target
    frame["water_cement"] = frame["water"] / frame["cement"]
    return frame
'''


@pytest.fixture(scope="module")
def concrete(tmp_path_factory):
    return layout("concrete", tmp_path_factory.mktemp("plugins") / "concrete", rows=300)


def with_plugin(laid, tmp_path, code: str, name: str = "concrete-plugin"):
    """A copy of the spec that names a plugin file holding `code`, beside it."""
    (tmp_path / "plugin.py").write_text(code)
    values = {**laid.spec, "name": name, "plugin": "plugin.py"}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_a_plugins_features_reach_the_models_and_predict(home, concrete, tmp_path):
    spec_path = with_plugin(concrete, tmp_path, WATER_CEMENT)
    run = api.train(spec_path, "linear", data=concrete.folder, name="wc", overrides={"folds": 3})
    meta = json.loads((run.folder / "fold0" / checkpoint.META).read_text())
    assert "water_cement" in meta["preprocessor"]["numeric"]
    assert meta["spec"]["plugin"] == str((tmp_path / "plugin.py").resolve())
    plain = api.train(concrete.spec_path, "linear", data=concrete.folder, name="plain", overrides={"folds": 3})
    assert run.cv != plain.cv   # the ratio changes the linear model's fit
    # predict from the checkpoints runs the plugin on the new file, as training did
    stored = run.test_predictions
    again = task.predict(run.folder, concrete.folder / "test.csv", "cpu")
    np.testing.assert_array_equal(again.iloc[:, 1].to_numpy(), stored.iloc[:, 1].to_numpy())

    (tmp_path / "plugin.py").write_text(WATER_CEMENT.replace("/ frame[\"cement\"]", "* 2"))
    with pytest.raises(UserError) as exc:
        task.predict(run.folder, concrete.folder / "test.csv", "cpu")
    assert "the plugin run wc was trained with has changed" in str(exc.value) and "\n" not in str(exc.value)
    # the plugin is part of the spec's fingerprint: the run does not resume under another plugin
    assert specs.load(spec_path).fingerprint() != json.loads((run.folder / "run.json").read_text())["data"]["spec_sha"]


@pytest.mark.parametrize("code, words", [
    ("def features(frame):\n    return frame.iloc[:10]\n", "must keep"),
    ("def features(frame):\n    return None\n", "returned NoneType"),
    ("def features(frame):\n    return frame['no_such_column']\n", "plugin.py:2: features() failed on"),
    ("def features(frame)\n    return frame\n", "plugin.py:1:"),
    ("x = 1\n", "a plugin of a tabular competition defines features(frame)"),
    ("import no_such_module_here\n", "importing the plugin failed: ModuleNotFoundError"),
])
def test_a_bad_plugin_is_one_line_and_leaves_no_run(home, concrete, tmp_path, code, words):
    spec_path = with_plugin(concrete, tmp_path, code, name="bad")
    with pytest.raises(UserError) as exc:
        api.train(spec_path, "linear", data=concrete.folder, name="x")
    assert words in str(exc.value) and "\n" not in str(exc.value), str(exc.value)
    assert not (home / "runs" / "bad" / "x").exists()


def test_a_plugin_that_is_not_python_or_not_there(concrete, tmp_path):
    values = {**concrete.spec, "plugin": "plugin.txt"}
    with pytest.raises(UserError) as exc:
        specs.from_dict(values, "s.yaml")
    assert "plugin: 'plugin.txt' must be a Python file (.py)" in str(exc.value)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**concrete.spec, "plugin": "gone.py"}))
    with pytest.raises(UserError) as exc:
        api.train(path, "linear", data=concrete.folder, name="x")
    assert "gone.py not found" in str(exc.value)
