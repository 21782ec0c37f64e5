"""The competition protocol: what the shared stages ask a competition, and where they find it.

The shared stages (cli, kfold, blend, report, kaggle, leaderboard, runs) never branch on a
competition's name: they look the competition up with `load(name_or_path)` and ask the
`Competition` it returns:

  name, title, kaggle_slug   how the command line, messages and Kaggle's CLI call it
  kind, task                 tabular | images; regression | binary | multiclass
  metric                     Metric(name, function(truth, prediction), greater_is_better)
  data                       DataLayout: the files whose presence in data/<name>/ means the data is
                             there (`make data` downloads otherwise), and Kaggle's archives that
                             stay zipped because prepare reads inside them
  id_column, target_column   the training table's id and target
  submission                 Submission: columns, format (value | label | probability |
                             probabilities) and the rule every value must meet; validate, write, read
  blend                      BlendSpace: how predictions are averaged and stacked (log price,
                             logit of P(positive), class probabilities) and how a run's
                             out-of-fold and test files read
  report_sections            function(run_dir, run, out) -> Markdown lines (and PNGs in out) that
                             follow the shared part of a run's report
  verbs                      name -> handler(args) -> exit status: prepare, train, submit, and
                             whatever else the competition offers (demo, summary)
  write_predicted            function(run_dir, run, frame, out, test) -> path: predictions of a new
                             test file or folder (the run's test_predictions.csv layout) written as
                             the competition's submission; `predict` (pipelines/api.py) makes the
                             frame, from a run's checkpoints or a blend's members, the same way for all
  portfolio                  function(preset, data) -> presets.Plan: what `train --preset best|fast`
                             trains (its members in order, and how they blend); None: no presets

Every registered competition passes tests/test_competition_protocol.py, the way every
scikit-learn estimator passes check_estimator.

Built-in competitions live in pipelines/competitions/<package>/ and call `register` when their
package is imported; `pipelines.competitions` imports every built-in package, and the registry
imports it on first lookup. Registration must stay cheap (no torch, no pandas): verbs and report
sections are named as "module:function" strings (`Lazy`) and imported when first called.

Competitions defined by a spec file plug in through `load`: a name that no package registered is
offered to each loader added with `add_loader` (a function from a spec name or a YAML path to a
Competition, or None when it is not one of its specs); the first one that returns a Competition
has it registered and returned. With no loader that knows the name, `load` raises the same
unknown-competition error as `get`.
"""

from __future__ import annotations

import abc
import difflib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .errors import UserError

KINDS = ("tabular", "images")
TASKS = ("regression", "binary", "multiclass")
FORMATS = ("value", "label", "probability", "probabilities", "ranked")
REQUIRED_VERBS = ("prepare", "train", "submit")
BUILTIN_PACKAGE = "pipelines.competitions"


class Lazy:
    """A function named by "package.module:attribute", imported on first use, so registering a
    competition does not import what running it needs (torch, pandas, image decoders)."""

    def __init__(self, target: str):
        module, _, attribute = target.partition(":")
        if not module or not attribute:
            raise ValueError(f"Lazy({target!r}): expected 'package.module:attribute'")
        self.target = target
        self._module, self._attribute = module, attribute

    def resolve(self) -> Callable:
        return getattr(importlib.import_module(self._module), self._attribute)

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Lazy({self.target!r})"


def lazy_verbs(module: str, *names: str) -> dict[str, Lazy]:
    """{verb: Lazy("module:verb")}, a verb's dashes written as underscores in its function's name."""
    return {name: Lazy(f"{module}:{name.replace('-', '_')}") for name in names}


@dataclass(frozen=True)
class Metric:
    """The competition's score of predictions against the truth, as Kaggle computes it."""
    name: str
    function: Callable[[Any, Any], float]   # (truth, prediction) -> score
    greater_is_better: bool = False

    def __call__(self, truth, prediction) -> float:
        return float(self.function(truth, prediction))

    def better(self, a: float, b: float) -> bool:
        """Whether score a is strictly better than score b."""
        return a > b if self.greater_is_better else a < b


@dataclass(frozen=True)
class DataLayout:
    """What `make data` looks for in data/<competition>/ and how Kaggle's download is unpacked."""
    present: tuple[str, ...]               # any one of these in the folder means the data is there
    keep_zipped: tuple[str, ...] = ()      # archives inside Kaggle's download that prepare reads as zips

    def has_data(self, folder: str | Path) -> bool:
        return any((Path(folder) / marker).exists() for marker in self.present)


@dataclass(frozen=True)
class Submission:
    """The file Kaggle takes: an id column and a value column, every value meeting value_ok."""
    columns: tuple[str, str]
    format: str                                      # one of FORMATS
    value_ok: Callable[[np.ndarray], np.ndarray]     # values (float array) -> which are valid
    value_rule: str                                  # what a valid value is, for the error message

    def rules(self, expected_ids) -> dict:
        """The keyword arguments of pipelines.submission.validate/write/read."""
        return {"columns": list(self.columns), "expected_ids": expected_ids,
                "value_ok": self.value_ok, "value_rule": self.value_rule}

    def validate(self, frame, expected_ids, where: str = "submission") -> None:
        from . import submission

        submission.validate(frame, where=where, **self.rules(expected_ids))

    def write(self, frame, path: str | Path, expected_ids) -> Path:
        from . import submission

        return submission.write(frame, path, **self.rules(expected_ids))

    def read(self, path: str | Path, expected_ids):
        from . import submission

        return submission.read(path, **self.rules(expected_ids))


class BlendSpace(abc.ABC):
    """How a competition's predictions are blended (pipelines/blending.py), and how its runs' files read.

    Members' values (a price, P(positive), ...) are mapped by `link` into the space where they
    are averaged with weights, and back by `unlink`; `fit_target` is the truth in that space for
    the `loss` ("squared", "absolute", "logistic" or "multinomial") the weights are fitted with;
    `stack` fits a linear model there. `mean` is the plain mean, in `mean_space`.
    `unlink(link(v))` gives v back for every value a submission accepts."""

    space: str                  # where weights and stackers combine members, e.g. "log price"
    mean_space: str             # where --method mean averages, e.g. "log price" or "P(dog)"
    loss: str                   # "squared" | "absolute" | "logistic" | "multinomial": what the weights minimise there
    oof_id: str                 # oof.csv's id column (the same order as folds.csv's)
    target: str                 # oof.csv's truth column
    oof_value: str              # oof.csv's out-of-fold prediction column
    test_id: str                # test_predictions.csv's columns: the submission's
    test_value: str
    data_key: str               # run.json data.<key>: the training data's fingerprint
    test_data_key: str          # run.json data.<key>: the test data's fingerprint
    not_blendable: str | None = None   # why `blend` refuses this competition's runs (None: it does not)

    def truth(self, oof, run: dict) -> np.ndarray:
        """oof.csv's truth column (a DataFrame's) as the metric and fit_target take it."""
        return oof[self.target].to_numpy(dtype=float)

    def oof_columns(self, run: dict) -> list[str]:
        """oof.csv's prediction column(s) of this run: one (the value, P(positive)), or one per
        class for a space whose members are rows of class probabilities (blending.py then combines
        (rows, members, classes) arrays: link and unlink work on the last axis)."""
        return [self.oof_value]

    def test_columns(self, run: dict) -> list[str]:
        """test_predictions.csv's prediction column(s) of this run, in oof_columns' order."""
        return [self.test_value]

    def write_test(self, frame, path: Path, expected_ids, submission: "Submission", run: dict):
        """Write a blend's test_predictions.csv (the frame test_frame made), validated."""
        return submission.write(frame, path, expected_ids)

    def member_values(self, values: np.ndarray, run: dict) -> np.ndarray:
        """A member's predictions as the blend takes them (e.g. clipped as its submission was)."""
        return np.asarray(values, float)

    @abc.abstractmethod
    def link(self, values: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def unlink(self, z: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def fit_target(self, truth: np.ndarray) -> np.ndarray: ...

    def mean(self, values: np.ndarray) -> np.ndarray:
        """--method mean of members' values in columns."""
        return self.unlink(self.link(values).mean(axis=1))

    def blend_clip(self, member_runs: list[dict]) -> float | None:
        """The clip the blend's predictions get (None: none)."""
        return None

    @abc.abstractmethod
    def scores(self, truth: np.ndarray, pred: np.ndarray, clip) -> dict:
        """The metric (under its name) and the other figures a run records, for these rows."""

    def cv_extras(self, truth: np.ndarray, oof: np.ndarray) -> dict:
        """More CV figures of a blend's out-of-fold predictions (metrics.json's cv)."""
        return {}

    def decisions(self, truth: np.ndarray, oof: np.ndarray, folds: np.ndarray):
        """(a decision threshold per row, chosen on the other folds; the one for new rows) when the
        metric chooses one out of fold (scores then takes `threshold=`), else (None, None)."""
        return None, None

    @abc.abstractmethod
    def stack(self, z: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
        """(coefficients, intercept) of --method stack, fitted in the blend space."""

    @abc.abstractmethod
    def test_frame(self, ids: np.ndarray, pred: np.ndarray, clip):
        """Test predictions as the submission's frame (test_id, test_value columns)."""

    @abc.abstractmethod
    def predict_member(self, run_dir: Path, test: Path, device: str):
        """A trained (not blended) run's test frame for a new test file or folder, from its checkpoints."""

    def extra(self, cv: dict, first_run: dict) -> dict:
        """What a blend's run.json and registry row carry beside the CV (taken from its first member)."""
        return {}


@dataclass(frozen=True)
class Competition:
    """One competition: everything the shared stages need (see the module's docstring)."""
    name: str
    title: str
    kind: str                                   # one of KINDS
    task: str                                   # one of TASKS
    metric: Metric
    data: DataLayout
    id_column: str
    target_column: str
    submission: Submission
    blend: BlendSpace
    verbs: Mapping[str, Callable] = field(default_factory=dict)
    kaggle_slug: str | None = None              # None: not on Kaggle (no download, no upload)
    default_config: str | None = None           # what `train` uses without --config
    test_input: str = "test file"               # what `predict --test` takes, for the help text
    report_sections: Callable[[Path, dict, Path], list[str]] | None = None
    write_predicted: Callable[..., Path] | None = None
    portfolio: Callable[[str, Any], Any] | None = None   # (preset, data) -> presets.Plan; None: no presets

    def __post_init__(self):
        for what, value, allowed in (("kind", self.kind, KINDS), ("task", self.task, TASKS),
                                     ("submission format", self.submission.format, FORMATS)):
            if value not in allowed:
                raise ValueError(f"competition {self.name!r}: {what} {value!r} is not one of {', '.join(allowed)}")

    def verb(self, name: str) -> Callable | None:
        """The handler of a verb (called with the parsed arguments), or None when it has none.
        `predict` is every competition's (api.predict_command) once it can write predictions."""
        if name == "predict" and name not in self.verbs and self.write_predicted is not None:
            return Lazy("pipelines.api:predict_command")
        return self.verbs.get(name)

    @property
    def verb_names(self) -> list[str]:
        """The verbs it offers (predict included)."""
        return list(self.verbs) + (["predict"] if "predict" not in self.verbs and self.write_predicted else [])


# --------------------------------------------------------------------------- the registry

_REGISTRY: dict[str, Competition] = {}
_LOADERS: list[Callable[[str], Competition | None]] = []
_KNOWN: list[Callable[[], list[str]]] = []   # the names each loader answers to (errors, --help)


def register(competition: Competition, replace: bool = False) -> Competition:
    """Add a competition under its name; registering another one under a taken name is a bug
    unless replace is given."""
    known = _REGISTRY.get(competition.name)
    if known is not None and known is not competition and not replace:
        raise ValueError(f"competition {competition.name!r} is already registered")
    _REGISTRY[competition.name] = competition
    return competition


def add_loader(loader: Callable[[str], Competition | None], known: Callable[[], list[str]] | None = None) -> None:
    """Let `load` ask `loader` for names no package registered (spec names, YAML paths); `known`
    lists the names it answers to, for the unknown-competition error and --help."""
    if loader not in _LOADERS:
        _LOADERS.append(loader)
        if known is not None:
            _KNOWN.append(known)


def loadable() -> list[str]:
    """The names `load` answers to beyond the registered ones (known specs), registered ones left out."""
    registered_names = set(names())
    found: list[str] = []
    for known in _KNOWN:
        found += [n for n in known() if n not in registered_names and n not in found]
    return found


def _builtins() -> dict[str, Competition]:
    importlib.import_module(BUILTIN_PACKAGE)  # each built-in package registers itself on import
    return _REGISTRY


def names() -> list[str]:
    """Every registered competition's name, in registration order (built-ins first)."""
    return list(_builtins())


def registered() -> list[Competition]:
    return list(_builtins().values())


def _unknown(name: str) -> UserError:
    known = names() + [n for n in loadable() if n not in _REGISTRY]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.4)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    paths = " or a spec file's path (*.yaml)" if _LOADERS else ""
    return UserError(f"unknown competition {name!r}{hint}; known: {', '.join(known)}{paths}")


def get(name: str) -> Competition:
    """A registered competition by name; an unknown name is a UserError suggesting the closest."""
    found = _builtins().get(name)
    if found is None:
        raise _unknown(name)
    return found


def load(name_or_path: str) -> Competition:
    """The competition a command line names: a registered name (the built-ins), else whatever a
    loader added with `add_loader` makes of it (a spec file's name or path), registered from then
    on. Nothing knows it: the unknown-competition UserError of `get`."""
    found = _builtins().get(name_or_path)
    if found is not None:
        return found
    for loader in _LOADERS:
        made = loader(name_or_path)
        if made is not None:
            return register(made, replace=True)
    raise _unknown(name_or_path)
