"""An image classification competition defined by one YAML file: where the labels and the images are,
what to predict, how it is scored, what to submit.

```yaml
name: cifar-10              # the competition's name: runs/<name>/, submissions/<name>/, data/<name>/
kind: images                # images (kind: tabular specs are read by pipelines.tabular)
id: id                      # the id column of the labels file (and of the submission)
target: label               # the class column of the labels file
task: multiclass            # binary | multiclass
metric: accuracy            # accuracy | logloss (binary, multiclass) | auc (binary)
submission: label           # label | probability (binary: P(positive)) | probabilities (one column per class,
                            # binary too: the positive class's holds P(positive), the other's 1 - P(positive))
labels: trainLabels.csv     # id,target for each training image
train_images: train         # a folder (or train.zip) of <id>.<ext> files
test_images: test           # the images to predict, named <id>.<ext>
kaggle: cifar-10            # optional: the Kaggle competition to download from and submit to
```

Optional keys beyond the contract:

- `sample_submission`: Kaggle's template file (default `sample_submission.csv`; cifar-10 calls it
  `sampleSubmission.csv`): when present, a submission has its columns, in its order, and its rows,
  in its order, and its ids must be exactly the test images' ids;
- `hflip`: whether a left-right mirror of an image keeps its class (default true); false (digits,
  text) turns off flip augmentation and flip test-time augmentation whatever the config says;
- `positive`: binary only: the class whose probability is predicted (default: the last in sorted
  order);
- `config`: the default model config for this competition (configs/images/<config>.yaml);
- `plugin`: a Python file (relative to the spec file) with the competition's own code: a
  `labels(names)` hook that reads each training image's class from its file name (Dogs vs. Cats'
  `cat.12.jpg`), in place of a labels file; the spec then leaves out `labels`
  (pipelines/plugins.py);
- `description`: one line for people.

`submission` may be left out: probability (binary) or probabilities (multiclass). Every problem is
one line naming the file and the key, as for tabular specs (pipelines/tabular/spec.py, whose
checks of the task, metric and submission this reuses).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import UserError
from ..tabular import metrics
from ..tabular.spec import (DEFAULT_SAMPLE, KINDS, _NAME, _choice, _hint, _relative, _string, located,
                            metric_and_submission, plugin_fingerprint, plugin_key, read_file)

KIND = "images"
TASKS = ("binary", "multiclass")
REQUIRED = ("name", "kind", "id", "target", "task", "metric", "labels", "train_images")
OPTIONAL = ("submission", "test_images", "sample_submission", "kaggle", "hflip", "positive", "config", "plugin",
            "description")
DEFAULT_TEST_IMAGES = "test"


@dataclass(frozen=True)
class ImageSpec:
    name: str
    kind: str
    id: str
    target: str
    task: str
    metric: str
    submission: str
    labels: str | None               # None: the plugin's labels(names) reads them from the file names
    train_images: str
    test_images: str = DEFAULT_TEST_IMAGES
    sample_submission: str = DEFAULT_SAMPLE
    kaggle: str | None = None
    hflip: bool = True
    positive: str | None = None
    config: str | None = None
    plugin: str | None = None        # the plugin file, absolute once the spec is loaded from a file
    description: str = ""
    path: Path | None = field(default=None, compare=False)

    @property
    def label_source(self) -> str:
        """Where the training labels come from, for messages: the labels file, or the plugin's hook."""
        return self.labels if self.labels is not None else f"{Path(self.plugin).name} labels(names)"

    @property
    def marker(self) -> str:
        """The file or folder whose presence says a data folder holds this competition."""
        return self.labels if self.labels is not None else self.train_images

    @property
    def classification(self) -> bool:
        return True

    @property
    def greater_is_better(self) -> bool:
        return metrics.get(self.metric).greater_is_better

    @property
    def target_transform(self) -> str:
        return "none"

    @property
    def blend_space(self) -> str:
        """Where predictions are averaged (over folds, and by a blend): P(positive) or the class
        probabilities."""
        return "probability" if self.task == "binary" else "class probabilities"

    def where(self, key: str | None = None) -> str:
        source = str(self.path) if self.path else f"spec {self.name}"
        return f"{source}: {key}" if key else source

    def fingerprint(self) -> str:
        """A hash of what changes the training (not the name, Kaggle slug, template or description):
        a run refuses to resume under a spec that changed it."""
        values = {k: getattr(self, k) for k in ("id", "target", "task", "metric", "positive", "labels",
                                                "train_images", "test_images", "hflip")}
        if self.plugin is not None:  # its code decides the labels (specs without one keep their old hash)
            values["plugin"] = plugin_fingerprint(self.plugin)
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def from_dict(values: dict, where: str) -> ImageSpec:
    """Validate a spec's mapping; `where` (the file) starts every error."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping of keys to values")
    known = REQUIRED + OPTIONAL
    for key in values:
        if key not in known:
            raise UserError(f"{where}: unknown key {key!r}{_hint(key, known)}; the keys are {', '.join(known)}")
    plugin = plugin_key(values, where)
    for key in REQUIRED:
        if key == "labels" and plugin is not None:
            continue  # the plugin's labels(names) may read them from the file names (checked when loaded)
        if key not in values or values[key] is None:
            also = " (or a plugin whose labels(names) reads them from the file names)" if key == "labels" else ""
            raise UserError(f"{where}: {key}: missing (an images spec needs {', '.join(REQUIRED)}{also})")
    kind = _choice(values, "kind", KINDS, where)
    if kind != KIND:
        raise UserError(f"{where}: kind: {kind!r} is not read by the image engine (pipelines.images reads "
                        f"kind: images; pipelines.tabular reads kind: tabular)")
    name = _string(values, "name", where)
    if not _NAME.match(name):
        raise UserError(f"{where}: name: {name!r}: use letters, digits, '.', '_' and '-' only")
    task = _choice(values, "task", TASKS, where)
    metric, submission = metric_and_submission(values, task, where)
    id_column, target = _string(values, "id", where), _string(values, "target", where)
    if id_column == target:
        raise UserError(f"{where}: target: {target!r} is also the id column")
    positive = _string(values, "positive", where) if values.get("positive") is not None else None
    if positive is not None and task != "binary":
        raise UserError(f"{where}: positive: only a binary task has a positive class (task: {task})")
    hflip = values.get("hflip", True)
    if not isinstance(hflip, bool):
        raise UserError(f"{where}: hflip: expected true or false, got {hflip!r}")
    folders = {"train_images": _relative(values, "train_images", where),
               "labels": _relative(values, "labels", where) if values.get("labels") is not None else None}
    for key, default in (("test_images", DEFAULT_TEST_IMAGES), ("sample_submission", DEFAULT_SAMPLE)):
        folders[key] = _relative(values, key, where) if values.get(key) is not None else default
    if folders["train_images"] == folders["test_images"]:
        raise UserError(f"{where}: test_images: {folders['test_images']!r} is also the train_images folder")
    config = _string(values, "config", where) if values.get("config") is not None else None
    kaggle = _string(values, "kaggle", where) if values.get("kaggle") is not None else None
    description = str(values.get("description") or "").strip()
    return ImageSpec(name=name, kind=kind, id=id_column, target=target, task=task, metric=metric,
                     submission=submission, kaggle=kaggle, hflip=hflip, positive=positive, config=config,
                     plugin=plugin, description=description, **folders)


def load(path: str | Path) -> ImageSpec:
    """Read and validate a spec file."""
    values = read_file(path, f"an images spec needs {', '.join(REQUIRED)}")
    return located(from_dict(values, str(path)), path)


SPEC_FOLDER = Path(__file__).resolve().parent.parent / "competitions" / "specs"


def shipped() -> dict[str, Path]:
    """The image specs shipped in pipelines/competitions/specs/: name -> path."""
    found = {}
    for path in sorted(SPEC_FOLDER.glob("*.yaml")):
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
        except yaml.YAMLError:
            continue
        if isinstance(values, dict) and values.get("kind") == KIND and isinstance(values.get("name"), str):
            found[values["name"]] = path
    return found


def find(name_or_path: str) -> ImageSpec | None:
    """A shipped image spec by name, or an images spec file by path; None when it is neither
    (a loader for pipelines/competition.py's add_loader can build on this)."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        try:
            values = yaml.safe_load(candidate.read_text(encoding="utf-8-sig"))
        except (yaml.YAMLError, UnicodeDecodeError):
            return None
        return load(candidate) if isinstance(values, dict) and values.get("kind") == KIND else None
    path = shipped().get(name_or_path)
    return load(path) if path is not None else None
