"""The smallest install: the package without its extras trains, blends and predicts the tabular
families that are not networks, and refuses a network in one line naming the extra (docs/kaggle.md)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tabular_data import layout


@pytest.fixture(scope="module")
def concrete(tmp_path_factory):
    return layout("concrete", tmp_path_factory.mktemp("smallest") / "concrete", rows=300)


BLOCKED = textwrap.dedent('''
    import sys
    BLOCK = {"torch", "torchvision", "timm", "tabm", "rtdl_num_embeddings", "albumentations", "onnx",
             "onnxruntime", "PIL", "simplejpeg", "matplotlib", "optuna", "cv2"}

    class NotInstalled:   # as if only the package's core were installed
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCK:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    from pathlib import Path
    from pipelines import api
    from pipelines.errors import UserError
    spec, data = sys.argv[1], Path(sys.argv[2])
    for name, config in (("lin", "linear"), ("gbm", "lightgbm"), ("cb", "catboost"), ("et", "forest")):
        api.train(spec, config, data=data, name=name, overrides={"folds": 3}, quiet=True)
    api.blend("concrete", ["lin", "gbm", "cb", "et"], name="bl", quiet=True)
    submitted = api.submit("concrete", "bl", quiet=True)
    predicted = api.predict("concrete", "bl", data / "test.csv", Path(sys.argv[3]), quiet=True)
    assert submitted.read_bytes() == predicted.read_bytes()
    try:
        api.train(spec, "mlp", data=data, name="net", quiet=True)
    except UserError as exc:
        print("refused:", exc)
    print("loaded:", sorted(m for m in BLOCK if m in sys.modules))
''')


def test_the_tabular_families_but_networks_need_neither_torch_nor_the_image_stack(home, concrete, tmp_path):
    done = subprocess.run([sys.executable, "-c", BLOCKED, str(concrete.spec_path), str(concrete.folder),
                           str(tmp_path / "p.csv")], capture_output=True, text=True,
                          env={**os.environ, "PIPELINES_HOME": str(home)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refused: model mlp needs torch, which is not installed: pip install 'pipelines[nn]'" in done.stdout
    assert "loaded: []" in done.stdout
    assert not (home / "runs" / "concrete" / "net").exists()   # refused before a run existed
