"""Training augmentation on batches of the uint8 image cache (albumentations), the
conversion of uint8 batches to normalised float tensors, and the training batch generator.

The cache is decoded once at the training size, so augmentation works on small uint8
arrays: a RandomResizedCrop back to the same size, a flip and a colour jitter cost tens of
microseconds an image (about 13 us for a flip at 32 px, 190 us for crop + flip + jitter at
64 px, measured on the project's 2-core CPU).  `batches` makes the next batches in a
background thread while the training step runs, so this work overlaps the network's
(benchmarks/RESULTS.md, "Data path").
"""

from __future__ import annotations

import copy
import math
import queue
import threading
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch

T = TypeVar("T")
U = TypeVar("U")

PREFETCH = 2  # batches made ahead of the training step by `batches`


def build(size: int, hflip: bool = True, crop_scale: float = 1.0, color_jitter: float = 0.0,
          seed: int = 0):
    """An albumentations pipeline, or None when every augmentation is off.

    Sets OpenCV to one thread (process-wide): on images this small its thread pool costs more
    than it saves (crop + flip + jitter at 64 px: 25 -> 17 CPU ms a batch of 128, same pixels)."""
    import albumentations as A
    import cv2

    cv2.setNumThreads(1)

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
    """Augment a (B, H, W, 3) uint8 batch image by image; returns a new uint8 array.

    A pipeline of RandomResizedCrop and/or HorizontalFlip (what `build` makes without colour
    jitter) runs through `_crop_flip`, 3-4x faster, with the same random draws and pixels as
    albumentations (checked once per pipeline; any difference and albumentations runs it)."""
    if transform is None:
        return np.ascontiguousarray(batch)
    if _exact(transform):
        return _crop_flip(transform, batch)
    return _albumentations(transform, batch)


def _albumentations(transform, batch: np.ndarray) -> np.ndarray:
    return np.stack([transform(image=np.ascontiguousarray(image))["image"] for image in batch])


def _parts(transform):
    """(RandomResizedCrop or None, HorizontalFlip or None) when `transform` is a Compose of just
    these, in this order, with the options `build` uses; else None."""
    import albumentations as A

    steps = list(getattr(transform, "transforms", None) or [])
    if type(transform) is not A.Compose or not 1 <= len(steps) <= 2 or transform.p < 1:
        return None
    if any(getattr(transform, name, None) for name in ("processors", "additional_targets")):
        return None
    crop = steps.pop(0) if type(steps[0]) is A.RandomResizedCrop else None
    flip = steps.pop(0) if steps and type(steps[0]) is A.HorizontalFlip else None
    if steps or (crop is not None and (crop.p < 1 or crop.area_for_downscale is not None)):
        return None
    return crop, flip


def _crop_flip(transform, batch: np.ndarray) -> np.ndarray:
    """albumentations' Compose([RandomResizedCrop, HorizontalFlip]) (either may be absent) on
    each image, as its __call__ does it (albumentations 2.0): the Compose draws one number, the
    crop draws its area and log aspect ratio (up to 10 tries, then a centred fallback) and two
    offsets, the flip draws one number if 0 < p < 1; each from its own py_random.  The crop is
    resized with cv2.resize and the crop's interpolation, the flip mirrors columns."""
    import cv2

    crop, flip = _parts(transform)
    compose_draw = transform.py_random.random
    n = len(batch)
    if crop is not None:
        th, tw = crop.size
        log_lo, log_hi = math.log(crop.ratio[0]), math.log(crop.ratio[1])
        uniform, draw = crop.py_random.uniform, crop.py_random.random
        out = np.empty((n, th, tw, batch.shape[-1]), dtype=np.uint8)
    else:
        out = np.empty(batch.shape, dtype=np.uint8)
    flip_draw = flip.py_random.random if flip is not None else None
    for i in range(n):
        image = batch[i]
        compose_draw()
        if crop is not None:
            h, w = image.shape[:2]
            area = h * w
            lo, hi = crop.scale[0] * area, crop.scale[1] * area
            for _ in range(10):
                target = uniform(lo, hi)
                aspect = math.exp(uniform(log_lo, log_hi))
                cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
                if 0 < cw <= w and 0 < ch <= h:
                    y0 = int((h - ch + 1) * draw())
                    x0 = int((w - cw + 1) * draw())
                    break
            else:  # the centred fallback
                ratio = w / h
                if ratio < crop.ratio[0]:
                    cw, ch = w, round(w / crop.ratio[0])
                elif ratio > crop.ratio[1]:
                    ch, cw = h, round(h * crop.ratio[1])
                else:
                    cw, ch = w, h
                y0, x0 = (h - ch) // 2, (w - cw) // 2
            image = image[y0:y0 + ch, x0:x0 + cw]
            if (ch, cw) != (th, tw):
                image = cv2.resize(image, (tw, th), interpolation=crop.interpolation)
        if flip is not None and flip.p > 0 and (flip.p >= 1 or flip_draw() < flip.p):
            image = image[:, ::-1]
        out[i] = image
    return out


def _exact(transform) -> bool:
    """Whether `_crop_flip` reproduces `transform` exactly: checked once per pipeline object on
    copies of it (same random state), comparing the images and the generators' next draws."""
    cached = getattr(transform, "_pipelines_exact", None)
    if cached is not None:
        return cached
    ok = False
    try:
        parts = _parts(transform)
        if parts is not None:
            crop = parts[0]
            side = crop.size if crop is not None else (32, 32)
            rng = np.random.default_rng(0)
            ok = True
            for shape in (side, (side[0] + 7, side[1] + 3), (side[0] // 2 + 1, side[1] * 2)):
                a, b = copy.deepcopy(transform), copy.deepcopy(transform)
                batch = rng.integers(0, 256, (48, *shape, 3), dtype=np.uint8)
                same = np.array_equal(_albumentations(a, batch), _crop_flip(b, batch))
                nexts = [(t.py_random.random(), u.py_random.random())
                         for t, u in zip([a, *a.transforms], [b, *b.transforms])]
                ok = ok and same and all(x == y for x, y in nexts)
    except Exception:  # an albumentations this code does not know: use albumentations itself
        ok = False
    try:
        transform._pipelines_exact = ok
    except AttributeError:  # pragma: no cover
        pass
    return ok


def to_tensor(batch: np.ndarray, mean, std, flip: bool = False) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32, (x / 255 - mean) / std; flip mirrors left-right.

    Computed as x * (1 / (255 std)) - mean / std in float32 with numpy (2-4x faster than the
    same arithmetic in torch on a CPU, bit for bit the same values, and safe in a background
    thread: numpy starts no OpenMP team).
    """
    batch = np.asarray(batch)
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected a (B, H, W, 3) batch, got shape {batch.shape}")
    if flip:
        batch = batch[:, :, ::-1]
    scale = np.array([1.0 / (255.0 * s) for s in std], dtype=np.float32)[:, None, None]
    shift = np.array([m / s for m, s in zip(mean, std)], dtype=np.float32)[:, None, None]
    out = batch.transpose(0, 3, 1, 2).astype(np.float32, order="C")
    out *= scale
    out -= shift
    return torch.from_numpy(out)


def batches(images: np.ndarray, targets: torch.Tensor, order: np.ndarray, batch_size: int, transform,
            mean: Sequence[float], std: Sequence[float], prefetch: int | None = None
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of training batches: consecutive slices of `order` (each sorted, so a memmapped
    cache is read in file order), gathered from the uint8 `images`, augmented by `transform`
    and converted by `to_tensor`; yields (inputs, targets[index]).

    prefetch (default PREFETCH) > 0: a background thread makes up to `prefetch` batches ahead of the consumer.  It
    makes the same batches in the same order with the same calls on `transform` (whose random
    generator only this thread uses meanwhile), so the values, and a seeded training run, are
    identical to prefetch=0.  numpy, OpenCV and albumentations' kernels release the GIL, so
    the next batch is made while the training step runs.
    """
    def make(start: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = np.sort(order[start:start + batch_size])
        return to_tensor(apply(transform, images[index]), mean, std), targets[index]

    starts = range(0, len(order), batch_size)
    prefetch = PREFETCH if prefetch is None else prefetch
    if prefetch <= 0:
        for start in starts:
            yield make(start)
    else:
        yield from prefetched(make, starts, prefetch)


_DONE = object()


def prefetched(make: Callable[[T], U], items: Iterable[T], depth: int = PREFETCH) -> Iterator[U]:
    """make(item) for each item in order, computed by one background thread up to `depth`
    results ahead.  An exception in make() is raised here, at the item that failed; closing
    the generator early (break, an exception in the consumer) stops and joins the thread."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    results: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value) -> bool:
        while not stop.is_set():
            try:
                results.put(value, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if stop.is_set() or not put((make(item), None)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put((_DONE, exc))
            return
        put((_DONE, None))

    thread = threading.Thread(target=work, name="prefetch-batches", daemon=True)
    thread.start()
    try:
        while True:
            value, error = results.get()
            if value is _DONE:
                if error is not None:
                    raise error
                return
            yield value
    finally:
        stop.set()
        thread.join()
