"""Frozen-backbone feature stages: computed once, cached as files, reused by every fold.

A stage file holds, for every image of a cache, either the pooled pre-classifier features
(block = -1) or the activations after backbone.blocks[block] (float16), with the
horizontally flipped image as a second view when flip TTA is on: (N, views, ...).
The file name is a key of everything that decides its values: architecture, a fingerprint
of the backbone's weights, input size, block, views, and the image cache's fingerprint.
A stage is written to a temporary file and renamed, and meta.json is written last, so a
killed extraction is recomputed, never read.

`stage`/`stages` give what a recipe's head reads (its config's block, head and image size; the
flipped view when asked: flip TTA for test images, tta_flip and train_flip for training images),
for one backbone or several (`also`), for every image competition alike.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import atomic
from ..errors import UserError
from ..training import quiet
from . import extraction, onnx_export, weights
from .backbones import BlockTail, FeatureHead

FEATURES = "features.npy"
META = "meta.json"


def stage_key(arch: str, backbone_sha: str, size: int, block: int, flip: bool, source_fingerprint: str,
              derived: str = "") -> str:
    part = "pooled" if block < 0 else f"block{block}"
    source = hashlib.sha256(source_fingerprint.encode()).hexdigest()[:12]
    return f"{arch}-{backbone_sha[:10]}-{size}px-{part}{derived}-{'flip' if flip else 'noflip'}-{source}"


def _load(folder: Path) -> np.ndarray | None:
    try:
        meta = json.loads((folder / META).read_text())
        array = np.load(folder / FEATURES, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if list(array.shape) != meta.get("shape"):
        return None
    return array


def _write(folder: Path, shape: tuple, dtype, fill, meta: dict) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META).unlink(missing_ok=True)
    started = time.perf_counter()
    with atomic.atomic_path(folder / FEATURES) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        fill(out)
        out.flush()
        del out
    atomic.write_json(folder / META, {**meta, "shape": list(shape), "dtype": str(np.dtype(dtype)),
                                      "seconds": round(time.perf_counter() - started, 2)})
    return np.load(folder / FEATURES, mmap_mode="r")


def backbone_features(backbone: nn.Module, arch: str, images: np.ndarray, size: int, block: int, flip: bool,
                      source_fingerprint: str, root: Path | None, what: str = "images",
                      onnx_path: Path | None = None) -> tuple[np.ndarray, Path | None]:
    """(stage array, its folder) for these images: loaded if cached under root, else computed.

    root=None computes in memory (prediction on a new folder). onnx_path: the pooled features
    from this ONNX file (an INT8 copy of the backbone), keyed by the file's fingerprint."""
    sha = weights.state_fingerprint(backbone)
    derived = ""
    if onnx_path is not None:
        if block >= 0:
            raise UserError("block: an ONNX file gives pooled features only (block -1)")
        derived = f"-onnx{onnx_export.file_fingerprint(onnx_path)[:10]}"
    n = len(images)
    probe_shape = _output_shape(backbone, size, block)
    shape = (n, 2 if flip else 1, *probe_shape)
    dtype = np.float32 if block < 0 else np.float16
    meta = {"arch": arch, "backbone_sha": sha, "size": size, "block": block, "flip": flip,
            "source_fingerprint": source_fingerprint, "images": n,
            **({"onnx_file": onnx_path.name, "onnx_sha": derived[5:]} if onnx_path is not None else {})}
    progress = not quiet()

    def fill(out: np.ndarray) -> None:
        if progress:
            print(f"features: {what}: {n} images at {size}px, {'block ' + str(block) if block >= 0 else 'pooled'}"
                  f"{' + flip' if flip else ''}{' (' + onnx_path.name + ')' if onnx_path is not None else ''}",
                  flush=True)
        target = out if flip else out[:, 0]
        kw = dict(batch_size=32, tta_flip=flip, input_size=size, progress=progress, out=target,
                  cache_dir=(root / "onnx") if root is not None else None)
        if block < 0:
            extraction.extract_features(backbone, images, onnx_path=onnx_path, **kw)
        else:
            extraction.extract_intermediate(backbone, images, block, dtype=np.float16, **kw)

    if root is None:
        out = np.empty(shape, dtype=dtype)
        fill(out)
        return out, None
    folder = root / stage_key(arch, sha, size, block, flip, source_fingerprint, derived)
    cached = _load(folder)
    if cached is not None and tuple(cached.shape) == shape:
        return cached, folder
    return _write(folder, shape, dtype, fill, meta), folder


def _output_shape(backbone: nn.Module, size: int, block: int) -> tuple:
    with torch.no_grad():
        head = FeatureHead(backbone.eval(), None if block < 0 else block)
        return tuple(head(torch.zeros(1, 3, size, size)).shape[1:])


def pooled_from_block(backbone: nn.Module, activations: np.ndarray, block: int, batch_size: int = 256,
                      folder: Path | None = None) -> np.ndarray:
    """Pooled features computed from cached block activations by the frozen rest of the network
    (cheap: only the last blocks run). Cached beside the activations when folder is given."""
    tail = BlockTail(backbone, block).eval()
    n, views = activations.shape[:2]

    def fill(out: np.ndarray) -> None:
        with torch.inference_mode():
            flat = activations.reshape(n * views, *activations.shape[2:])
            result = out.reshape(n * views, -1)
            for start in range(0, len(flat), batch_size):
                x = torch.from_numpy(np.array(flat[start:start + batch_size], dtype=np.float32))
                result[start:start + len(x)] = tail(x, pre_logits=True).numpy()

    with torch.no_grad():
        dim = tail(torch.zeros(1, *activations.shape[2:]), pre_logits=True).shape[1]
    shape = (n, views, dim)
    if folder is None:
        out = np.empty(shape, np.float32)
        fill(out)
        return out
    folder = Path(str(folder) + "-pooled")
    cached = _load(folder)
    if cached is not None and tuple(cached.shape) == shape:
        return cached
    return _write(folder, shape, np.float32, fill, {"from": str(folder), "block": block})


# --------------------------------------------------------------------------- a recipe's stage

def stage(cfg, backbone: nn.Module, arch: str, images: np.ndarray, fingerprint: str | None, root: Path | None,
          what: str, flip: bool, onnx_path: Path | None = None) -> np.ndarray:
    """What cfg's head reads for these images (cfg.block, cfg.head, cfg.image_size): pooled features,
    or block activations (head tail), or pooled features derived from block activations (other heads
    with block >= 0); (n, 2 views, ...) with flip (the image and its mirror), else (n, 1, ...).
    Cached under root by the image cache's fingerprint; computed in memory without one (a new test
    folder). onnx_path: the network that computes pooled features (quantize int8)."""
    root = root if fingerprint else None
    feats, folder = backbone_features(backbone, arch, images, cfg.image_size, cfg.block, flip, fingerprint or "",
                                      root, what, onnx_path=onnx_path)
    if cfg.block >= 0 and cfg.head != "tail":
        feats = pooled_from_block(backbone, feats, cfg.block, folder=folder)
    return feats


def stages(cfg, backbones: list[tuple[str, nn.Module]], images: np.ndarray, fingerprint: str | None,
           root: Path | None, what: str, flip: bool, onnx_path: Path | None = None) -> np.ndarray:
    """stage() of each backbone (backbones.make_backbones: cfg.arch, then each `also` entry), each
    its own cached stage, concatenated along the features. onnx_path: the INT8 network, for a single
    backbone (backbones.check_stage refuses `also` with quantize)."""
    parts = [stage(cfg, backbone, arch, images, fingerprint, root, f"{what} ({arch})" if len(backbones) > 1 else what,
                   flip, onnx_path) for arch, backbone in backbones]
    return parts[0] if len(parts) == 1 else np.concatenate([np.asarray(part) for part in parts], axis=-1)
