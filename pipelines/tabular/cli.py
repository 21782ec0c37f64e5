"""The verbs of a spec competition, with House Prices' signatures (verb(args) -> exit status).

`SpecVerbs(spec)` is what a registry maps a spec to: its methods prepare, train, predict and
submit take the argparse.Namespace of pipelines/cli.py (missing options fall back to their
defaults, so tests can pass a short Namespace).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import atomic, config as configs, paths, report, runs
from ..errors import UserError
from ..kfold import parse_fold_list
from . import data, task
from .spec import Spec, load as load_spec

COPIED = (data.TRAIN, data.TEST, data.SAMPLE)


def _option(args, name: str, default=None):
    value = getattr(args, name, default)
    return default if value is None else value


class SpecVerbs:
    def __init__(self, spec: Spec):
        self.spec = spec

    @classmethod
    def from_file(cls, path: str | Path) -> "SpecVerbs":
        return cls(load_spec(path))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def verbs(self) -> dict:
        """verb -> handler(args) -> exit status, as a registry takes them."""
        return {"prepare": self.prepare, "train": self.train, "predict": self.predict, "submit": self.submit}

    def data_dir(self, given: str | None) -> Path:
        folder = Path(given) if given else paths.data_dir(self.spec.name)
        if not (folder / data.TRAIN).exists():
            if given:
                raise UserError(f"{folder}: no {data.TRAIN} there (expected {self.spec.name}'s files in Kaggle's "
                                f"layout)")
            how = f"`python -m pipelines prepare {self.spec.name}`" + (" (Kaggle download)" if self.spec.kaggle else "")
            raise UserError(f"no {self.spec.name} data in {folder}: run {how} or pass --data DIR")
        return folder

    # ------------------------------------------------------------------ verbs
    def prepare(self, args) -> int:
        """Check train.csv, test.csv and sample_submission.csv against the spec; copy them into
        data/<name>/ when --data points elsewhere."""
        source = self.data_dir(_option(args, "data"))
        dataset = data.load(self.spec, source)
        target = paths.data_dir(self.spec.name)
        if source.resolve() != target.resolve():
            target.mkdir(parents=True, exist_ok=True)
            for name in COPIED:
                if (source / name).exists():
                    atomic.write_with(target / name, lambda tmp, src=source / name: shutil.copyfile(src, tmp))
        columns = dataset.columns
        print(f"{data.TRAIN}: {len(dataset.train)} rows; features: {len(columns.numeric)} numeric, "
              f"{len(columns.categorical)} categorical" + (f" ({len(columns.empty)} empty left out: "
                                                           f"{', '.join(columns.empty[:3])})" if columns.empty else ""))
        if dataset.target.classes:
            counts = dataset.train[self.spec.target].str.strip().value_counts()
            print(f"{self.spec.target}: " + ", ".join(f"{c} {counts.get(c, 0)}" for c in dataset.target.classes))
        else:
            values = dataset.target.values
            print(f"{self.spec.target}: {values.min():g} .. {values.max():g}, mean {values.mean():g}")
        print(f"{data.TEST}:  {len(dataset.test) if dataset.test is not None else 0} rows")
        print(f"ready in {target}")
        return 0

    def _train(self, args) -> dict | None:
        cfg = task.load_config(self.spec, _option(args, "config"), configs.parse_overrides(_option(args, "set", [])))
        folds = _option(args, "folds")
        only = parse_fold_list(folds, cfg.folds) if folds else None
        out = task.train(self.spec, cfg, self.data_dir(_option(args, "data")), _option(args, "name"),
                         _option(args, "device", "auto"), only_folds=only, restart=bool(_option(args, "restart", False)))
        if out["row"] is None:
            return None
        for line in runs.summary_lines(out["row"], out["result"]):
            print(line)
        report.write_after_training(out["run_dir"])
        return out

    def train(self, args) -> int:
        out = self._train(args)
        if out is not None and (out["run_dir"] / "test_predictions.csv").exists():
            print(f"next: python -m pipelines submit {self.spec.name} --run {out['run_dir'].name}")
        return 0

    def predict(self, args) -> int:
        run_dir = paths.find_run(self.spec.name, args.run)
        frame = task.predict(run_dir, Path(args.test), _option(args, "device", "auto"))
        sample = Path(runs.load_run(run_dir)["data"]["train"]).with_name(data.SAMPLE)
        path = task.write_submission(self.spec, frame, Path(args.out), sample if sample.exists() else None,
                                     classes=task.run_classes(run_dir))
        print(f"wrote {path} ({len(frame)} rows) from {run_dir.name}")
        return 0

    def submit(self, args) -> int:
        run_dir = paths.find_run(self.spec.name, args.run)
        run = runs.load_run(run_dir)
        frame = task.read_predictions(run_dir / "test_predictions.csv", self.spec) \
            if (run_dir / "test_predictions.csv").exists() else None
        if frame is None:
            raise UserError(f"{run_dir}: the run has no test predictions (was test.csv missing when it trained?)")
        folder = Path(run["data"]["train"]).parent
        test_csv, sample = folder / data.TEST, folder / data.SAMPLE
        expected = data.read_table(test_csv, self.spec.id)[self.spec.id] if test_csv.exists() else None
        out = runs.submission_path(self.spec.name, run_dir, _option(args, "out"))
        task.write_submission(self.spec, frame, out, sample if sample.exists() else None,
                              classes=run.get("classes"), expected_ids=expected)
        print(f"wrote {out} ({len(frame)} rows, CV {run['metric']} {run['cv']:.5f})")
        return 0


def verbs(spec_path: str | Path) -> SpecVerbs:
    """The verbs of the spec file at spec_path."""
    return SpecVerbs.from_file(spec_path)
