"""Training augmentation on batches of the uint8 image cache (albumentations), and the
conversion of uint8 batches to normalised float tensors.

The cache is decoded once at the training size, so augmentation works on small uint8
arrays: a RandomResizedCrop back to the same size, a flip and a colour jitter cost tens of
microseconds an image, far below the network's time on a CPU.
"""

from __future__ import annotations

import numpy as np
import torch


def build(size: int, hflip: bool = True, crop_scale: float = 1.0, color_jitter: float = 0.0,
          seed: int = 0):
    """An albumentations pipeline, or None when every augmentation is off."""
    import albumentations as A

    steps = []
    if crop_scale < 1.0:
        steps.append(A.RandomResizedCrop(size=(size, size), scale=(crop_scale, 1.0), ratio=(3 / 4, 4 / 3), p=1.0))
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    if color_jitter > 0:
        steps.append(A.ColorJitter(brightness=color_jitter, contrast=color_jitter,
                                   saturation=color_jitter, hue=min(0.5, color_jitter / 4), p=0.8))
    if not steps:
        return None
    compose = A.Compose(steps, seed=seed)
    return compose


def apply(transform, batch: np.ndarray) -> np.ndarray:
    """Augment a (B, H, W, 3) uint8 batch image by image; returns a new uint8 array."""
    if transform is None:
        return np.ascontiguousarray(batch)
    return np.stack([transform(image=np.ascontiguousarray(image))["image"] for image in batch])


def to_tensor(batch: np.ndarray, mean, std, flip: bool = False) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32, (x / 255 - mean) / std; flip mirrors left-right."""
    batch = np.asarray(batch)
    if not batch.flags.writeable:  # a slice of the read-only cache memmap
        batch = batch.copy()
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
    scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(1, 3, 1, 1)
    shift = torch.tensor([m / s for m, s in zip(mean, std)]).view(1, 3, 1, 1)
    x = x * scale - shift
    if flip:
        x = torch.flip(x, dims=[3])
    return x.contiguous()
