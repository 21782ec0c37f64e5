"""Training augmentation on batches of the uint8 image cache (albumentations), the
conversion of uint8 batches to normalised float tensors, and the training batch generator.

The pipeline is an albumentations `Compose`, either built from the config's keys (hflip,
crop_scale, color_jitter: `build`) or declared in the config under `augment:` as
albumentations' own serialised form (what `A.to_dict(compose)` writes, as YAML), loaded with
`A.from_dict` (`load`).  It runs through albumentations' public API only, image by image
(`transform(image=...)["image"]`), and is seeded through the public `seed=` of `A.Compose` /
`Compose.set_random_seed`; no code here reads or replays the library's random generators.

The cache is decoded once at the training size, so augmentation works on small uint8
arrays: a RandomResizedCrop back to the same size, a flip and a colour jitter cost tens of
microseconds an image (benchmarks/RESULTS.md, "Data path").  `batches` makes the next
batches in a background thread while the training step runs, so this work overlaps the
network's.
"""

from __future__ import annotations

import queue
import threading
import warnings
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from ..errors import UserError

T = TypeVar("T")
U = TypeVar("U")

PREFETCH = 2  # batches made ahead of the training step by `batches`


# the config keys of training augmentation (recipes.py): flips, crops and colour jitter, or a
# declared albumentations pipeline (`augment`, see load) instead of them
KEYS = {"hflip", "crop_scale", "color_jitter", "augment"}


def _albumentations():
    """albumentations, with OpenCV set to one thread (process-wide): on images this small its
    thread pool costs more than it saves (crop + flip + jitter at 64 px: 25 -> 17 CPU ms a
    batch of 128, same pixels)."""
    import albumentations as A
    import cv2

    cv2.setNumThreads(1)
    return A


def build(size: int, hflip: bool = True, crop_scale: float = 1.0, color_jitter: float = 0.0,
          seed: int = 0, pipeline: dict | None = None, where: str = "augment"):
    """An albumentations Compose seeded with `seed`, or None when every augmentation is off.

    pipeline: a declared pipeline (the config's `augment:`, see `load`); it replaces the one
    the keys hflip, crop_scale and color_jitter build."""
    if pipeline is not None:
        return load(pipeline, size, seed, where)
    A = _albumentations()
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
    return A.Compose(steps, seed=seed)


def declared(transform) -> dict:
    """The serialised form of a pipeline, as a config's `augment:` declares it (A.to_dict)."""
    return _albumentations().to_dict(transform)


def load(pipeline: dict, size: int, seed: int = 0, where: str = "augment"):
    """The Compose a config declares under `augment:` (A.to_dict's output: {"__version__": ...,
    "transform": {"__class_fullname__": "Compose", "transforms": [...], ...}}, or just its
    "transform" part), made with A.from_dict and seeded with `seed`.

    Raises a one-line UserError naming `where` and the transform when a transform name is
    unknown, an argument is not one it takes or has a bad value, or the pipeline does not make
    (size, size, 3) uint8 images from the cache's (size, size, 3) ones."""
    A = _albumentations()
    if not isinstance(pipeline, dict):
        raise UserError(f"{where}: augment must be a mapping (A.to_dict's output), got {pipeline!r}")
    root = pipeline.get("transform", pipeline)
    if not isinstance(root, dict) or root.get("__class_fullname__") not in ("Compose", "albumentations.Compose",
                                                                             "albumentations.core.composition.Compose"):
        raise UserError(f"{where}: augment must declare a Compose (the dict A.to_dict(A.Compose([...])) "
                        f"writes), got {str(root)[:80]!r}")
    transform = _from_dict(A, root, where, "Compose")
    rng = np.random.default_rng(0)
    probe = rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    try:
        out = [transform(image=image)["image"] for image in probe]
    except Exception as exc:
        raise UserError(f"{where}: augment fails on a {size}x{size} RGB uint8 image: "
                        f"{type(exc).__name__}: {_one_line(exc)}") from None
    bad = [(o.shape, o.dtype) for o in out if o.shape != (size, size, 3) or o.dtype != np.uint8]
    if bad:
        raise UserError(f"{where}: augment must make {size}x{size}x3 uint8 images from the cache's "
                        f"(image_size {size}), it makes {bad[0][0]} {bad[0][1]}")
    transform.set_random_seed(seed)  # every generator from `seed`, as A.Compose(..., seed=seed) sets them
    return transform


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _from_dict(A, node, where: str, path: str):
    """A.from_dict on one node of a serialised pipeline; on a failure, the deepest failing node
    (its children first) is named in the UserError."""
    if not isinstance(node, dict) or "__class_fullname__" not in node:
        raise UserError(f"{where}: augment {path} is not a serialised transform "
                        f"(a mapping with __class_fullname__), got {str(node)[:80]!r}")
    name = node["__class_fullname__"]
    children = node.get("transforms")
    if isinstance(children, list):
        for i, child in enumerate(children):
            label = child.get("__class_fullname__", "?") if isinstance(child, dict) else "?"
            _from_dict(A, child, where, f"{path}.transforms[{i}] {label}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            transform = A.from_dict({"transform": node})
        except KeyError as exc:
            if exc.args and exc.args[0] in (name, name.rsplit(".", 1)[-1]):
                raise UserError(f"{where}: augment {path}: unknown albumentations transform {name!r}") from None
            raise UserError(f"{where}: augment {path}: {type(exc).__name__}: {_one_line(exc)}") from None
        except Exception as exc:  # pydantic's ValidationError (a ValueError), a TypeError, ...
            raise UserError(f"{where}: augment {path}: bad arguments for {name}: {_one_line(exc)}") from None
    for warning in caught:
        text = str(warning.message)
        if "not valid for transform" in text:  # albumentations only warns of an unknown argument
            raise UserError(f"{where}: augment {path}: {text.replace('BasicTransform', name)}")
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return transform


def apply(transform, batch: np.ndarray) -> np.ndarray:
    """Augment a (B, H, W, 3) uint8 batch image by image through albumentations' public call;
    returns a new uint8 array."""
    if transform is None:
        return np.ascontiguousarray(batch)
    return np.stack([transform(image=np.ascontiguousarray(image))["image"] for image in batch])


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
