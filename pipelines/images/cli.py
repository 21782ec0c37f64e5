"""The verbs of an image spec competition, with the signatures of pipelines/tabular/cli.py
(verb(args) -> exit status).

`ImageSpecVerbs(spec)` is what a registry maps an images spec to: its methods prepare, train and
submit take the argparse.Namespace of pipelines/cli.py (missing options fall back to their
defaults, so tests can pass a short Namespace). Options read: --data, --config, --set, --name,
--folds, --device, --restart, --workers (train, prepare); --run, --out (submit).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import atomic, config as configs, hints, paths, report, runs
from ..errors import UserError
from ..kfold import parse_fold_list
from ..training import quiet
from . import data, task
from .spec import ImageSpec, find as find_spec, load as load_spec


def _option(args, name: str, default=None):
    value = getattr(args, name, default)
    return default if value is None else value


class ImageSpecVerbs:
    def __init__(self, spec: ImageSpec):
        self.spec = spec

    @classmethod
    def from_file(cls, path: str | Path) -> "ImageSpecVerbs":
        return cls(load_spec(path))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def verbs(self) -> dict:
        """verb -> handler(args) -> exit status, as a registry takes them."""
        return {"prepare": self.prepare, "train": self.train, "submit": self.submit}

    def data_dir(self, given: str | None) -> Path:
        spec = self.spec
        folder = Path(given) if given else paths.data_dir(spec.name)
        found = (folder / spec.marker).exists() or (spec.labels is None and data.locate(folder, spec.marker))
        if not found:
            if given:
                raise UserError(f"{folder}: no {spec.marker} there (expected {spec.name}'s files in Kaggle's "
                                f"layout: {', '.join(n for n in (spec.labels, spec.train_images) if n)}/, "
                                f"{spec.test_images}/)")
            raise paths.no_data_error(spec.name, folder, bool(spec.kaggle))
        return folder

    # ------------------------------------------------------------------ verbs
    def prepare(self, args) -> int:
        """Check the labels, images and template against the spec, build the image caches at the
        config's size, and make data/<name>/ hold the competition: the CSVs copied, the image folders
        linked (not copied) when --data points elsewhere."""
        spec = self.spec
        source = self.data_dir(_option(args, "data"))
        comp = data.load(spec, source)
        cfg = task.effective_config(spec, task.load_config(spec, _option(args, "config"),
                                                           configs.parse_overrides(_option(args, "set", []))))
        target = paths.data_dir(spec.name)
        if source.resolve() != target.resolve():
            self._link(source, target)
            comp = data.load(spec, target, say=None)  # the source's notes are said already
        for line in data.summary(comp):
            print(line)
        train, test = data.caches(comp, cfg.image_size, int(_option(args, "workers", 2)), not quiet())
        for split, cache in (("train", train), ("test", test)):
            if cache is None:
                continue
            state = "rebuilt" if cache.rebuilt else "reused (sources unchanged)"
            print(f"{split} cache {cache.path}: {len(cache.rows)} images at {cfg.image_size}px, {state}"
                  + (f"; {len(cache.skipped)} cannot be read: " + ", ".join(s["key"] for s in cache.skipped[:5])
                     if cache.skipped else ""))
        print(f"ready in {target} (config {cfg.name})")
        return 0

    def _link(self, source: Path, target: Path) -> None:
        spec = self.spec
        target.mkdir(parents=True, exist_ok=True)
        for name in (spec.labels, spec.sample_submission):
            if name is not None and (source / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                atomic.write_with(target / name, lambda tmp, src=source / name: shutil.copyfile(src, tmp))
        for relative in (spec.train_images, spec.test_images):
            found = data.locate(source, relative)
            if found is None:
                continue
            link = target / found.relative_to(source)
            if link.is_symlink() or not link.exists():
                tmp = link.with_name(f".{link.name}.link-{os.getpid()}")
                tmp.unlink(missing_ok=True)
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(found.resolve(), tmp, target_is_directory=found.is_dir())
                os.replace(tmp, link)
            elif link.resolve() != found.resolve():
                raise UserError(f"{link} already exists and is not a link to {found}; remove it, or train with "
                                f"--data {source}")

    def _train(self, args) -> dict | None:
        spec = self.spec
        cfg = task.load_config(spec, _option(args, "config"), configs.parse_overrides(_option(args, "set", [])))
        folds = _option(args, "folds")
        only = parse_fold_list(folds, cfg.folds) if folds else None
        out = task.train(spec, cfg, self.data_dir(_option(args, "data")), _option(args, "name"),
                         _option(args, "device", "auto"), only_folds=only,
                         restart=bool(_option(args, "restart", False)), workers=int(_option(args, "workers", 2)))
        if out["row"] is None:
            return None
        for line in runs.summary_lines(out["row"], out["result"]):
            print(line)
        cv = out["result"].cv
        print(f"CV accuracy {cv['accuracy']:.4f}, log loss {cv['logloss']:.5f}")
        report.write_after_training(out["run_dir"])
        return out

    def train(self, args) -> int:
        out = self._train(args)
        if out is not None and (out["run_dir"] / "test_predictions.csv").exists():
            print(f"next: {hints.submit(self.spec.name, out['run_dir'].name)}")
        return 0

    def _template(self, run: dict, rows: str | None = None) -> Path | None:
        """The run's data folder's template (spec key sample_submission), or None after one line
        saying what the submission follows instead (`rows`: the test folder predicted)."""
        folder = Path(run["data"].get("folder", Path(run["data"]["train"]).parent))
        sample = folder / self.spec.sample_submission
        if sample.is_file():
            return sample
        print(data.no_template_note(self.spec, folder, run.get("classes"), rows))
        return None

    def submit(self, args) -> int:
        """The run's test predictions as the submission: the template's columns and rows (exactly its
        ids), else the test images' ids in order."""
        run_dir = paths.find_run(self.spec.name, args.run)
        run = runs.load_run(run_dir)
        if not (run_dir / "test_predictions.csv").exists():
            raise UserError(f"{run_dir}: the run has no test predictions (no {self.spec.test_images}/ folder when it "
                            f"trained?); use `{hints.pipelines(f'predict {self.spec.name} --run {run_dir.name}')} "
                            f"--test DIR --out FILE`")
        frame = task.read_predictions(run_dir / "test_predictions.csv", self.spec)
        sample = self._template(run)
        out = runs.submission_path(self.spec.name, run_dir, _option(args, "out"))
        task.write_submission(self.spec, frame, out, run["classes"], sample, threshold=run.get("threshold", 0.5))
        print(f"wrote {out} ({len(frame)} rows, CV {run['metric']} {run['cv']:.5f})")
        return 0


def verbs(spec_path_or_name: str | Path) -> ImageSpecVerbs:
    """The verbs of an images spec: a file path, or the name of one in pipelines/competitions/specs/."""
    spec = find_spec(str(spec_path_or_name))
    if spec is None:
        raise UserError(f"{spec_path_or_name}: not an images spec file, nor the name of one in "
                        f"pipelines/competitions/specs/")
    return ImageSpecVerbs(spec)
