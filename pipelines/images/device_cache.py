"""The decoded uint8 image cache on the training device (`gpu_cache: auto|on|off`).

On a GPU the host-side batch path (gather, augment, normalise, copy) can starve the network. When
the cache fits (auto: at most half the GPU's free memory), it is copied to the GPU once, in large
chunks, and batches are gathered, flipped and normalised there: no host work and no copies per
batch. Only flips are done on the device; a config with random crops or colour jitter trains from
the host path (pinned memory, non-blocking copies) and still predicts from the device cache.

The same code runs on the CPU with `gpu_cache: on` (the "device" is then the CPU and the cache
is not copied): that is how the tests exercise it on a machine without a GPU. Its normalisation is
the same float32 arithmetic as augment.to_tensor; its flips are drawn from (seed, epoch, rank),
not by albumentations, so a run with flips differs from the host path's (not the statistics).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..errors import UserError

CHUNK_BYTES = 256 << 20     # host-to-device copies of the cache, this large each
FREE_FRACTION = 0.5         # auto: the cache may take up to this share of the GPU's free memory


def wanted(mode: str, device: torch.device, nbytes: int) -> bool:
    """Whether to put a cache of nbytes on `device`: on (or true), off (or false), or auto (CUDA and
    it fits)."""
    if mode in ("off", False):
        return False
    if mode in ("on", True):
        return True
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= FREE_FRACTION * free


def place(mode, device: torch.device, images: np.ndarray, test_images: np.ndarray | None):
    """(training images, test images or None) on `device` when the config's gpu_cache `mode` wants
    them there (wanted, for both together), else (None, None)."""
    nbytes = images.nbytes + (test_images.nbytes if test_images is not None else 0)
    if not wanted(mode, device, nbytes):
        return None, None
    return to_device(images, device), (to_device(test_images, device) if test_images is not None else None)


def to_device(images: np.ndarray, device: torch.device, chunk_bytes: int = CHUNK_BYTES,
              copy: bool | None = None) -> torch.Tensor:
    """(N, S, S, 3) uint8 as a tensor on `device`, copied in chunks of about chunk_bytes (from a
    memory-mapped cache, only one chunk is in host memory at a time). On the CPU the array itself
    is used, unless copy=True (the tests' way through the chunked copy)."""
    images = np.asarray(images)
    if not (device.type != "cpu" if copy is None else copy):
        with warnings.catch_warnings():  # a read-only memory map: the cache is never written to
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(np.ascontiguousarray(images))
    try:
        out = torch.empty(images.shape, dtype=torch.uint8, device=device)
    except torch.OutOfMemoryError:
        raise UserError(f"gpu_cache: the image cache ({images.nbytes / 2**30:.1f} GiB) does not fit on {device}; "
                        f"use --set gpu_cache=auto (or off)") from None
    rows = max(1, chunk_bytes // max(1, images[0].nbytes)) if len(images) else 1
    for start in range(0, len(images), rows):
        chunk = torch.from_numpy(np.ascontiguousarray(images[start:start + rows]))
        out[start:start + len(chunk)].copy_(chunk.pin_memory() if device.type == "cuda" else chunk,
                                            non_blocking=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out


def to_tensor(batch: torch.Tensor, mean, std, flip: torch.Tensor | bool = False) -> torch.Tensor:
    """(B, H, W, 3) uint8 on any device -> (B, 3, H, W) float32 there, (x / 255 - mean) / std, as
    augment.to_tensor computes it. flip: True mirrors all, a (B,) bool tensor mirrors those rows."""
    if isinstance(flip, torch.Tensor):
        if bool(flip.any()):
            batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(2), batch)
    elif flip:
        batch = batch.flip(2)
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], dtype=torch.float32, device=batch.device)
    shift = torch.tensor([m / s for m, s in zip(mean, std)], dtype=torch.float32, device=batch.device)
    out = batch.permute(0, 3, 1, 2).float().contiguous()
    out *= scale.view(1, 3, 1, 1)
    out -= shift.view(1, 3, 1, 1)
    return out


def can_train(hflip: bool, crop_scale: float, color_jitter: float) -> bool:
    """Whether the training augmentation can run on the device: flips only."""
    return crop_scale >= 1.0 and color_jitter <= 0


def batches(images: torch.Tensor, targets: torch.Tensor, order: np.ndarray, batch_size: int, hflip: bool,
            seed, mean, std):
    """One epoch of (inputs, targets) from the device cache: consecutive slices of `order` (sorted,
    as the host path does), each image mirrored with probability 1/2 when hflip (draws from
    numpy's generator seeded with `seed`)."""
    flips = np.random.default_rng(seed).random(len(order)) < 0.5 if hflip else None
    targets = targets.to(images.device)
    for start in range(0, len(order), batch_size):
        part = order[start:start + batch_size]
        sort = np.argsort(part, kind="stable")
        index = torch.from_numpy(part[sort]).to(images.device)
        flip = (torch.from_numpy(flips[start:start + batch_size][sort]).to(images.device)
                if flips is not None else False)
        yield to_tensor(images.index_select(0, index), mean, std, flip), targets.index_select(0, index)


def pinned(batches_iter, depth: int = 2):
    """Host batches put in pinned memory by a background thread, ready for non-blocking copies."""
    from .augment import prefetched

    return prefetched(lambda batch: tuple(t.pin_memory() for t in batch), batches_iter, depth)
