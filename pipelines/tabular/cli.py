"""The verbs of a spec competition, with House Prices' signatures (verb(args) -> exit status).

`SpecVerbs(spec)` is what a registry maps a spec to: its methods prepare, train and
submit take the argparse.Namespace of pipelines/cli.py (missing options fall back to their
defaults, so tests can pass a short Namespace).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import atomic, config as configs, hints, paths, report, runs
from ..errors import UserError
from ..kfold import parse_fold_list
from . import data, task
from .spec import Spec, load as load_spec

COPIED = (data.TRAIN, data.TEST)   # and the spec's sample_submission (copied_files)


def copied_files(spec: Spec) -> tuple[str, ...]:
    """The files prepare copies into data/<name>/: train.csv, test.csv and the spec's template."""
    return (*COPIED, spec.sample_submission)


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
        return {"prepare": self.prepare, "train": self.train, "submit": self.submit}

    def data_dir(self, given: str | None) -> Path:
        folder = Path(given) if given else paths.data_dir(self.spec.name)
        if not (folder / data.TRAIN).exists():
            if given:
                raise UserError(f"{folder}: no {data.TRAIN} there (expected {self.spec.name}'s files in Kaggle's "
                                f"layout)")
            raise paths.no_data_error(self.spec.name, folder, bool(self.spec.kaggle))
        return folder

    # ------------------------------------------------------------------ verbs
    def prepare(self, args) -> int:
        """Check train.csv, test.csv and the template (spec key sample_submission) against the spec
        and each other; copy them into data/<name>/ when --data points elsewhere. Says, in one line
        each, a column without a name left out and a missing template."""
        source = self.data_dir(_option(args, "data"))
        dataset = data.load(self.spec, source)
        target = paths.data_dir(self.spec.name)
        if source.resolve() != target.resolve():
            target.mkdir(parents=True, exist_ok=True)
            for name in copied_files(self.spec):
                if (source / name).is_file():
                    (target / name).parent.mkdir(parents=True, exist_ok=True)
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
        if dataset.sample_path is not None:
            print(f"{dataset.sample_path.name}: {len(dataset.sample_ids)} ids (the submission follows its columns "
                  f"and rows)")
        elif dataset.test is not None:
            print(data.no_template_note(self.spec, source, dataset.target.classes, data.TEST))
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
            print(f"next: {hints.submit(self.spec.name, out['run_dir'].name)}")
        return 0

    def template(self, run: dict, rows: str) -> Path | None:
        """The template of the run's data folder (spec key sample_submission), or None after one
        line saying so (what the submission follows instead: `rows` names the file whose rows)."""
        folder = Path(run["data"]["train"]).parent
        sample = folder / self.spec.sample_submission
        if sample.is_file():
            return sample
        print(data.no_template_note(self.spec, folder, run.get("classes"), rows))
        return None

    def submit(self, args) -> int:
        """The run's test predictions as the submission: the template's columns and rows (exactly
        its ids), else test.csv's ids in the run's order."""
        run_dir = paths.find_run(self.spec.name, args.run)
        run = runs.load_run(run_dir)
        frame = task.read_predictions(run_dir / "test_predictions.csv", self.spec) \
            if (run_dir / "test_predictions.csv").exists() else None
        if frame is None:
            raise UserError(f"{run_dir}: the run has no test predictions (was test.csv missing when it trained?)")
        test_csv = Path(run["data"]["train"]).parent / data.TEST
        sample = self.template(run, data.TEST)
        expected = None
        if sample is None and test_csv.exists():
            expected = data.read_table(test_csv, self.spec.id)[self.spec.id]
        out = runs.submission_path(self.spec.name, run_dir, _option(args, "out"))
        task.write_submission(self.spec, frame, out, sample, classes=run.get("classes"), expected_ids=expected,
                              threshold=run.get("threshold", 0.5))
        print(f"wrote {out} ({len(frame)} rows, CV {run['metric']} {run['cv']:.5f})")
        return 0


def verbs(spec_path: str | Path) -> SpecVerbs:
    """The verbs of the spec file at spec_path."""
    return SpecVerbs.from_file(spec_path)
