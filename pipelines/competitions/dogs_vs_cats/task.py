"""Dogs vs. Cats: k-fold training (end to end, or a head on frozen pretrained features),
prediction from fold checkpoints, submission.

Two recipes share the engine, the checkpoints and the run record:
  * ``recipe: train``: the whole network (LeNet, modern LeNet, any timm architecture from
    scratch or pretrained) trained by training.fit on augmented batches of the uint8 cache, by the
    image engine's fitting.py (data-parallel under torchrun, the GPU image cache), as for every
    image competition.
  * ``recipe: features``: a pretrained backbone stays frozen; its features are computed once
    as a stage (flip TTA included) and a head is fitted per fold: logistic regression, a small
    MLP, both, or ``tail`` (the backbone's blocks after ``block``, fine-tuned on the cached
    activations, plus the classifier). The heads, their fitting, the backbones (`also`, INT8) and
    the feature stage are the image engine's (pipelines/images/heads.py, backbones.py,
    features.py), as every image competition uses them; this module reads P(dog), class 1.
Predictions are P(dog), averaged over the flip views and the folds, clipped to
[clip, 1 - clip] in submissions (Kaggle's log loss punishes a confident mistake without bound).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from ... import atomic, checkpoint, config as configs, distributed, folds as folding, hints, kfold, paths, resume, runs
from ...device import resolve
from ...errors import UserError
from ...metrics import accuracy, log_loss, roc_auc
from ...progress import bar as progress_bar, fold_label
from ...training import Resume, TrainSettings, quiet
from ...images import (augment, backbones, device_cache, features, fitting, heads, onnx_export, weights,
                       networks as models)
from ...images.task import ImageConfig, family_keys, threads  # the keys each recipe reads: the engine's
from . import data
from .competition import DOGS_VS_CATS, ID, METRIC, NAME, SUBMISSION, TARGET

DEFAULT_CONFIG = DOGS_VS_CATS.default_config  # competition.py; its figures: docs/results.md
SUBMISSION_COLUMNS = list(SUBMISSION.columns)
CLIP_GRID = (0.0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05)


@dataclass
class DogsConfig(ImageConfig):
    """The image engine's config (pipelines/images/task.py) with Dogs vs. Cats' own defaults."""
    arch: str = configs.option("lenet", help="lenet, lenet-modern or any timm model name")
    epochs: int = configs.option(10, min=1)
    # best: the weights of the epoch with the best validation log loss, chosen on the rows the fold
    # then scores (optimistic); last: those after the last epoch, what the CV and the test both get
    keep: str = configs.option("best", choices=["best", "last"])
    clip: float = configs.option(0.005, min=0.0, max=0.49, help="P(dog) kept in [clip, 1 - clip] in the CV "
                                                                "and the submission")


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
        # raises the UserError with a suggestion for an unknown `also` architecture
        backbones.check_stage(cfg, where, models.known, lambda arch: models.build(arch, cfg.image_size))
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


def predict_images(model: nn.Module, images: np.ndarray, norm: dict, device, batch_size: int,
                   tta_flip: bool, desc: str | None = None) -> np.ndarray:
    """P(dog) for uint8 images (N, S, S, 3), or the device cache; with tta_flip the mean over the image
    and its mirror (the image engine's fitting.predict_images)."""
    return fitting.predict_images(model, images, norm, device, batch_size, tta_flip, desc,
                                  fitting.positive_probability)


def _figures(labels: np.ndarray, dog: np.ndarray) -> dict:
    """A trained network's or head's validation figures each epoch, from P(dog)."""
    return {"log_loss": log_loss(labels, clipped(dog, 1e-6)), "accuracy": accuracy(labels, dog)}


# --------------------------------------------------------------------------- recipe: features

QUANTIZED = onnx_export.QUANTIZED  # a run's INT8 network, beside its folds


def features_root() -> Path:
    """Where the feature stages (and the INT8 networks) of Dogs vs. Cats are cached."""
    return paths.data_dir(NAME) / "features"


def p_dog(head: nn.Module, feats: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """A head's P(dog), the mean over the views of (N, views, ...) features."""
    return heads.head_probabilities(head, feats, batch_size)[:, 1]


def _head_figures(labels: np.ndarray, prob: np.ndarray) -> dict:
    """A trained head's validation figures each epoch (heads.fit_head), from (N, 2) probabilities."""
    return _figures(labels, prob[:, 1])


# --------------------------------------------------------------------------- k-fold

def _meta(cfg: DogsConfig, fold: int, norm: dict, extra: dict) -> dict:
    return {"competition": NAME, "config": configs.as_dict(cfg), "fold": fold, "recipe": cfg.recipe,
            "arch": cfg.arch, "image_size": cfg.image_size, "normalization": norm, **extra}


def train(cfg: DogsConfig, source: Path, run_name: str | None, device_spec: str = "auto",
          only_folds: list[int] | None = None, workers: int = 2,
          restart: bool = False) -> dict:
    """k-fold training; an interrupted run resumes when rerun (finished folds kept, the others go on
    from their last epoch); restart starts over (resume.py). With `threads`, torch's CPU threads."""
    with threads(cfg):
        return _train(cfg, source, run_name, device_spec, only_folds, workers, restart)


def _train(cfg: DogsConfig, source: Path, run_name: str | None, device_spec: str, only_folds: list[int] | None,
           workers: int, restart: bool) -> dict:
    started = time.perf_counter()
    device = fitting.start(cfg, device_spec)  # recipe train under torchrun: this process's part (fitting.py)
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
        # predictions (and flip-only training) from the cache on the device, when gpu_cache wants it
        device_images, device_test_images = device_cache.place(cfg.gpu_cache, device, images, test_images)
    else:
        t0 = time.perf_counter()
        nets = backbones.make_backbones(cfg)
        backbone = nets[0][1]
        norm = models.normalization(backbone, cfg.arch)
        onnx_path, extra_meta = None, {}
        if cfg.also:
            extra_meta["also_sha"] = [weights.state_fingerprint(b) for _, b in nets[1:]]
            extra_meta["feature_dims"] = backbones.feature_dims(nets)
        if cfg.quantize == "int8":  # cached with the features, and copied into the run (predict reads it there)
            onnx_path = onnx_export.carry_int8(onnx_export.int8_network(backbone, cfg.image_size, train_cache.images,
                                                                    features_root() / "onnx"), run_dir)
            extra_meta["onnx_sha"] = onnx_export.file_fingerprint(onnx_path)
            stages["quantize_s"] = round(time.perf_counter() - t0, 1)
        t1 = time.perf_counter()
        train_feats = features.stages(cfg, nets, train_cache.images, train_cache.manifest["fingerprint"],
                                      features_root(), "train", cfg.tta_flip and cfg.train_flip, onnx_path)
        stages["features_train_s"] = round(time.perf_counter() - t1, 1)
        t1 = time.perf_counter()
        test_feats = (features.stages(cfg, nets, test_cache.images, test_cache.manifest["fingerprint"],
                                      features_root(), "test", cfg.tta_flip, onnx_path)
                      if test_cache is not None else None)
        stages["features_test_s"] = round(time.perf_counter() - t1, 1)
        stage_seconds = time.perf_counter() - t0
        backbone_sha = weights.state_fingerprint(backbone)

    def fit_fold(fold: int, train_index: np.ndarray, valid_index: np.ndarray) -> kfold.FoldOutput:
        seed = folding.fold_seed(cfg.seed, fold)
        fold_started = time.perf_counter()
        state = Resume(run_dir / f"fold{fold}" / "last", f"fold {fold} seed {seed}", {"fold": fold})
        if cfg.recipe == "train":
            model, norm_, result = fitting.train_network(  # data-parallel under torchrun (fitting.py)
                cfg, lambda: models.build(cfg.arch, cfg.image_size, cfg.pretrained, cfg.drop_rate, cfg.width),
                images, labels, train_index, valid_index, seed, device, fold_label(fold, cfg.folds), _settings(cfg),
                _figures, ("log_loss", "accuracy"), fitting.positive_probability, state, device_images)
            source_images = device_images if device_images is not None else images
            valid = fitting.predict_rows(model, source_images[valid_index], norm_, device, cfg.eval_batch_size,
                                         cfg.tta_flip, f"predict {fold_label(fold, cfg.folds)} (valid)",
                                         fitting.positive_probability)
            test = (fitting.predict_rows(model, device_test_images if device_test_images is not None else test_images,
                                         norm_, device, cfg.eval_batch_size, cfg.tta_flip,
                                         f"predict {fold_label(fold, cfg.folds)} (test)", fitting.positive_probability)
                    if test_images is not None else None)
            state, extra = model.state_dict(), {}
        else:
            model, result = heads.fit_head(cfg, train_feats, labels, 2, train_index, valid_index, seed,
                                           fold_label(fold, cfg.folds), _settings(cfg), _head_figures, state,
                                           backbone, backbones.feature_dims(nets))
            norm_ = norm
            valid = p_dog(model, train_feats[valid_index])
            test = p_dog(model, test_feats) if test_feats is not None else None
            state = heads.trainable_state(model, cfg)
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
                      device=distributed.describe(device),
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
    with threads(cfg):  # the count the run trained with: it decides the last bits of the sums
        return _predict_folder(run_dir, test_dir, device, loaded, cfg)


def _predict_folder(run_dir: Path, test_dir: Path, device, loaded: list[tuple[dict, dict]],
                    cfg: DogsConfig) -> pd.DataFrame:
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
    nets = backbones.make_backbones(cfg)
    backbones.check_weights(cfg, nets, meta0, run_dir)
    onnx_path = onnx_export.carried_int8(run_dir, meta0.get("onnx_sha")) if cfg.quantize == "int8" else None
    feats = features.stages(cfg, nets, images, None, None, what, cfg.tta_flip, onnx_path)
    probabilities = []
    for state, meta in loaded:
        head = heads.build_head(cfg, int(meta["feature_dim"]), 2, nets[0][1], meta.get("feature_dims"))
        _load_into(head, state, f"{run_dir}/fold{meta['fold']}", strict=cfg.head != "tail")
        probabilities.append(p_dog(head, feats))
    return probabilities


def submission_frame(ids, prob, clip: float) -> pd.DataFrame:
    frame = pd.DataFrame({ID: np.asarray(ids, dtype=np.int64), TARGET: clipped(prob, clip)})
    return frame.sort_values(ID, kind="stable").reset_index(drop=True)


def submission_rules(expected_ids) -> dict:
    return SUBMISSION.rules(expected_ids)


def write_submission(frame: pd.DataFrame, path: Path, expected_ids) -> Path:
    return SUBMISSION.write(frame, path, expected_ids)
