"""Dogs vs. Cats: k-fold training (end to end, or a head on frozen pretrained features),
prediction from fold checkpoints, submission.

Two recipes share the engine, the checkpoints and the run record:
  * ``recipe: train``: the whole network (LeNet, modern LeNet, any timm architecture from
    scratch or pretrained) trained by training.fit on augmented batches of the uint8 cache.
  * ``recipe: features``: a pretrained backbone stays frozen; its features are computed once
    as a stage (pipelines/images/features.py, flip TTA included) and a head is fitted per fold: logistic
    regression, a small MLP, or ``tail`` (the backbone's blocks after ``block``, fine-tuned
    on the cached activations, plus the classifier).
Predictions are P(dog), averaged over the flip views and the folds, clipped to
[clip, 1 - clip] in submissions (Kaggle's log loss punishes a confident mistake without bound).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ... import atomic, checkpoint, config as configs, distributed, folds as folding, hints, kfold, paths, resume, runs
from ...device import resolve
from ...errors import UserError
from ...metrics import accuracy, log_loss, roc_auc
from ...progress import bar as progress_bar, fold_label
from ...training import Resume, TrainSettings, fit, quiet, seed_everything
from ...images import augment, device_cache, features, networks as models
from ...images import pretrained as P
from . import data
from .competition import DOGS_VS_CATS, ID, METRIC, NAME, SUBMISSION, TARGET

DEFAULT_CONFIG = DOGS_VS_CATS.default_config  # best measured: 5-fold CV log loss 0.02602, accuracy 99.10% (docs/results.md)
SUBMISSION_COLUMNS = list(SUBMISSION.columns)
CLIP_GRID = (0.0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05)


@dataclass
class DogsConfig:
    name: str = configs.option("custom")
    arch: str = configs.option("lenet", help="lenet, lenet-modern or any timm model name")
    pretrained: bool | str = configs.option(False, help="false, true, efficientnet-lite0-package (lite1, lite2 "
                                                        "likewise) or a path")
    recipe: str = configs.option("train", choices=["train", "features"])
    image_size: int = configs.option(32, min=8, max=1024)
    folds: int = configs.option(5, min=2, max=20)
    seed: int = configs.option(42)
    # recipe train (and head mlp/tail)
    epochs: int = configs.option(10, min=1)
    batch_size: int = configs.option(128, min=1)
    optimizer: str = configs.option("adamw", choices=["adam", "adamw", "sgd"])
    lr: float = configs.option(1e-3, min=0.0)
    momentum: float = configs.option(0.9, min=0.0, max=1.0)
    weight_decay: float = configs.option(0.05, min=0.0)
    schedule: str = configs.option("cosine", choices=["cosine", "constant"])
    warmup_epochs: float = configs.option(0.0, min=0.0)
    patience: int = configs.option(0, min=0)
    # best: the weights of the epoch with the best validation log loss, chosen on the rows the fold
    # then scores (optimistic); last: those after the last epoch, what the CV and the test both get
    keep: str = configs.option("best", choices=["best", "last"])
    ema: float = configs.option(0.0, min=0.0, max=0.99999)
    label_smoothing: float = configs.option(0.0, min=0.0, max=0.5)
    grad_clip: float = configs.option(0.0, min=0.0)
    drop_rate: float = configs.option(0.0, min=0.0, max=0.9)
    width: int = configs.option(32, min=4, help="cnn-small: channels of the first stage")
    channels_last: bool = configs.option(True)
    # speed on GPUs, and several processes (README, "Scaling out")
    precision: str = configs.option("auto", choices=["auto", "bf16", "fp16", "fp32"],
                                    help="auto: bf16 where supported, else fp16 + GradScaler, on CUDA; fp32 on the CPU")
    compile: bool = configs.option(False, help="torch.compile the training step")
    gpu_cache: bool | str = configs.option("auto", choices=["auto", "on", "off", True, False],
                                           help="the uint8 image cache on the training device (auto: CUDA and it "
                                                "fits); on/off (YAML reads them as true/false)")
    sync_bn: bool = configs.option(True, help="several GPUs (torchrun): batch norm over the global batch")
    hflip: bool = configs.option(True)
    crop_scale: float = configs.option(1.0, min=0.05, max=1.0, help="RandomResizedCrop min area; 1 = off")
    color_jitter: float = configs.option(0.0, min=0.0, max=1.0)
    # an albumentations pipeline in its own serialised form (A.to_dict(compose), as YAML), used
    # instead of hflip/crop_scale/color_jitter for training (configs/dogs-vs-cats/lenet-modern-albu.yaml)
    augment: dict | None = configs.option(None, help="albumentations A.to_dict pipeline; replaces hflip, "
                                                     "crop_scale and color_jitter for training")
    # recipe features
    block: int = configs.option(-1, min=-1, help="-1: pooled features; k: activations after blocks[k]")
    head: str = configs.option("logreg", choices=["logreg", "mlp", "mlp+logreg", "tail"],
                               help="mlp+logreg: both heads per fold, their dog logits averaged")
    C: float = configs.option(1.0, min=0.0)
    hidden: int = configs.option(512, min=1)
    # the training images' flipped view too: the MLP head trains on a random view, and the
    # out-of-fold rows are scored on both views, as the test is with tta_flip; false halves the
    # training images' feature stage (the out-of-fold rows are then scored on the image alone)
    train_flip: bool = configs.option(True)
    quantize: str = configs.option("none", choices=["none", "int8"],
                                   help="int8: the backbone's ONNX export statically quantised (pooled features)")
    also: list[str] = configs.option([], help="more frozen backbones, their pooled features concatenated after "
                                              "arch's: a weights package (efficientnet-lite1-package) or ARCH=WEIGHTS")
    # with also: logits, a head per backbone (each on its own features), their dog logits averaged
    # with equal weights; concat, one head on the concatenated features
    join: str = configs.option("logits", choices=["logits", "concat"])
    # prediction
    tta_flip: bool = configs.option(True)
    clip: float = configs.option(0.005, min=0.0, max=0.49)
    eval_batch_size: int = configs.option(256, min=1)


# The keys each recipe reads (a config, and --set, may name only these): training a network
# (recipe train) reads the training loop's keys and the augmentation's; frozen features (recipe
# features) read the head's, and the training loop's when the head is trained by it (not logreg).
# DogsConfig stays one flat record (run.json, config hashes and resumed runs read it as before).
COMMON_KEYS = {"name", "arch", "pretrained", "recipe", "image_size", "folds", "seed", "tta_flip", "clip",
               "eval_batch_size", "precision", "compile", "gpu_cache", "sync_bn", "channels_last"}
LOOP_KEYS = {"epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule", "warmup_epochs",
             "patience", "keep", "ema", "label_smoothing", "grad_clip", "drop_rate"}
TRAIN_KEYS = LOOP_KEYS | {"width", "hflip", "crop_scale", "color_jitter", "augment"}
STAGE_KEYS = {"block", "head", "train_flip", "quantize", "also", "join"}
HEAD_KEYS = {"logreg": STAGE_KEYS | {"C"}, "mlp": LOOP_KEYS | STAGE_KEYS | {"hidden"},
             "mlp+logreg": LOOP_KEYS | STAGE_KEYS | {"hidden", "C"}, "tail": LOOP_KEYS | STAGE_KEYS}


def family_keys(values: dict) -> tuple[str, set[str]]:
    """(the recipe as the error names it, the keys its config may hold): config.load's family check."""
    if values["recipe"] == "train":
        return "recipe: train", COMMON_KEYS | TRAIN_KEYS
    return f"recipe: features with head: {values['head']}", COMMON_KEYS | HEAD_KEYS[values["head"]]


def load_config(name: str, overrides: dict | None = None) -> DogsConfig:
    cfg = configs.load(NAME, DogsConfig, name, overrides, family_keys=family_keys)
    check_config(cfg, str(configs.config_path(NAME, name)))
    return cfg


def check_config(cfg: DogsConfig, where: str) -> None:
    if not models.known(cfg.arch):
        models.build(cfg.arch, cfg.image_size)  # raises the UserError with a suggestion
    if cfg.recipe == "features":
        if cfg.pretrained is False:
            raise UserError(f"{where}: recipe features needs pretrained weights (pretrained: ...)")
        if cfg.head == "tail" and cfg.block < 0:
            raise UserError(f"{where}: head tail needs block >= 0 (the blocks after it are fine-tuned)")
        if cfg.quantize != "none" and cfg.block >= 0:
            raise UserError(f"{where}: quantize {cfg.quantize} quantises the pooled features' network; "
                            f"it needs block: -1, got block: {cfg.block}")
        if cfg.also:
            if cfg.block >= 0:
                raise UserError(f"{where}: also concatenates pooled features; it needs block: -1, got {cfg.block}")
            if cfg.quantize != "none":
                raise UserError(f"{where}: also and quantize {cfg.quantize} do not go together (one INT8 network "
                                f"per run); quantize: none")
            for item in cfg.also:
                arch, _ = also_backbone(item, where)
                if not models.known(arch):
                    models.build(arch, cfg.image_size)  # raises the UserError with a suggestion
    if cfg.arch in models.REGISTRY and cfg.pretrained not in (False, None):
        raise UserError(f"{where}: pretrained: {cfg.arch} has no pretrained weights")
    if cfg.augment is not None:
        if cfg.crop_scale < 1.0 or cfg.color_jitter > 0:
            raise UserError(f"{where}: augment declares the pipeline; crop_scale and color_jitter must stay off")
        augment.load(cfg.augment, cfg.image_size, where=where)  # raises the UserError naming the transform


# --------------------------------------------------------------------------- data

def has_test(folder: Path) -> bool:
    return any((folder / n).is_dir() or (folder / f"{n}.zip").is_file() for n in ("test1", "test"))


def data_source(spec: str | None) -> Path:
    folder = Path(spec) if spec else paths.data_dir(NAME)
    if not folder.exists():
        if spec:
            raise UserError(f"{folder}: folder not found")
        raise UserError(f"no Dogs vs. Cats data in {folder}: run `{hints.prepare(NAME)}` (Kaggle download) "
                        f"or pass --data DIR (a folder with train/ and test1/, or Kaggle's zips)")
    return folder


def cache_root(size: int) -> Path:
    return paths.data_dir(NAME) / "cache" / str(size)


def prepare_caches(source: Path, size: int, workers: int = 2) -> tuple[data.Cache, data.Cache | None]:
    """Scan train (and test, when present) and build or reuse their caches at `size`."""
    progress = not quiet()
    train_entries = data.scan(source, "train")
    train = data.ensure_cache(train_entries, cache_root(size) / "train", size, workers, progress)
    test = None
    if has_test(source) if source.is_dir() else False:
        test_entries = data.scan(source, "test")
        test = data.ensure_cache(test_entries, cache_root(size) / "test", size, workers, progress)
        if test.manifest["skipped"]:
            bad = test.manifest["skipped"]
            raise UserError(f"{test_entries.folder}: {len(bad)} test image(s) cannot be read, so no prediction "
                            f"could cover every id: " + "; ".join(f"{b['key']} ({b['reason']})" for b in bad[:5]))
    if len(np.unique(train.labels)) < 2:
        raise UserError(f"{train_entries.folder}: training needs both cats and dogs; found only "
                        f"{data.CLASS_NAMES[int(train.labels[0])]}s")
    return train, test


def read_test_folder(folder: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, images) of every N.jpg in folder, decoded as the caches are; any unreadable image
    stops the prediction, naming every bad file (a submission must cover every id)."""
    entries = data.scan(folder, "test")
    images = np.empty((len(entries), size, size, 3), np.uint8)
    bad = []
    try:
        for i, entry in enumerate(progress_bar(entries, desc="decode test images", unit="img")):
            try:
                images[i] = data.decode(data._read_checked(entry), size)
            except data.BadImage as exc:
                bad.append(f"{entry.key} ({exc.reason})")
            except OSError as exc:
                bad.append(f"{entry.key} (cannot read: {exc})")
    finally:
        data.close_archives()
    if bad:
        raise UserError(f"{entries.folder}: {len(bad)} test image(s) cannot be read: {'; '.join(bad[:10])}"
                        + (" ..." if len(bad) > 10 else ""))
    return np.array([e.id for e in entries], dtype=np.int64), images


# --------------------------------------------------------------------------- metrics

def clipped(prob, clip: float) -> np.ndarray:
    return np.clip(np.asarray(prob, float), clip, 1.0 - clip)


def scores(labels: np.ndarray, prob: np.ndarray, clip: float) -> dict:
    p = clipped(prob, clip)
    return {METRIC: log_loss(labels, p), "accuracy": accuracy(labels, p), "roc_auc": roc_auc(labels, p)}


def clip_scan(labels: np.ndarray, prob: np.ndarray) -> dict:
    """OOF log loss for each clip in CLIP_GRID, and the best one."""
    losses = {str(c): log_loss(labels, clipped(prob, c)) for c in CLIP_GRID}
    best = min(losses, key=losses.get)
    return {"log_loss_by_clip": losses, "best_clip": float(best)}


# --------------------------------------------------------------------------- recipe: train

def _settings(cfg: DogsConfig, epochs: int | None = None) -> TrainSettings:
    return TrainSettings(epochs=epochs or cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                         optimizer=cfg.optimizer, momentum=cfg.momentum, schedule=cfg.schedule,
                         warmup_epochs=cfg.warmup_epochs, patience=cfg.patience, ema=cfg.ema,
                         grad_clip=cfg.grad_clip, channels_last=cfg.channels_last, monitor="log_loss", keep=cfg.keep,
                         precision=cfg.precision, compile=cfg.compile, sync_bn=cfg.sync_bn)


def _probabilities(model: nn.Module, batches, device) -> np.ndarray:
    out = []
    model.eval()
    with torch.no_grad():
        for x in batches:
            out.append(torch.softmax(model(x.to(device, non_blocking=True)).float(), 1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.empty(0)


def predict_images(model: nn.Module, images: np.ndarray, norm: dict, device, batch_size: int,
                   tta_flip: bool, desc: str | None = None) -> np.ndarray:
    """P(dog) for uint8 images (N, S, S, 3); with tta_flip the mean over the image and its mirror.
    With desc, progress output (progress.py: a bar on a terminal, a heartbeat in a log; none under CI
    or --quiet). `images` may be the device cache (a uint8 tensor, pipelines/images/device_cache.py): then the batches
    are made on its device."""
    bar = progress_bar(total=len(images) * (2 if tta_flip else 1), desc=desc, unit="img",
                       disable=desc is None or not distributed.is_main())
    convert = device_cache.to_tensor if isinstance(images, torch.Tensor) else augment.to_tensor

    def batches(flip):
        for start in range(0, len(images), batch_size):
            yield convert(images[start:start + batch_size], norm["mean"], norm["std"], flip)
            bar.update(min(batch_size, len(images) - start))
    try:
        prob = _probabilities(model, batches(False), device)
        if tta_flip:
            prob = (prob + _probabilities(model, batches(True), device)) / 2
    finally:
        bar.close()
    return prob


def predict_rows(model: nn.Module, images, norm: dict, device, batch_size: int, tta_flip: bool,
                 desc: str | None = None) -> np.ndarray:
    """predict_images for every row; under torchrun each rank predicts its part of the rows and the
    parts are gathered back in the original row order, on every rank."""
    part = distributed.rank_slice(len(images))
    return distributed.gather_rows(predict_images(model, images[part], norm, device, batch_size, tta_flip, desc))


def _train_network(cfg: DogsConfig, images: np.ndarray, labels: np.ndarray, train_index, valid_index,
                   seed: int, device, desc: str, state: Resume | None = None, device_images=None):
    """Train one fold's network. Under torchrun every rank trains on its part of each global batch
    (batch_size stays the global batch) and scores its part of the validation rows, the figures
    all-reduced. device_images: the cache on the device (device_cache.py), or None."""
    seed_everything(seed)
    model = models.build(cfg.arch, cfg.image_size, cfg.pretrained, cfg.drop_rate, cfg.width)
    norm = models.normalization(model, cfg.arch)
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
        prob = predict_images(net, valid_images, norm, device, cfg.eval_batch_size, tta_flip=False)
        if not distributed.active():
            return {"log_loss": log_loss(valid_labels, clipped(prob, 1e-6)),
                    "accuracy": accuracy(valid_labels, prob)}
        n = len(valid_labels)
        total, right, rows = distributed.all_reduce_sum([log_loss(valid_labels, clipped(prob, 1e-6)) * n if n else 0.0,
                                                         accuracy(valid_labels, prob) * n if n else 0.0, n])
        return {"log_loss": total / rows, "accuracy": right / rows}

    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    steps = (len(train_index) + cfg.batch_size - 1) // cfg.batch_size
    result = fit(model, batches, steps, loss_fn, evaluate, _settings(cfg), device, desc=desc, resume=state)
    model.load_state_dict(result.best_state)
    return model, norm, result


# --------------------------------------------------------------------------- recipe: features

class LinearHead(nn.Module):
    """Logistic regression (or any linear map) on pooled features: (B, D) -> (B, 2) logits."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, 2)

    def forward(self, x):
        return self.fc(x)


class MLPHead(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Dropout(drop), nn.Linear(dim, hidden), nn.GELU(),
                                 nn.Dropout(drop), nn.Linear(hidden, 2))

    def forward(self, x):
        return self.net(x)


class TailHead(nn.Module):
    """The backbone's blocks after `block` + its classifier, on cached activations."""

    def __init__(self, backbone: nn.Module, block: int, dim: int):
        super().__init__()
        self.tail = P.BlockTail(backbone, block)
        self.fc = nn.Linear(dim, 2)

    def forward(self, x):
        return self.fc(self.tail(x.float(), pre_logits=True))


def make_backbone(cfg: DogsConfig) -> nn.Module:
    """The frozen backbone without a classifier (num_classes=0), so its fingerprint depends
    only on the pretrained weights."""
    return P.create_backbone(cfg.arch, pretrained=cfg.pretrained, num_classes=0)


def also_backbone(item: str, where: str) -> tuple[str, str]:
    """(architecture, weights) of one `also` entry: a weights package's name, or ARCH=WEIGHTS."""
    if "=" in item:
        arch, weights = (part.strip() for part in item.split("=", 1))
        if arch and weights:
            return arch, weights
    elif item in P.PACKAGES:
        return P.PACKAGES[item][0], item
    raise UserError(f"{where}: also entry {item!r} is neither a weights package ({', '.join(P.PACKAGES)}) "
                    f"nor ARCH=WEIGHTS")


def make_backbones(cfg: DogsConfig) -> list[tuple[str, nn.Module]]:
    """(architecture, frozen backbone) of arch and of each `also` entry, in the order their
    features are concatenated."""
    extra = [also_backbone(item, "also") for item in cfg.also]
    return [(cfg.arch, make_backbone(cfg))] + [(arch, P.create_backbone(arch, pretrained=weights, num_classes=0))
                                              for arch, weights in extra]


def trainable_state(head: nn.Module, cfg: DogsConfig) -> dict:
    """What a fold checkpoint stores for a head: for tail, only the blocks after `block`, the
    head convolution and the classifier (the frozen part is rebuilt from the pretrained weights)."""
    state = head.state_dict()
    if cfg.head != "tail":
        return state
    keep = [f"tail.backbone.blocks.{i}." for i in range(cfg.block + 1, 64)]
    keep += ["tail.backbone.conv_head.", "tail.backbone.bn2.", "fc."]
    return {k: v for k, v in state.items() if k.startswith(tuple(keep))}


class PairHead(nn.Module):
    """An MLP head and a logistic-regression head on the same features; the mean of their logits.

    With the logistic head's logits (0, z), softmax of the mean gives sigmoid of the mean of the
    two heads' dog logits: an equal-weight blend in logit space, with nothing fitted on the
    fold's validation rows."""

    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.mlp = MLPHead(dim, hidden, drop)
        self.logreg = LinearHead(dim)

    def forward(self, x):
        return (self.mlp(x) + self.logreg(x)) / 2


class JoinedHead(nn.Module):
    """One head per backbone, each reading its own slice of the concatenated features; the mean of
    their logits (for two classes, sigmoid of the mean of their dog logits: an equal-weight blend in
    logit space, nothing fitted on a fold's validation rows)."""

    def __init__(self, heads: list[nn.Module], dims: list[int]):
        super().__init__()
        self.heads = nn.ModuleList(heads)
        self.bounds = np.cumsum([0, *dims]).tolist()

    def forward(self, x):
        parts = [head(x[:, a:b]) for head, a, b in zip(self.heads, self.bounds[:-1], self.bounds[1:])]
        return torch.stack(parts).mean(0)


def joined(cfg: DogsConfig) -> bool:
    return bool(cfg.also) and cfg.join == "logits"


def build_head(cfg: DogsConfig, dim: int, backbone: nn.Module | None, dims: list[int] | None = None) -> nn.Module:
    if joined(cfg):
        one = dataclasses.replace(cfg, also=[])
        return JoinedHead([build_head(one, d, backbone) for d in dims], dims)
    if cfg.head == "logreg":
        return LinearHead(dim)
    if cfg.head == "mlp":
        return MLPHead(dim, cfg.hidden, cfg.drop_rate)
    if cfg.head == "mlp+logreg":
        return PairHead(dim, cfg.hidden, cfg.drop_rate)
    return TailHead(copy.deepcopy(backbone), cfg.block, backbone.num_features)


def head_probabilities(head: nn.Module, feats: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Mean P(dog) over the views of (N, views, ...) features."""
    head.eval()
    n, views = feats.shape[:2]
    total = np.zeros(n)
    with torch.no_grad():
        for v in range(views):
            parts = []
            for start in range(0, n, batch_size):
                x = torch.from_numpy(np.array(feats[start:start + batch_size, v], dtype=np.float32))
                parts.append(torch.softmax(head(x), 1)[:, 1].double().numpy())
            total += np.concatenate(parts)
    return total / views


def _fit_logreg(x: np.ndarray, y: np.ndarray, C: float, seed: int) -> LinearHead:
    from sklearn.linear_model import LogisticRegression

    mean, std = x.mean(0), x.std(0) + 1e-6
    model = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    model.fit((x - mean) / std, y)
    w = model.coef_[0] / std
    b = model.intercept_[0] - float(np.sum(model.coef_[0] * mean / std))
    head = LinearHead(x.shape[1])
    with torch.no_grad():  # logits (0, z): softmax gives sigmoid(z) for dog
        head.fc.weight.zero_()
        head.fc.bias.zero_()
        head.fc.weight[1] = torch.from_numpy(w.astype(np.float32))
        head.fc.bias[1] = float(b)
    return head


def _fit_head(cfg: DogsConfig, feats: np.ndarray, labels: np.ndarray, train_index, valid_index,
              backbone: nn.Module | None, seed: int, device, desc: str, state: Resume | None = None,
              dims: list[int] | None = None):
    seed_everything(seed)
    views = feats.shape[1]
    if joined(cfg) and dims is not None and len(dims) > 1:  # a head per backbone, as their own runs fit them
        one, heads, bounds = dataclasses.replace(cfg, also=[]), [], np.cumsum([0, *dims])
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            part = np.ascontiguousarray(feats[..., a:b])
            head, result = _fit_head(one, part, labels, train_index, valid_index, backbone, seed, device,
                                     f"{desc} backbone {i + 1}/{len(dims)}", None)
            heads.append(head)
        return JoinedHead(heads, list(dims)), result
    if cfg.head == "logreg":
        x = np.asarray(feats[train_index], dtype=np.float32).reshape(len(train_index) * views, -1)
        y = np.repeat(labels[train_index], views)
        return _fit_logreg(x, y, cfg.C, seed), None
    if cfg.head == "mlp+logreg":
        mlp, result = _fit_head(dataclasses.replace(cfg, head="mlp"), feats, labels, train_index, valid_index,
                                backbone, seed, device, desc, state)
        linear, _ = _fit_head(dataclasses.replace(cfg, head="logreg"), feats, labels, train_index, valid_index,
                              backbone, seed, device, desc)
        pair = PairHead(feats.shape[-1], cfg.hidden, cfg.drop_rate)
        pair.mlp.load_state_dict(mlp.state_dict())
        pair.logreg.load_state_dict(linear.state_dict())
        return pair, result
    head = build_head(cfg, feats.shape[-1], backbone)
    if cfg.head == "tail":  # only the tail and classifier learn; BN statistics of the tail adapt
        for p in head.parameters():
            p.requires_grad_(False)
        for name, p in head.named_parameters():
            p.requires_grad_(name in trainable_state(head, cfg))
    train_feats = np.asarray(feats[train_index])
    train_labels = torch.from_numpy(labels[train_index].astype(np.int64))
    valid_feats = feats[valid_index]
    valid_labels = labels[valid_index]

    def train_batches(epoch: int):
        rng = np.random.default_rng(seed * 1000 + epoch)
        order = rng.permutation(len(train_index))
        view = rng.integers(0, views, len(train_index))  # a random view: flip as augmentation
        for start in range(0, len(order), cfg.batch_size):
            index = order[start:start + cfg.batch_size]
            x = torch.from_numpy(np.array(train_feats[index, view[index]], dtype=np.float32))
            yield x, train_labels[index]

    def evaluate(net):
        prob = head_probabilities(net, valid_feats, cfg.eval_batch_size)
        return {"log_loss": log_loss(valid_labels, clipped(prob, 1e-6)), "accuracy": accuracy(valid_labels, prob)}

    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    steps = (len(train_index) + cfg.batch_size - 1) // cfg.batch_size
    result = fit(head, train_batches, steps, loss_fn, evaluate, _settings(cfg), torch.device("cpu"), desc=desc,
                 resume=state)
    head.load_state_dict(result.best_state)
    return head, result


QUANTIZED = "backbone.int8.onnx"  # a run's INT8 network, beside its folds: predict needs the very same file


def feature_stage(cfg: DogsConfig, backbone: nn.Module, images: np.ndarray, fingerprint: str | None,
                  what: str, flip: bool | None = None, onnx_path: Path | None = None,
                  arch: str | None = None) -> np.ndarray:
    """What the head reads for these images: pooled features, or block activations (tail head),
    or pooled features derived from block activations (logreg/mlp with block >= 0).
    flip: the flipped view too (default tta_flip); onnx_path: the network to run (quantize int8);
    arch: the backbone's architecture (default cfg.arch; an `also` backbone's otherwise)."""
    root = paths.data_dir(NAME) / "features" if fingerprint else None
    feats, folder = features.backbone_features(backbone, arch or cfg.arch, images, cfg.image_size, cfg.block,
                                               cfg.tta_flip if flip is None else flip, fingerprint or "", root,
                                               what, onnx_path=onnx_path)
    if cfg.block >= 0 and cfg.head != "tail":
        feats = features.pooled_from_block(backbone, feats, cfg.block, folder=folder)
    return feats


def all_features(cfg: DogsConfig, backbones: list[tuple[str, nn.Module]], images: np.ndarray,
                 fingerprint: str | None, what: str, flip: bool | None = None,
                 onnx_path: Path | None = None) -> np.ndarray:
    """feature_stage of each backbone (each its own cached stage), concatenated along the features
    (the dims of each backbone's part are feature_dims(...))."""
    parts = [feature_stage(cfg, backbone, images, fingerprint, f"{what} ({arch})" if len(backbones) > 1 else what,
                           flip, onnx_path, arch) for arch, backbone in backbones]
    return parts[0] if len(parts) == 1 else np.concatenate([np.asarray(part) for part in parts], axis=-1)


def feature_dims(backbones: list[tuple[str, nn.Module]]) -> list[int]:
    return [int(backbone.num_features) for _, backbone in backbones]


def quantized_network(cfg: DogsConfig, backbone: nn.Module, train_images: np.ndarray, run_dir: Path) -> Path:
    """The INT8 network (quantize int8), calibrated on evenly spaced training images, cached with the
    features and copied into the run (predict on a new folder reads it there)."""
    rows = P.calibration_rows(len(train_images))
    cached = P.quantize_onnx(backbone, cfg.image_size, paths.data_dir(NAME) / "features" / "onnx",
                             np.asarray(train_images[rows]))
    target = run_dir / QUANTIZED
    if not target.is_file() or P.file_fingerprint(target) != P.file_fingerprint(cached):
        atomic.write_bytes(target, cached.read_bytes())
    return target


# --------------------------------------------------------------------------- k-fold

def _meta(cfg: DogsConfig, fold: int, norm: dict, extra: dict) -> dict:
    return {"competition": NAME, "config": configs.as_dict(cfg), "fold": fold, "recipe": cfg.recipe,
            "arch": cfg.arch, "image_size": cfg.image_size, "normalization": norm, **extra}


def train(cfg: DogsConfig, source: Path, run_name: str | None, device_spec: str = "auto",
          only_folds: list[int] | None = None, workers: int = 2,
          restart: bool = False) -> dict:
    """k-fold training; an interrupted run resumes when rerun (finished folds kept, the others go on
    from their last epoch); restart starts over (resume.py)."""
    started = time.perf_counter()
    if cfg.recipe == "train":
        device = distributed.setup(device_spec)  # under torchrun: join the process group, cuda:LOCAL_RANK or cpu
    else:
        distributed.refuse_launched("recipe features fits small heads on cached features")
        device = resolve(device_spec)
    with distributed.main_first():  # one process per node builds the caches, the others reuse them
        train_cache, test_cache = prepare_caches(source, cfg.image_size, workers)
    stages = {"prepare_s": round(time.perf_counter() - started, 1)}  # seconds per stage of this call (run.json)
    for line in (data.summary(train_cache), data.summary(test_cache) if test_cache else "no test images"):
        print(line)
    data_print = {"train_fingerprint": train_cache.manifest["fingerprint"],
                  "test_fingerprint": test_cache.manifest["fingerprint"] if test_cache else None}
    run = distributed.from_main(lambda: resume.open_run(NAME, run_name, cfg, data_print, restart=restart))
    run_dir = run.path
    labels = train_cache.labels.astype(np.int64)
    fold_of_row = folding.make_folds(labels, cfg.folds, cfg.seed, "labels")
    if distributed.is_main():
        folding.save_folds(run_dir / "folds.csv", train_cache.keys, fold_of_row)

    if cfg.recipe == "train":
        images = np.asarray(train_cache.images)  # small sizes: the whole cache fits in memory
        test_images = np.asarray(test_cache.images) if test_cache is not None else None
        stage_seconds = 0.0
        device_images = device_test_images = None
        nbytes = images.nbytes + (test_images.nbytes if test_images is not None else 0)
        if device_cache.wanted(cfg.gpu_cache, device, nbytes):  # predictions (and flip-only training) from there
            device_images = device_cache.to_device(images, device)
            device_test_images = device_cache.to_device(test_images, device) if test_images is not None else None
    else:
        t0 = time.perf_counter()
        backbones = make_backbones(cfg)
        backbone = backbones[0][1]
        norm = models.normalization(backbone, cfg.arch)
        onnx_path, extra_meta = None, {}
        if cfg.also:
            extra_meta["also_sha"] = [P.state_fingerprint(b) for _, b in backbones[1:]]
            extra_meta["feature_dims"] = feature_dims(backbones)
        if cfg.quantize == "int8":
            onnx_path = quantized_network(cfg, backbone, train_cache.images, run_dir)
            extra_meta["onnx_sha"] = P.file_fingerprint(onnx_path)
            stages["quantize_s"] = round(time.perf_counter() - t0, 1)
        t1 = time.perf_counter()
        train_feats = all_features(cfg, backbones, train_cache.images, train_cache.manifest["fingerprint"], "train",
                                   flip=cfg.tta_flip and cfg.train_flip, onnx_path=onnx_path)
        stages["features_train_s"] = round(time.perf_counter() - t1, 1)
        t1 = time.perf_counter()
        test_feats = (all_features(cfg, backbones, test_cache.images, test_cache.manifest["fingerprint"], "test",
                                   onnx_path=onnx_path)
                      if test_cache is not None else None)
        stages["features_test_s"] = round(time.perf_counter() - t1, 1)
        stage_seconds = time.perf_counter() - t0
        backbone_sha = P.state_fingerprint(backbone)

    def fit_fold(fold: int, train_index: np.ndarray, valid_index: np.ndarray) -> kfold.FoldOutput:
        seed = cfg.seed + fold
        fold_started = time.perf_counter()
        state = Resume(run_dir / f"fold{fold}" / "last", f"fold {fold} seed {seed}", {"fold": fold})
        if cfg.recipe == "train":
            model, norm_, result = _train_network(cfg, images, labels, train_index, valid_index, seed, device,
                                                  fold_label(fold, cfg.folds), state, device_images)
            source_images = device_images if device_images is not None else images
            valid = predict_rows(model, source_images[valid_index], norm_, device, cfg.eval_batch_size,
                                 cfg.tta_flip, f"predict {fold_label(fold, cfg.folds)} (valid)")
            test = (predict_rows(model, device_test_images if device_test_images is not None else test_images,
                                 norm_, device, cfg.eval_batch_size, cfg.tta_flip,
                                 f"predict {fold_label(fold, cfg.folds)} (test)")
                    if test_images is not None else None)
            state, extra = model.state_dict(), {}
        else:
            model, result = _fit_head(cfg, train_feats, labels, train_index, valid_index, backbone, seed, device,
                                      fold_label(fold, cfg.folds), None if joined(cfg) else state,
                                      feature_dims(backbones))
            norm_ = norm
            valid = head_probabilities(model, train_feats[valid_index])
            test = head_probabilities(model, test_feats) if test_feats is not None else None
            state = trainable_state(model, cfg)
            extra = {"backbone_sha": backbone_sha, "feature_dim": int(train_feats.shape[-1]), **extra_meta}
        history = result.history if result is not None else []
        best_epoch = result.best_epoch if result is not None else 0
        if distributed.is_main():
            checkpoint.save(run_dir / f"fold{fold}", state,
                            _meta(cfg, fold, norm_, {**extra, "best_epoch": best_epoch, "history": history}))
        return kfold.FoldOutput(valid, test, {"best_epoch": best_epoch,
                                              "seconds": round(time.perf_counter() - fold_started, 1)})

    t_folds = time.perf_counter()
    result = kfold.run(fold_of_row, fit_fold, lambda index, prob: scores(labels[index], prob, cfg.clip),
                       METRIC, only_folds, store=run_dir)
    stages["folds_s"] = round(time.perf_counter() - t_folds, 1)
    if not result.assembled:  # a rank > 0, or other processes still train folds of this run
        if result.pending:
            print(kfold.pending_message(run_dir, result))
        resume.release(run_dir)
        return {"row": None, "result": result, "run_dir": run_dir}
    resume.refresh(run)
    scored = ~np.isnan(result.oof_prediction)
    scan = clip_scan(labels[scored], result.oof_prediction[scored])
    result.cv.update(scan)
    oof = pd.DataFrame({"key": train_cache.keys, ID: train_cache.ids, TARGET: labels, "fold": fold_of_row,
                        "oof_p_dog": result.oof_prediction})
    atomic.write_text(run_dir / "oof.csv", oof.to_csv(index=False))
    if test_cache is not None and result.test_prediction is not None:
        frame = submission_frame(test_cache.ids, result.test_prediction, cfg.clip)
        write_submission(frame, run_dir / "test_predictions.csv", test_cache.ids)
    wall = time.perf_counter() - started + result.resumed_seconds  # a resumed run: its earlier folds too
    folds_done = [s["fold"] for s in result.fold_scores]
    row = runs.record(run_dir, competition=NAME, config=cfg, result=result, metric=METRIC,
                      greater_is_better=False, wall_s=wall,
                      device=str(device) + (f" x{distributed.world_size()} ({distributed.backend()})"
                                            if distributed.active() else ""),
                      data={"train": str(source), **data_print,
                            "test_images": int(len(test_cache.ids)) if test_cache else 0},
                      extra={"accuracy": result.cv["accuracy"], "roc_auc": result.cv["roc_auc"],
                             "feature_stage_s": round(stage_seconds, 1), "stages": stages,
                             "resumed_folds": result.resumed_folds},
                      register=run.recorded_folds != folds_done)
    resume.mark_recorded(run, folds_done)
    resume.release(run_dir)
    return {"row": row, "result": result, "run_dir": run_dir}


# --------------------------------------------------------------------------- predict

def _load_folds(run_dir: Path) -> list[tuple[dict, dict]]:
    folders = kfold.finished_fold_dirs(run_dir)
    if not folders:
        raise UserError(f"{run_dir}: no fold checkpoints found")
    loaded = []
    for folder in folders:
        state, meta = checkpoint.load(folder)
        if meta.get("competition") != NAME:
            raise UserError(f"{folder}: checkpoint is for {meta.get('competition')!r}, not {NAME}")
        differs = loaded and configs.first_difference(loaded[0][1].get("config", {}), meta.get("config", {}))
        if differs:
            raise UserError(f"{folder}: checkpoint from another config than {folders[0].name} ({differs}); "
                            f"a run's folds must share one config")
        loaded.append((state, meta))
    return loaded


def _load_into(module: nn.Module, state: dict, where: str, strict: bool = True) -> None:
    problem = checkpoint.mismatch(module, state, strict)
    if problem is not None:
        raise UserError(f"{where}: weights do not fit the model in its config ({problem})")
    try:
        missing, unexpected = module.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        raise UserError(f"{where}: weights do not fit the model in its config ({str(exc).splitlines()[0]})") from None
    if unexpected:
        raise UserError(f"{where}: unexpected weight {unexpected[0]!r}")


def predict_folder(run_dir: Path, test_dir: Path, device_spec: str = "auto") -> pd.DataFrame:
    """Fold-averaged P(dog) for every N.jpg in test_dir from the run's checkpoints, clipped,
    sorted by id."""
    device = resolve(device_spec)
    loaded = _load_folds(run_dir)
    meta0 = loaded[0][1]
    cfg = configs.build(DogsConfig, meta0["config"], str(run_dir / "fold0" / checkpoint.META))
    ids, images = read_test_folder(test_dir, cfg.image_size)
    total = np.zeros(len(ids))
    if cfg.recipe == "train":
        for state, meta in loaded:
            model = models.build(cfg.arch, cfg.image_size, False, cfg.drop_rate, cfg.width)
            _load_into(model, state, f"{run_dir}/fold{meta['fold']}")
            model.to(device)
            total += predict_images(model, images, meta["normalization"], device, cfg.eval_batch_size, cfg.tta_flip,
                                    f"predict {fold_label(meta['fold'], cfg.folds)}")
    else:
        total += sum(fold_head_probabilities(run_dir, cfg, loaded, images, "test"))
    return submission_frame(ids, total / len(loaded), cfg.clip)


def fold_head_probabilities(run_dir: Path, cfg: DogsConfig, loaded: list[tuple[dict, dict]], images: np.ndarray,
                            what: str) -> list[np.ndarray]:
    """P(dog) of each fold's head (recipe features) for uint8 images at cfg.image_size: the features
    come from the run's own backbones (their weights checked against the run's fingerprints) and,
    with quantize int8, from the INT8 network the run carries."""
    meta0 = loaded[0][1]
    backbones = make_backbones(cfg)
    trained = [meta0["backbone_sha"], *meta0.get("also_sha", [])]
    for (_, net), sha, weights in zip(backbones, trained, [cfg.pretrained, *cfg.also]):
        if P.state_fingerprint(net) != sha:
            raise UserError(f"{run_dir}: the pretrained weights {weights!r} here differ from the ones "
                            f"the run was trained with (fingerprint {sha})")
    onnx_path = None
    if cfg.quantize == "int8":
        onnx_path = run_dir / QUANTIZED
        if not onnx_path.is_file():
            raise UserError(f"{onnx_path}: missing; a run with quantize int8 predicts with the network it "
                            f"was trained with")
        if P.file_fingerprint(onnx_path) != meta0.get("onnx_sha"):
            raise UserError(f"{onnx_path}: differs from the INT8 network the run was trained with "
                            f"(fingerprint {meta0.get('onnx_sha')})")
    feats = all_features(cfg, backbones, images, None, what, onnx_path=onnx_path)
    probabilities = []
    for state, meta in loaded:
        head = build_head(cfg, int(meta["feature_dim"]), backbones[0][1], meta.get("feature_dims"))
        _load_into(head, state, f"{run_dir}/fold{meta['fold']}", strict=cfg.head != "tail")
        probabilities.append(head_probabilities(head, feats))
    return probabilities


def submission_frame(ids, prob, clip: float) -> pd.DataFrame:
    frame = pd.DataFrame({ID: np.asarray(ids, dtype=np.int64), TARGET: clipped(prob, clip)})
    return frame.sort_values(ID, kind="stable").reset_index(drop=True)


def submission_rules(expected_ids) -> dict:
    return SUBMISSION.rules(expected_ids)


def write_submission(frame: pd.DataFrame, path: Path, expected_ids) -> Path:
    return SUBMISSION.write(frame, path, expected_ids)
