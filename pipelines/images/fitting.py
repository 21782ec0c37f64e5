"""One fold's image network (recipe: train) for every image competition, the spec engine and Dogs vs.
Cats alike: its training batches, its training by training.fit, and its predictions; on one process,
or data-parallel under torchrun (pipelines/distributed.py), from host memory or from the image cache
on the training device (device_cache.py, `gpu_cache`).

Under torchrun with N processes (each a rank):
  * batch_size stays the global batch (one optimizer step): every rank trains on batch_size / N rows of
    each global batch (distributed.per_rank_batch, shard_order), the epoch's order being the same on
    every rank (a function of seed and epoch);
  * each rank draws its own augmentation (distributed.rank_seed; rank 0 draws what one process draws);
  * each rank scores its part of the fold's validation rows, and the figures (means over rows) are
    averaged over all of them (rank_figures);
  * predictions: each rank predicts its part of the rows, gathered back in row order on every rank
    (predict_rows); rank 0 alone writes files (kfold.run, and the engines' own files).
On one process each of these is the plain loop.

A competition passes what is its own: the network (`build`), the validation figures, the training
settings, and what a prediction is (`output`: class_probabilities, or positive_probability for a
binary competition that stores P(class 1) in float32, as Dogs vs. Cats does).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from .. import distributed
from ..device import resolve
from ..progress import bar as progress_bar
from ..training import Resume, TrainSettings, fit, seed_everything
from . import augment, device_cache, networks

Figures = Callable[[np.ndarray, np.ndarray], dict]
# recipe: features runs in one process: its heads train in seconds on the cached features
FEATURES_ONE_PROCESS = "recipe features fits small heads on cached features in one process"


def start(cfg, device_spec: str):
    """This process's device for a training command: for recipe train, under torchrun, the process
    joins the group (distributed.setup: cuda:LOCAL_RANK, or the CPU with gloo); recipe features is
    refused there in one line (distributed.refuse_launched)."""
    if cfg.recipe == "train":
        return distributed.setup(device_spec)
    distributed.refuse_launched(FEATURES_ONE_PROCESS)
    return resolve(device_spec)


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(n, classes) softmax in float64."""
    return torch.softmax(logits.double(), 1)


def positive_probability(logits: torch.Tensor) -> torch.Tensor:
    """P(class 1) of a two-class network, (n,) float32."""
    return torch.softmax(logits, 1)[:, 1]


def _probabilities(model: nn.Module, batches, device, output) -> np.ndarray:
    out = []
    model.eval()
    with torch.no_grad():
        for x in batches:
            out.append(output(model(x.to(device, non_blocking=True)).float()).cpu().numpy())
    return np.concatenate(out) if out else np.empty(0)


def predict_images(model: nn.Module, images, norm: dict, device, batch_size: int, tta_flip: bool,
                   desc: str | None = None, output=class_probabilities) -> np.ndarray:
    """output(logits) for uint8 images (n, S, S, 3); with tta_flip the mean over the image and its mirror.
    With desc, progress output on rank 0 (progress.py: a bar on a terminal, a heartbeat in a log; none
    under CI or --quiet). `images` may be the device cache (a uint8 tensor, device_cache.py): then the
    batches are made on its device."""
    bar = progress_bar(total=len(images) * (2 if tta_flip else 1), desc=desc, unit="img",
                       disable=desc is None or not distributed.is_main())
    convert = device_cache.to_tensor if isinstance(images, torch.Tensor) else augment.to_tensor

    def batches(flip: bool):
        for start in range(0, len(images), batch_size):
            yield convert(images[start:start + batch_size], norm["mean"], norm["std"], flip)
            bar.update(min(batch_size, len(images) - start))
    try:
        prob = _probabilities(model, batches(False), device, output)
        if tta_flip:
            prob = (prob + _probabilities(model, batches(True), device, output)) / 2
    finally:
        bar.close()
    return prob


def predict_rows(model: nn.Module, images, norm: dict, device, batch_size: int, tta_flip: bool,
                 desc: str | None = None, output=class_probabilities) -> np.ndarray:
    """predict_images for every row; under torchrun each rank predicts its part of the rows and the
    parts are gathered back in the original row order, on every rank."""
    part = distributed.rank_slice(len(images))
    return distributed.gather_rows(predict_images(model, images[part], norm, device, batch_size, tta_flip, desc,
                                                  output))


def rank_figures(figures: Figures, names: tuple[str, ...], labels: np.ndarray, prob: np.ndarray) -> dict:
    """figures(labels, prob) (each one a mean over the rows, named in `names`) over the validation rows
    of every rank: each rank scores its own part, and the figures are averaged weighted by the rows."""
    if not distributed.active():
        return figures(labels, prob)
    n = len(labels)
    own = figures(labels, prob) if n else {}
    sums = distributed.all_reduce_sum([own[name] * n if n else 0.0 for name in names] + [n])
    return {name: total / sums[-1] for name, total in zip(names, sums)}


def train_network(cfg, build: Callable[[], nn.Module], images: np.ndarray, labels: np.ndarray,
                  train_index: np.ndarray, valid_index: np.ndarray, seed: int, device, desc: str,
                  settings: TrainSettings, figures: Figures, names: tuple[str, ...], output=class_probabilities,
                  state: Resume | None = None, device_images=None) -> tuple[nn.Module, dict, object]:
    """Train one fold's network, build() (made after seeding with `seed`), by training.fit on augmented
    batches of the uint8 images (module docstring: under torchrun every rank trains on its part of each
    global batch and scores its part of the validation rows). Returns (the model with the kept weights,
    its input normalisation, fit's result). cfg: the image config's arch, image_size, batch_size,
    eval_batch_size, hflip, crop_scale, color_jitter, augment and label_smoothing. device_images: the
    images on the device (device_cache.place), or None."""
    seed_everything(seed)
    model = build()
    norm = networks.normalization(model, cfg.arch)
    transform = augment.build(cfg.image_size, cfg.hflip, cfg.crop_scale, cfg.color_jitter, seed=seed,
                              pipeline=cfg.augment)
    targets = torch.from_numpy(labels.astype(np.int64))

    rank_batch = distributed.per_rank_batch(cfg.batch_size)  # = batch_size on one process

    def train_batches(epoch: int):
        if transform is not None:  # augmentation draws depend on (seed, epoch) only: a resumed run repeats them
            transform.set_random_seed(distributed.rank_seed(seed * 1000 + epoch))  # (and the rank)
        order = train_index[np.random.default_rng(seed * 1000 + epoch).permutation(len(train_index))]
        order = distributed.shard_order(order, cfg.batch_size)  # this rank's part of every global batch
        # Augmented in a background thread, batches ahead of the training step; same batches as in line.
        yield from augment.batches(images, targets, order, rank_batch, transform, norm["mean"], norm["std"])

    def device_batches(epoch: int):  # flips only, from the cache on the device (device_cache.py)
        order = train_index[np.random.default_rng(seed * 1000 + epoch).permutation(len(train_index))]
        order = distributed.shard_order(order, cfg.batch_size)
        yield from device_cache.batches(device_images, targets, order, rank_batch, cfg.hflip,
                                        [seed, epoch, distributed.rank()], norm["mean"], norm["std"])

    batches = train_batches
    if (device_images is not None and cfg.augment is None
            and device_cache.can_train(cfg.hflip, cfg.crop_scale, cfg.color_jitter)):
        batches = device_batches
    elif device.type == "cuda":
        def batches(epoch: int):  # pinned host memory in a background thread, for non-blocking copies
            return device_cache.pinned(train_batches(epoch))

    source = device_images if device_images is not None else images
    part = valid_index[distributed.rank_slice(len(valid_index))]  # this rank's validation rows
    valid_images, valid_labels = source[part], labels[part]

    def evaluate(net):
        prob = predict_images(net, valid_images, norm, device, cfg.eval_batch_size, False, output=output)
        return rank_figures(figures, names, valid_labels, prob)

    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    steps = distributed.steps_per_epoch(len(train_index), cfg.batch_size)
    result = fit(model, batches, steps, loss_fn, evaluate, settings, device, desc=desc, resume=state)
    model.load_state_dict(result.best_state)
    return model, norm, result
