"""A tabular competition defined by one YAML file: what to predict, how it is scored, what to submit.

```yaml
name: penguins              # the competition's name: runs/<name>/, submissions/<name>/, data/<name>/
kind: tabular               # tabular | images (images specs are read by the image engine)
id: Id                      # the id column of train.csv, test.csv and the submission
target: species             # the column to predict (train.csv only)
task: multiclass            # regression | binary | multiclass
metric: logloss             # rmse, rmsle, mae, r2, mape (regression); auc, f1 (binary); logloss, accuracy,
                            # f1_macro, mcc (binary, multiclass); qwk, auc_ovr, map@K (multiclass)
submission: probabilities   # value (regression) | probability (binary: P(positive)) | label (binary,
                            # multiclass) | probabilities (binary, multiclass: one column per class) |
                            # ranked (map@K: the K most probable classes, space-separated)
kaggle: slug                # optional: the Kaggle competition to download from and submit to
```

Optional keys beyond the contract:

- `positive`: binary only: the class whose probability is predicted (default: the last class in
  sorted order, e.g. 1 of 0/1, "yes" of no/yes, True of False/True);
- `sample_submission`: Kaggle's template file in the data folder (default `sample_submission.csv`;
  some competitions call it `sampleSubmission.csv`): when present, a submission has its columns, in
  its order, and its rows, in its order, and its ids must be exactly test.csv's;
- `drop`: columns that are not features (free text, leaks, a second id);
- `categorical` / `numeric`: columns whose type is forced instead of inferred;
- `config`: the default model config for this competition (configs/tabular/<config>.yaml);
- `plugin`: a Python file (relative to the spec file) with the competition's own code: a
  `features(frame)` hook that adds columns (pipelines/plugins.py);
- `group` / `time` / `folds_file` (one of them): the fold scheme (pipelines/folds.py). `group: COLUMN`
  keeps every row of a value (a patient, a user) in one fold, classes balanced as far as the
  groups allow; the column is not a feature. `time: COLUMN` (numbers or dates) cuts the rows in
  time order into folds + 1 blocks: each fold is validated by a model trained on the blocks
  before it, the first block is never validated; the column stays a feature. `folds_file: NAME`
  is a CSV in the data folder with the id column and `fold` (0, 1, ...) for every training row.
  Default: stratified by class, or by quantile bins of a regression target;
- `description`: one line for people.

`submission` may be left out: label for a metric scored on decisions (not accuracy), ranked for
map@K, else value, probability and probabilities by task. A binary task takes
`probabilities` too (Kaggle's `id,cat,dog` shape): one column per class, the positive class's
holding P(positive) and the negative class's 1 - P(positive). Every problem is one
line naming the file and the key: an unknown key (with the closest valid one), an unknown
kind, task, metric or submission, a metric or a submission that does not fit the task.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import yaml

from ..errors import UserError
from . import metrics

KINDS = ("tabular", "images")
TASKS = ("regression", "binary", "multiclass")
# what each submission format is for
SUBMISSIONS = {
    "value": ("regression",),
    "probability": ("binary",),
    "probabilities": ("binary", "multiclass"),
    "label": ("binary", "multiclass"),
    "ranked": ("multiclass",),   # map@K: the K most probable classes, most probable first, space-separated
}
DEFAULT_SUBMISSION = {"regression": "value", "binary": "probability", "multiclass": "probabilities"}
REQUIRED = ("name", "kind", "id", "target", "task", "metric")
OPTIONAL = ("submission", "sample_submission", "kaggle", "positive", "drop", "categorical", "numeric", "config",
            "plugin", "group", "time", "folds_file", "description")
DEFAULT_SAMPLE = "sample_submission.csv"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str
    id: str
    target: str
    task: str
    metric: str
    submission: str
    sample_submission: str = DEFAULT_SAMPLE
    kaggle: str | None = None
    positive: str | None = None
    drop: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    config: str | None = None
    plugin: str | None = None        # the plugin file, absolute once the spec is loaded from a file
    group: str | None = None         # folds by group: every row of a value of this column in one fold
    time: str | None = None          # folds in time order of this column: train on the past, validate on the future
    folds_file: str | None = None    # the competition's own folds: a CSV in the data folder (id, fold)
    description: str = ""
    path: Path | None = field(default=None, compare=False)

    @property
    def classification(self) -> bool:
        return self.task in ("binary", "multiclass")

    @property
    def greater_is_better(self) -> bool:
        return metrics.get(self.metric).greater_is_better

    @property
    def target_transform(self) -> str:
        """What regression models are fitted on: log1p of the target for rmsle (the metric's own
        space), else the target itself."""
        return "log1p" if self.metric == "rmsle" else "none"

    @property
    def blend_space(self) -> str:
        """Where predictions of this competition are averaged (over folds, and by a blend):
        the regression target (its log1p for rmsle), P(positive), or the class probabilities."""
        if self.task == "regression":
            return "log1p(value)" if self.target_transform == "log1p" else "value"
        return "probability" if self.task == "binary" else "class probabilities"

    def where(self, key: str | None = None) -> str:
        source = str(self.path) if self.path else f"spec {self.name}"
        return f"{source}: {key}" if key else source

    def fingerprint(self) -> str:
        """A hash of what changes the training (not the name, Kaggle slug, template or description): a run
        refuses to resume under a spec that changed it."""
        values = {k: getattr(self, k) for k in ("id", "target", "task", "metric", "positive", "drop",
                                                "categorical", "numeric")}
        if self.plugin is not None:  # its code changes the features (specs without one keep their old hash)
            values["plugin"] = plugin_fingerprint(self.plugin)
        for key in ("group", "time", "folds_file"):  # the fold scheme (specs without one keep their old hash)
            if getattr(self, key) is not None:
                values[key] = getattr(self, key)
        return hashlib.sha256(json.dumps(values, sort_keys=True, default=list).encode()).hexdigest()[:16]


def _hint(value: str, options) -> str:
    close = difflib.get_close_matches(str(value), list(options), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _string(values: dict, key: str, where: str) -> str:
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UserError(f"{where}: {key}: expected a string, got {value!r}")
    value = str(value).strip()
    if not value:
        raise UserError(f"{where}: {key}: is empty")
    return value


def _names(values: dict, key: str, where: str) -> tuple[str, ...]:
    value = values.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                                              for v in value):
        raise UserError(f"{where}: {key}: expected a list of column names, got {value!r}")
    return tuple(str(v) for v in value)


def _or(options) -> str:
    """'a', 'a or b', 'a, b or c'."""
    options = list(options)
    return options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"


def _relative(values: dict, key: str, where: str) -> str:
    """A file or folder inside the competition's data folder."""
    value = _string(values, key, where)
    path = PurePosixPath(value.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise UserError(f"{where}: {key}: {value!r} must be a path inside the data folder (like train or "
                        f"labels.csv), not an absolute path or one that leaves it")
    return value


def plugin_key(values: dict, where: str) -> str | None:
    """The spec's `plugin:` (either engine's): a .py file, or None."""
    plugin = _string(values, "plugin", where) if values.get("plugin") is not None else None
    if plugin is not None and not plugin.endswith(".py"):
        raise UserError(f"{where}: plugin: {plugin!r} must be a Python file (.py)")
    return plugin


def plugin_fingerprint(plugin: str) -> str:
    """What a spec's fingerprint holds for its plugin: the file's hash ("missing" once it is gone)."""
    from .. import plugins

    return plugins.sha(plugin) if Path(plugin).is_file() else "missing"


def _choice(values: dict, key: str, options, where: str) -> str:
    value = _string(values, key, where)
    if value not in options:
        raise UserError(f"{where}: {key}: {value!r} is not one of {', '.join(options)}{_hint(value, options)}")
    return value


def metric_and_submission(values: dict, task: str, where: str) -> tuple[str, str]:
    """The spec's metric, checked against its task, and its submission: as given, else what the
    metric scores (labels for a metric of decisions, the K classes for map@K, else by task)."""
    metric = _string(values, "metric", where)
    try:
        fits = metrics.get(metric).tasks
    except UserError as exc:
        raise UserError(f"{where}: metric: {exc}") from None
    if task not in fits:
        suits = ", ".join(metrics.names(task))
        raise UserError(f"{where}: metric: {metric} does not fit task: {task} (it scores {' and '.join(fits)}; "
                        f"{task} takes {suits})")
    needs = metrics.get(metric).needs
    default = {"ranked": "ranked", "label": "label"}.get(needs, DEFAULT_SUBMISSION[task])
    if metric == "accuracy":  # scored on labels, but probabilities were its default before: kept
        default = DEFAULT_SUBMISSION[task]
    submission = _choice(values, "submission", tuple(SUBMISSIONS), where) if values.get("submission") is not None \
        else default
    if task not in SUBMISSIONS[submission]:
        suits = [s for s, tasks in SUBMISSIONS.items() if task in tasks]
        raise UserError(f"{where}: submission: {submission} does not fit task: {task} (a {task} "
                        f"submission is {_or(suits)})")
    if submission in ("label", "ranked") and needs == "probability":
        raise UserError(f"{where}: submission: {submission} does not fit metric: {metric}, which scores "
                        f"probabilities (use submission: {DEFAULT_SUBMISSION[task]})")
    if (submission == "ranked") != (needs == "ranked"):
        raise UserError(f"{where}: submission: ranked goes with metric: map@K (the K most probable classes), "
                        f"and map@K with submission: ranked; here metric: {metric}, submission: {submission}")
    return metric, submission


def from_dict(values: dict, where: str) -> Spec:
    """Validate a spec's mapping; `where` (the file) starts every error."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping of keys to values")
    known = REQUIRED + OPTIONAL
    for key in values:
        if key not in known:
            raise UserError(f"{where}: unknown key {key!r}{_hint(key, known)}; the keys are {', '.join(known)}")
    for key in REQUIRED:
        if key not in values or values[key] is None:
            raise UserError(f"{where}: {key}: missing (a spec needs {', '.join(REQUIRED)})")
    kind = _choice(values, "kind", KINDS, where)
    if kind != "tabular":
        raise UserError(f"{where}: kind: {kind!r} is not read by the tabular engine (pipelines.tabular reads "
                        f"kind: tabular)")
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
    lists = {key: _names(values, key, where) for key in ("drop", "categorical", "numeric")}
    for key, columns in lists.items():
        for column in columns:
            if column in (id_column, target):
                raise UserError(f"{where}: {key}: {column!r} is the {'id' if column == id_column else 'target'} "
                                f"column, never a feature")
    both = sorted(set(lists["categorical"]) & set(lists["numeric"]))
    if both:
        raise UserError(f"{where}: numeric: {both[0]!r} is also listed under categorical")
    config = _string(values, "config", where) if values.get("config") is not None else None
    kaggle = _string(values, "kaggle", where) if values.get("kaggle") is not None else None
    description = str(values.get("description") or "").strip()
    plugin = plugin_key(values, where)
    sample = (_relative(values, "sample_submission", where) if values.get("sample_submission") is not None
              else DEFAULT_SAMPLE)
    schemes = {key: values[key] for key in ("group", "time", "folds_file") if values.get(key) is not None}
    if len(schemes) > 1:
        raise UserError(f"{where}: {' and '.join(schemes)}: give one fold scheme (group, time or folds_file)")
    group = _string(values, "group", where) if "group" in schemes else None
    time_column = _string(values, "time", where) if "time" in schemes else None
    for key, column in (("group", group), ("time", time_column)):
        if column in (id_column, target):
            raise UserError(f"{where}: {key}: {column!r} is the {'id' if column == id_column else 'target'} column")
    folds_file = _relative(values, "folds_file", where) if "folds_file" in schemes else None
    return Spec(name=name, kind=kind, id=id_column, target=target, task=task, metric=metric,
                submission=submission, sample_submission=sample, kaggle=kaggle, positive=positive, config=config,
                plugin=plugin, group=group, time=time_column, folds_file=folds_file, description=description,
                **lists)


def read_file(path: str | Path, needs: str) -> dict:
    """A spec file's mapping, before validation; one line for a file that is missing, a folder, not
    YAML, not text or empty (`needs`: what the message says such a spec needs)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"spec file {path} not found")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a spec file (YAML)")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{line} is not valid YAML") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None
    if values is None:
        raise UserError(f"{path}: is empty ({needs})")
    return values


def located(spec, path: str | Path):
    """A validated spec (either engine's) with its file: the plugin's path made absolute, relative
    to the spec file wherever the command runs."""
    path = Path(path)
    if spec.plugin is not None:
        spec = replace(spec, plugin=str((path.parent / spec.plugin).resolve()))
    return replace(spec, path=path)


def load(path: str | Path) -> Spec:
    """Read and validate a spec file."""
    values = read_file(path, f"a spec needs {', '.join(REQUIRED)}")
    return located(from_dict(values, str(path)), path)
