"""Augmentation as an albumentations pipeline: declared in a config (`augment:`, A.to_dict's
form) or built from the keys hflip / crop_scale / color_jitter, applied through albumentations'
public call only, and validated when the config loads."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipelines.competitions.dogs_vs_cats import task
from pipelines.images import augment
from pipelines.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


def _epochs(transform, seed: int, images: np.ndarray, epochs: int = 3) -> list[torch.Tensor]:
    """Training batches as images/fitting.train_network makes them: reseeded per epoch, shuffled order."""
    out = []
    targets = torch.zeros(len(images), dtype=torch.long)
    for epoch in range(epochs):
        transform.set_random_seed(seed * 1000 + epoch)
        order = np.random.default_rng(seed * 1000 + epoch).permutation(len(images))
        out += [x for x, _ in augment.batches(images, targets, order, 8, transform, (0.5,) * 3, (0.25,) * 3)]
    return out


def test_declared_config_gives_the_batches_of_the_key_built_pipeline():
    declared, keys = task.load_config("lenet-modern-albu"), task.load_config("lenet-modern")
    assert declared.augment is not None and keys.augment is None
    size = keys.image_size
    images = np.random.default_rng(0).integers(0, 256, (40, size, size, 3), dtype=np.uint8)
    for seed in (0, 3):
        a = augment.build(size, keys.hflip, keys.crop_scale, keys.color_jitter, seed=seed, pipeline=keys.augment)
        b = augment.build(size, declared.hflip, declared.crop_scale, declared.color_jitter, seed=seed,
                          pipeline=declared.augment)
        assert augment.declared(a)["transform"] == augment.declared(b)["transform"]
        x, y = _epochs(a, seed, images), _epochs(b, seed, images)
        assert len(x) == len(y) == 15
        assert all(torch.equal(p, q) for p, q in zip(x, y))
        assert not all(torch.equal(p, q) for p, q in zip(x, _epochs(a, seed + 1, images)))  # the seed matters


def test_a_pipeline_round_trips_through_yaml_with_jitter_and_the_same_draws():
    images = np.random.default_rng(1).integers(0, 256, (24, 48, 48, 3), dtype=np.uint8)
    built = augment.build(48, True, 0.5, 0.3, seed=5)
    text = yaml.safe_dump(augment.declared(built))
    loaded = augment.build(48, seed=5, pipeline=yaml.safe_load(text))
    assert augment.declared(loaded)["transform"] == augment.declared(built)["transform"]
    assert all(torch.equal(p, q) for p, q in zip(_epochs(built, 5, images, 2), _epochs(loaded, 5, images, 2)))


def test_apply_is_albumentations_own_call_image_by_image():
    images = np.random.default_rng(2).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    a, b = augment.build(32, True, 0.7, seed=9), augment.build(32, True, 0.7, seed=9)
    expected = np.stack([b(image=image)["image"] for image in images])
    assert np.array_equal(augment.apply(a, images), expected)
    assert augment.build(32, hflip=False) is None
    assert np.array_equal(augment.apply(None, images), images)


def test_no_code_reads_albumentations_private_random_state():
    source = (ROOT / "pipelines" / "images" / "augment.py").read_text()
    code = "\n".join(line.split("#")[0] for line in source.splitlines())
    for name in ("py_random", "random_generator", "_rng", "_pipelines_exact"):
        assert not re.search(rf"\.{name}\b", code), name


def _write(tmp_path: Path, augment_value, **keys) -> Path:
    path = tmp_path / "albu.yaml"
    path.write_text(yaml.safe_dump({"arch": "lenet-modern", "image_size": 32, **keys, "augment": augment_value}))
    return path


def _declared(*transforms: dict) -> dict:
    return {"__version__": "2.0.8", "transform": {"__class_fullname__": "Compose", "p": 1.0,
                                                  "transforms": list(transforms)}}


@pytest.mark.parametrize("transforms, keys, words", [
    ([{"__class_fullname__": "HorizontalFlipp", "p": 0.5}], {},
     ["transforms[0] HorizontalFlipp", "unknown albumentations transform 'HorizontalFlipp'"]),
    ([{"__class_fullname__": "HorizontalFlip", "p": 0.5},
      {"__class_fullname__": "RandomResizedCrop", "p": 1.0, "size": [32, 32], "scale": [2.0, 1.0]}], {},
     ["transforms[1] RandomResizedCrop", "bad arguments for RandomResizedCrop", "scale"]),
    ([{"__class_fullname__": "HorizontalFlip", "p": 0.5, "flip_axis": 1}], {},
     ["transforms[0] HorizontalFlip", "'flip_axis' are not valid for transform HorizontalFlip"]),
    ([{"__class_fullname__": "RandomResizedCrop", "p": 1.0, "size": [24, 24]}], {}, ["must make 32x32x3 uint8"]),
    ([{"__class_fullname__": "HorizontalFlip", "p": 0.5}], {"crop_scale": 0.7}, ["crop_scale and color_jitter"]),
])
def test_a_bad_declared_pipeline_is_a_one_line_error_naming_config_and_transform(tmp_path, transforms, keys, words):
    path = _write(tmp_path, _declared(*transforms), **keys)
    with pytest.raises(UserError) as info:
        task.load_config(str(path))
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    for word in words:
        assert word in message, (word, message)


def test_the_bare_transform_part_is_accepted_and_a_non_compose_is_refused(tmp_path):
    bare = _declared({"__class_fullname__": "HorizontalFlip", "p": 0.5})["transform"]
    assert task.load_config(str(_write(tmp_path, bare))).augment == bare
    with pytest.raises(UserError, match="must declare a Compose"):
        task.load_config(str(_write(tmp_path, {"__class_fullname__": "HorizontalFlip", "p": 0.5})))
    with pytest.raises(UserError, match="augment must be a mapping"):
        task.load_config(str(_write(tmp_path, ["HorizontalFlip"])))
