"""ONNX copies of a backbone's feature network (backbones.FeatureHead): the fp32 export, its static
INT8 quantisation, ONNX Runtime sessions that run them, and the INT8 network a run carries.

  * `export_onnx`: FeatureHead(backbone, block) exported once (dynamic batch), cached under a name
    that holds the architecture, input size, block and a fingerprint of the weights; timm's
    Conv2dSame layers get their padding fixed for the input size first (static_padding_copy).
  * `quantize_onnx`: a deterministic static INT8 copy of the pooled-feature export, calibrated on
    uint8 images (`calibration_rows` picks them from an image cache; `int8_network` does both).
  * `onnx_session`: a CPU InferenceSession, cached per file and thread count; `feature_session`
    exports (or reuses) a backbone's file and opens it.
  * A run with ``quantize: int8`` carries its INT8 network (QUANTIZED, beside its folds) and
    predicts with that very file (`carry_int8`, `carried_int8`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import atomic
from ..errors import UserError
from .backbones import FeatureHead
from .weights import normalization, preprocess, state_fingerprint

ONNX_OPSET = 17
QUANTIZED = "backbone.int8.onnx"  # a run's INT8 network, beside its folds: predict needs the very same file


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
    with torch.no_grad(), atomic.atomic_path(path, suffix=".tmp.onnx") as tmp, \
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
            with atomic.atomic_path(path, suffix=".tmp.onnx") as tmp:
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


def feature_session(backbone: nn.Module, size: int, cache_dir: str | os.PathLike | None,
                    threads: int, block: int | None = None) -> Any:
    """Export (or reuse) the ONNX file and open it; without cache_dir, in a temporary folder."""
    with torch.inference_mode(False):
        if cache_dir is not None:
            return onnx_session(export_onnx(backbone, size, cache_dir, block), threads)
        with tempfile.TemporaryDirectory(prefix="onnx-features-") as folder:
            # The session holds the model in memory, so the file can go with the folder.
            return onnx_session(export_onnx(backbone, size, folder, block), threads, cache=False)


def int8_network(backbone: nn.Module, image_size: int, train_images: np.ndarray, cache_dir: Path) -> Path:
    """The INT8 copy of the backbone's pooled-feature network, calibrated on evenly spaced training
    images, cached in cache_dir (the same images give the same file)."""
    rows = calibration_rows(len(train_images))
    return quantize_onnx(backbone, image_size, cache_dir, np.asarray(train_images[rows]))


def carry_int8(network: Path, run_dir: Path) -> Path:
    """The run's copy of its INT8 network (QUANTIZED), written when missing or different."""
    target = Path(run_dir) / QUANTIZED
    if not target.is_file() or file_fingerprint(target) != file_fingerprint(network):
        atomic.write_bytes(target, network.read_bytes())
    return target


def carried_int8(run_dir: Path, sha: str | None) -> Path:
    """The INT8 network a run carries, refused when missing or not the file it trained with."""
    path = Path(run_dir) / QUANTIZED
    if not path.is_file():
        raise UserError(f"{path}: missing; a run with quantize int8 predicts with the network it "
                        f"was trained with")
    if file_fingerprint(path) != sha:
        raise UserError(f"{path}: differs from the INT8 network the run was trained with (fingerprint {sha})")
    return path
