"""Dogs vs. Cats verbs for the command line."""

from __future__ import annotations

from ... import config as configs, hints, report, runs
from ...kfold import parse_fold_list
from ...images import backbones, networks as models
from . import data, task


def _config(args) -> task.DogsConfig:
    return task.load_config(getattr(args, "config", None) or task.DEFAULT_CONFIG,
                            configs.parse_overrides(getattr(args, "set", [])))


def prepare(args) -> int:
    """Scan the Kaggle folders (or zips), build or reuse the image caches at the config's size."""
    cfg = _config(args)
    source = task.data_source(args.data)
    train_cache, test_cache = task.prepare_caches(source, cfg.image_size, args.workers)
    for cache in (train_cache, test_cache):
        if cache is None:
            print("test: no test1/ folder (or test1.zip) found; training will not predict a test set")
            continue
        print(data.summary(cache))
        state = f"rebuilt ({cache.reason})" if cache.rebuilt else "reused (sources unchanged)"
        print(f"  cache {cache.path}: {state}")
    return 0


def train(args) -> int:
    cfg = _config(args)
    only = parse_fold_list(args.folds, cfg.folds) if args.folds else None
    out = task.train(cfg, task.data_source(args.data), args.name, args.device, only_folds=only,
                     restart=args.restart)
    if out["row"] is None:  # a rank > 0 of a torchrun, or other processes still train folds of the run
        return 0
    result = out["result"]
    for line in runs.summary_lines(out["row"], result):
        print(line)
    cv = result.cv
    print(f"CV accuracy {cv['accuracy']:.4f}, ROC AUC {cv['roc_auc']:.5f}; best clip on OOF: {cv['best_clip']} "
          f"(log loss {cv['log_loss_by_clip'][str(cv['best_clip'])]:.5f}; config clip {cfg.clip})")
    report.write_after_training(out["run_dir"])
    if (out["run_dir"] / "test_predictions.csv").exists():
        print(f"next: {hints.submit(task.NAME, out['run_dir'].name)}")
    return 0


def submit(args) -> int:
    run_dir, run, frame = runs.stored_test_predictions(
        task.NAME, args.run, f"no test1/ folder when it trained?; use "
                             f"`{hints.pipelines(f'predict {task.NAME} --run {args.run} --test DIR --out FILE')}`")
    out = runs.submission_path(task.NAME, run_dir, args.out)
    expected = frame[task.ID] if frame[task.ID].is_unique else frame[task.ID].unique()
    task.write_submission(frame, out, expected)
    print(f"wrote {out} ({len(frame)} rows, CV {run['metric']} {run['cv']:.5f}, "
          f"accuracy {run.get('accuracy', float('nan')):.4f})")
    return 0


def summary(args) -> int:
    """Each layer's output shape and parameter count for one input, then the totals."""
    cfg = _config(args)
    if cfg.recipe == "features":
        model = backbones.make_backbone(cfg.arch, cfg.pretrained)
        title = f"{cfg.arch} (frozen, {cfg.pretrained}) -> {cfg.head} head"
    else:
        model = models.build(cfg.arch, cfg.image_size, False, cfg.drop_rate, cfg.width)
        title = cfg.arch
    rows, total, trainable = models.layer_summary(model, cfg.image_size)
    print(f"{title}: input 1x3x{cfg.image_size}x{cfg.image_size}")
    width = max(len(name) for name, _, _ in rows)
    for name, shape, params in rows:
        print(f"{name:<{width}}  output {'x'.join(map(str, shape)):<14} params {params:,}")
    print(f"total parameters: {total:,} (trainable {trainable:,})")
    return 0
