"""Real images laid out as a Kaggle competition: scikit-learn's handwritten digits (1,797 scans,
8x8 grey, 10 classes; shipped with scikit-learn, no download).

`write(folder)` writes labels.csv (id,label), train/<id>.png, test/<id>.png and sample_submission.csv
(id,label) for a seeded stratified split, and keeps the test labels aside in
<folder>-answers.csv (beside the folder, not in it); `spec(...)` is its images spec (hflip: false:
a mirrored digit is another glyph). Ids are integers 1..N in a shuffled order, as Kaggle's CIFAR-10's.

    .venv/bin/python -m pipelines.images.digits measure [--out DIR] [--configs cnn effnet-lite0-head]
        [--blend weights ...]

trains each config of configs/images/ with 5-fold CV in a scratch project home, then scores the
fold-averaged test predictions against the held-out labels, and prints one table row per config
(the table in task.config_name's docstring); with --blend, the configs' runs blended as well.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

NAME = "digits"


def spec(name: str = NAME) -> dict:
    return {"name": name, "kind": "images", "id": "id", "target": "label", "task": "multiclass",
            "metric": "accuracy", "submission": "label", "labels": "labels.csv", "train_images": "train",
            "test_images": "test", "hflip": False,
            "description": "scikit-learn's handwritten digits laid out as a Kaggle competition"}


def write(folder: str | Path, test_fraction: float = 0.3, seed: int = 0, every: int = 1) -> dict:
    """The competition's files in `folder`; returns {"folder", "spec", "answers"} paths. every=k keeps
    every k-th digit (a smaller competition for quick tests)."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    folder = Path(folder)
    digits = load_digits()
    pixels = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[::every]
    labels = digits.target[::every]
    rng = np.random.default_rng(seed)
    ids = rng.permutation(len(labels)) + 1
    train_rows, test_rows = train_test_split(np.arange(len(labels)), test_size=test_fraction, random_state=seed,
                                             stratify=labels)
    for name in ("train", "test"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    for rows, name in ((train_rows, "train"), (test_rows, "test")):
        for row in rows:
            Image.fromarray(pixels[row], "L").save(folder / name / f"{ids[row]}.png")
    pd.DataFrame({"id": ids[train_rows], "label": labels[train_rows]}).to_csv(folder / "labels.csv", index=False)
    test_order = test_rows[np.argsort(ids[test_rows])]
    pd.DataFrame({"id": ids[test_order], "label": 0}).to_csv(folder / "sample_submission.csv", index=False)
    answers = folder.parent / f"{folder.name}-answers.csv"
    pd.DataFrame({"id": ids[test_order], "label": labels[test_order]}).to_csv(answers, index=False)
    spec_path = folder.parent / f"{folder.name}.yaml"
    spec_path.write_text(yaml.safe_dump(spec()))
    return {"folder": folder, "spec": spec_path, "answers": answers}


def held_out(run_dir: Path, answers: Path) -> dict:
    """Accuracy and log loss of a run's test_predictions.csv against the held-out labels."""
    from ..tabular import metrics

    predictions = pd.read_csv(run_dir / "test_predictions.csv", dtype={"id": str})
    truth = pd.read_csv(answers, dtype={"id": str, "label": str}).set_index("id").loc[predictions["id"], "label"]
    classes = list(predictions.columns[1:])
    index = truth.map({c: i for i, c in enumerate(classes)}).to_numpy()
    prob = predictions[classes].to_numpy(float)
    return {"accuracy": metrics.accuracy(index, prob), "logloss": metrics.logloss(index, prob)}


def measure(out: Path, config_names: list[str], overrides: dict, folds: str | None = None,
            blends: tuple[str, ...] = ()) -> list[dict]:
    os.environ["PIPELINES_HOME"] = str(out / "home")
    from .spec import load as load_spec
    from . import task

    laid = write(out / "data" / NAME)
    comp = load_spec(laid["spec"])
    rows = []
    for name in config_names:
        cfg = task.load_config(comp, name, overrides)
        started = time.perf_counter()
        result = task.train(comp, cfg, laid["folder"], f"measure-{name}", "cpu", restart=True,
                            only_folds=[int(f) for f in folds.split(",")] if folds else None)
        cv = result["result"].cv
        scored = held_out(result["run_dir"], laid["answers"])
        rows.append({"config": name, "cv_accuracy": cv["accuracy"], "cv_logloss": cv["logloss"],
                     "held_out_accuracy": scored["accuracy"], "held_out_logloss": scored["logloss"],
                     "wall_s": time.perf_counter() - started})
        print(f"| {name} | {cv['accuracy']:.4f} | {cv['logloss']:.4f} | {scored['accuracy']:.4f} | "
              f"{scored['logloss']:.4f} | {rows[-1]['wall_s']:.0f} s |", flush=True)
    for method in blends:  # the configs' runs blended (log class probabilities, nested CV)
        from .. import blending as blend, competition

        started = time.perf_counter()
        made = blend.blend(competition.load(str(laid["spec"])).name, [f"measure-{name}" for name in config_names], method,
                           f"measure-blend-{method}", restart=True)
        cv, scored = made["result"].cv, held_out(made["run_dir"], laid["answers"])
        label = f"blend {method} ({' + '.join(config_names)})"
        rows.append({"config": label, "cv_accuracy": cv["accuracy"], "cv_logloss": cv["logloss"],
                     "held_out_accuracy": scored["accuracy"], "held_out_logloss": scored["logloss"],
                     "wall_s": time.perf_counter() - started})
        print(f"| {label} | {cv['accuracy']:.4f} | {cv['logloss']:.4f} | {scored['accuracy']:.4f} | "
              f"{scored['logloss']:.4f} | {rows[-1]['wall_s']:.0f} s |", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    from ..config import parse_overrides
    from ..errors import UserError

    parser = argparse.ArgumentParser(prog="python -m pipelines.images.digits", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    lay = sub.add_parser("write", help="write the competition's files")
    lay.add_argument("folder")
    run = sub.add_parser("measure", help="train every config, print CV and held-out scores")
    run.add_argument("--out", default="/tmp/images-digits-measure")
    run.add_argument("--configs", nargs="+", default=["cnn", "effnet-lite0-head"])
    run.add_argument("--set", action="append", default=[], help="key=value for every config")
    run.add_argument("--folds", default=None, help="only these folds, e.g. 0")
    run.add_argument("--blend", nargs="*", default=[], choices=["mean", "weights", "stack"],
                     help="also blend the configs' runs with these methods")
    args = parser.parse_args(argv)
    try:
        if args.verb == "write":
            print(write(Path(args.folder)))
            return 0
        print("| config | CV accuracy | CV log loss | held-out accuracy | held-out log loss | wall |")
        print("|---|---|---|---|---|---|")
        # one CPU thread unless told otherwise: on the project's 2 busy cores it is the fastest
        measure(Path(args.out), args.configs, {"threads": 1, **parse_overrides(args.set)}, args.folds,
                tuple(args.blend))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
