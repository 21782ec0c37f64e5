"""Fast frozen-feature extraction on a CPU: a backbone's pooled pre-classifier features, or its
activations after blocks[k], for uint8 images.

`extract_features` runs the backbone up to the pooled pre-classifier features,
in chunks (a read-only memmap is never read whole), with optional horizontal-flip TTA;
`extract_intermediate` stops after blocks[k] instead and `BlockTail` (backbones.py) finishes from there.
The default engine ("auto") exports the network once to ONNX (onnx_export.py; cached in `cache_dir`,
or a temporary folder) and runs it with ONNX Runtime; it checks the first images against eager
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
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from pipelines.errors import UserError

from .backbones import FeatureHead, check_block
from .onnx_export import feature_session, onnx_session
from .weights import normalization, preprocess

ENGINES = ("auto", "torch", "onnx")
# The ONNX path must reproduce eager fp32 features to within this (features are O(1)).
ONNX_CHECK_ATOL = 1e-3


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
    block = check_block(backbone, block)
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
                session = feature_session(backbone, size, cache_dir, threads, block)
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
