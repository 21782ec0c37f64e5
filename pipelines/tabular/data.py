"""Reading a spec competition's CSVs (Kaggle's train.csv / test.csv / sample_submission.csv) with checks.

Every problem is one line naming the file, and the row and column where there is one: a missing
id or target column, an id missing or twice, a target that is missing, not a number (regression)
or a single class, a test file without a feature column of train.csv (naming both files), a sample
submission (spec key sample_submission) whose columns do not fit the task or name a class that
training never saw, or whose ids are not exactly test.csv's, an empty file.

Everything is read as text first, so ids keep their exact spelling ("007" stays "007") and class
labels are the strings of the file; then each feature column is typed: numeric when every value
present parses as a number (unless the spec says otherwise), else categorical. Columns with no
value at all are left out. The id and target are never features. A column whose header is empty
(a pandas index saved with DataFrame.to_csv) is left out of every table read, and train.csv, test.csv
and a predicted file say so in a one-line note (unless the spec lists pandas' name for it, such as
"Unnamed: 0", under categorical or numeric).
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import plugins
from ..errors import UserError
from .spec import Spec

TRAIN, TEST, SAMPLE = "train.csv", "test.csv", "sample_submission.csv"


@dataclass
class Columns:
    numeric: list[str]
    categorical: list[str]
    empty: list[str]  # columns with no value in train.csv: not features

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical


@dataclass
class Target:
    values: np.ndarray          # float values (regression), 0/1 (binary: 1 = positive), class indices (multiclass)
    labels: np.ndarray          # the target as written in train.csv (strings; floats for regression)
    classes: list[str] | None   # classification: the class labels in order; binary: [negative, positive]


@dataclass
class Dataset:
    spec: Spec
    train_path: Path
    test_path: Path | None
    sample_path: Path | None
    train: pd.DataFrame
    test: pd.DataFrame | None
    columns: Columns
    target: Target
    sample_columns: list[str] | None  # sample_submission.csv's header, when there is one
    train_features: pd.DataFrame      # typed feature columns (feature_frame)
    test_features: pd.DataFrame | None
    sample_ids: np.ndarray | None = None  # the template's ids in its row order

    @property
    def train_ids(self) -> np.ndarray:
        return self.train[self.spec.id].to_numpy(dtype=object)

    @property
    def test_ids(self) -> np.ndarray | None:
        return None if self.test is None else self.test[self.spec.id].to_numpy(dtype=object)


def fingerprint(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _hint(name: str, options) -> str:
    close = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unnamed(path: Path, columns) -> list[int]:
    """Positions of the columns whose header is empty (pandas names them 'Unnamed: <n>'; its
    DataFrame.to_csv writes the index so); a header that pandas did not read field for field
    (an index inferred from a short header line) has none."""
    if not any(str(c).startswith("Unnamed: ") or not str(c).strip() for c in columns):
        return []
    try:
        raw = pd.read_csv(path, dtype=str, header=None, nrows=1, encoding="utf-8-sig", keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return []
    names = [str(v).strip() for v in raw.iloc[0]] if len(raw) else []
    return [i for i, name in enumerate(names) if not name] if len(names) == len(columns) else []


def _is_index(values: pd.Series) -> bool:
    """Whether a column holds what a saved pandas index holds: distinct integers."""
    text = values.dropna().str.strip()
    return len(text) == len(values) and bool(text.str.fullmatch(r"-?\d+").all()) and not text.duplicated().any()


def read_table(path: str | Path, id_column: str, required: list[str] = (), what: str = "", say=None,
               keep=()) -> pd.DataFrame:
    """A CSV as text (missing values as NaN), with its id column checked: present, never empty,
    never twice. `required`: further columns it must have (named in the error).

    A column whose header is empty (what pandas' DataFrame.to_csv writes for the index) is left out,
    whatever it holds: it has no name to type it, drop it or match it with another file's columns by.
    `say` (e.g. print) is told so in one line per column; `keep`: pandas' names of such columns
    ("Unnamed: 0") to keep all the same (a run that was trained with one as a feature)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a CSV file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: file is empty")
    try:
        frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    unnamed = [i for i in _unnamed(path, frame.columns) if frame.columns[i] not in keep]
    if unnamed:
        for i in unnamed:
            why = " (a saved pandas index)" if _is_index(frame.iloc[:, i]) else " (name it in the header to use it)"
            if say is not None:
                say(f"note: {path}: column {i + 1} has no name{why}: left out")
        frame = frame.iloc[:, [i for i in range(frame.shape[1]) if i not in unnamed]].copy()
    frame.columns = [str(c).strip() for c in frame.columns]
    for column in [id_column, *required]:
        if column in frame.columns:
            continue
        if len(frame.columns) == 1:
            separator = next((s for s in (";", "\t", "|") if s in frame.columns[0]), None)
            if separator is not None:
                raise UserError(f"{path}: one column only: the file is separated by {separator!r}, not by "
                                f"commas (save it as a comma-separated CSV)")
        role = "id" if column == id_column else what or "required"
        raise UserError(f"{path}: no {role} column {column!r}{_hint(column, frame.columns)}")
    if len(frame) == 0:
        raise UserError(f"{path}: has a header but no rows")
    ids = frame[id_column].str.strip()
    missing = ids.isna() | (ids == "")
    if missing.any():
        row = int(np.flatnonzero(missing.to_numpy())[0])
        raise UserError(f"{path}: row {row + 2}: {id_column} is missing")
    frame[id_column] = ids
    duplicated = ids.duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        first = int(np.flatnonzero((ids == ids.iloc[row]).to_numpy())[0])
        raise UserError(f"{path}: row {row + 2}: {id_column} {ids.iloc[row]!r} appears twice (first on row "
                        f"{first + 2})")
    return frame.reset_index(drop=True)


def class_order(labels) -> list[str]:
    """Class labels sorted as numbers when they all are numbers (2 before 10), else as text."""
    labels = sorted({str(v) for v in labels})
    try:
        return sorted(labels, key=float)
    except ValueError:
        return labels


def infer_columns(frame: pd.DataFrame, spec: Spec, path: Path) -> Columns:
    # the group column names who a row belongs to, as the id names the row: not a feature
    features = [c for c in frame.columns if c not in (spec.id, spec.target, spec.group) and c not in spec.drop]
    for key in ("group", "time"):
        column = getattr(spec, key)
        if column is not None and column not in frame.columns:
            raise UserError(f"{spec.where(key)}: {column!r} is not a column of {path}{_hint(column, frame.columns)}")
    for key in ("drop", "categorical", "numeric"):
        for column in getattr(spec, key):
            if key == "drop" and column.startswith("Unnamed: ") and column not in frame.columns:
                continue  # a column without a name (a saved index) that read_table already left out
            if column not in frame.columns:
                raise UserError(f"{spec.where(key)}: {column!r} is not a column of {path}"
                                f"{_hint(column, frame.columns)}")
    numeric, categorical, empty = [], [], []
    for column in features:
        values = frame[column]
        present = values.notna()
        if not present.any():
            empty.append(column)
        elif column in spec.categorical:
            categorical.append(column)
        elif column in spec.numeric:
            numeric.append(column)
        elif pd.to_numeric(values[present], errors="coerce").notna().all():
            numeric.append(column)
        else:
            categorical.append(column)
    if not numeric and not categorical:
        raise UserError(f"{path}: no feature columns besides {spec.id} and {spec.target}")
    return Columns(numeric, categorical, empty)


def feature_frame(frame: pd.DataFrame, numeric: list[str], categorical: list[str], path: Path,
                  id_column: str, source: str = TRAIN, remedy: str = "") -> pd.DataFrame:
    """The feature columns, numeric ones as floats (a value that is not a number is an error naming
    its row and column; infinities count as missing), categorical ones as stripped text. A feature
    the frame lacks is an error naming `path` as the file without it and `source` (the training
    file) as the one that has it; `remedy` ends that line."""
    missing = [c for c in numeric + categorical if c not in frame.columns]
    if missing:
        more = (f" (nor {len(missing) - 1} more: {', '.join(map(repr, missing[1:4]))}"
                f"{' ...' if len(missing) > 4 else ''})" if len(missing) > 1 else "")
        raise UserError(f"{path}: no column {missing[0]!r}{more}, which {source} has as a feature{remedy}")
    out = {}
    for column in numeric:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise UserError(f"{path}: row {row + 2} ({id_column} {frame[id_column].iloc[row]}): column {column} "
                            f"is not numeric ({frame[column].iloc[row]!r})")
        out[column] = values.astype(float).replace([np.inf, -np.inf], np.nan)
    for column in categorical:
        out[column] = frame[column].str.strip()
    return pd.DataFrame(out, index=frame.index)


def encode_target(frame: pd.DataFrame, spec: Spec, path: Path) -> Target:
    raw = frame[spec.target].str.strip()
    missing = raw.isna() | (raw == "")
    if missing.any():
        row = int(np.flatnonzero(missing.to_numpy())[0])
        raise UserError(f"{path}: row {row + 2} ({spec.id} {frame[spec.id].iloc[row]}): {spec.target} is missing")
    if spec.task == "regression":
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if spec.metric == "rmsle":
            bad |= values < 0
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            rule = "a number >= 0 (metric: rmsle)" if spec.metric == "rmsle" else "a finite number"
            raise UserError(f"{path}: row {row + 2} ({spec.id} {frame[spec.id].iloc[row]}): {spec.target} "
                            f"{raw.iloc[row]!r} is not {rule}")
        return Target(values, values, None)
    classes = class_order(raw)
    if len(classes) < 2:
        raise UserError(f"{path}: column {spec.target}: a single class ({classes[0]!r}) in every row: "
                        f"nothing to learn")
    if spec.task == "binary":
        if len(classes) > 2:
            shown = ", ".join(map(repr, classes[:5])) + (" ..." if len(classes) > 5 else "")
            raise UserError(f"{path}: column {spec.target}: {len(classes)} classes ({shown}), task: binary "
                            f"needs two (use task: multiclass)")
        positive = spec.positive if spec.positive is not None else classes[-1]
        if positive not in classes:
            raise UserError(f"{spec.where('positive')}: {positive!r} is not a class of {spec.target} in {path} "
                            f"(classes: {', '.join(map(repr, classes))})")
        classes = [c for c in classes if c != positive] + [positive]
    index = {c: i for i, c in enumerate(classes)}
    values = raw.map(index).to_numpy(dtype=np.int64)
    return Target(values, raw.to_numpy(dtype=object), classes)


def default_header(spec: Spec, classes: list[str] | None) -> list[str]:
    """A submission's columns when there is no template: the id and one column per class (probabilities,
    in the run's class order: binary [negative, positive]), else the id and the target."""
    if spec.submission == "probabilities" and classes:
        return [spec.id, *map(str, classes)]
    return [spec.id, spec.target]


def no_template_note(spec: Spec, folder: Path, classes: list[str] | None, rows: str) -> str:
    """The one line said when a data folder has no template: what the submission follows instead."""
    return (f"note: no {spec.sample_submission} in {folder}: the submission has the columns "
            f"{', '.join(default_header(spec, classes))} and the rows of {rows}")


def read_sample_columns(path: Path, spec: Spec, classes: list[str] | None) -> list[str]:
    """sample_submission.csv's header (columns without a name left out, as read_table does), checked
    against the spec's submission format and the training classes: the id column first, then the
    value (value, probability, label) or one column per class, each once, in any order
    (probabilities; binary: the negative and the positive class)."""
    if path.stat().st_size == 0:
        raise UserError(f"{path}: file is empty")
    try:
        header = pd.read_csv(path, dtype=str, encoding="utf-8-sig", nrows=0).columns
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    unnamed = set(_unnamed(path, header))
    columns = [str(c).strip() for i, c in enumerate(header) if i not in unnamed]
    if not columns or columns[0] != spec.id:
        raise UserError(f"{path}: first column is {columns[0] if columns else None!r}, expected the id column "
                        f"{spec.id!r}")
    if spec.submission != "probabilities":
        if len(columns) != 2:
            hint = (" (one column per class: use submission: probabilities)"
                    if classes and sorted(columns[1:]) == sorted(map(str, classes)) else "")
            raise UserError(f"{path}: {len(columns)} columns ({', '.join(columns)}); submission: "
                            f"{spec.submission} has two: {spec.id} and the {spec.submission}{hint}")
        return columns
    duplicated = pd.Series(columns).duplicated()
    if duplicated.any():
        raise UserError(f"{path}: column {columns[int(np.flatnonzero(duplicated)[0])]!r} appears twice")
    if spec.task == "binary" and columns[1:] == [spec.target]:
        raise UserError(f"{path}: columns {spec.id}, {spec.target}; submission: probabilities has one column "
                        f"per class ({', '.join(map(str, classes))}); a template of {spec.id}, {spec.target} "
                        f"takes submission: probability")
    for column in columns[1:]:
        if column not in classes:
            raise UserError(f"{path}: column {column!r} is a class that training never saw ({spec.target} in "
                            f"{TRAIN} has {', '.join(map(repr, classes))}){_hint(column, classes)}")
    for label in classes:
        if label not in columns[1:]:
            raise UserError(f"{path}: no column for class {label!r}, which {spec.target} has in training")
    return columns


def read_sample_ids(path: Path, spec: Spec) -> np.ndarray:
    """The template's ids as text, in its row order (read_table's checks: present, each once)."""
    return read_table(path, spec.id)[spec.id].to_numpy(dtype=object)


def check_template_ids(sample_path: Path, sample_ids, test_path: Path, test_ids, spec: Spec) -> None:
    """The template's ids must be exactly the test file's: one line naming the file with an id the
    other lacks."""
    expected, present = {str(i) for i in sample_ids}, {str(i) for i in test_ids}
    if expected - present:
        missing = class_order(expected - present)
        raise UserError(f"{sample_path}: {len(missing)} {spec.id}(s) with no row in {test_path.name}, e.g. "
                        f"{missing[0]}")
    if present - expected:
        extra = class_order(present - expected)
        raise UserError(f"{test_path}: {len(extra)} {spec.id}(s) not in {sample_path.name}, e.g. {extra[0]}")


def load(spec: Spec, data_dir: str | Path, test_path: str | Path | None = None, say=print) -> Dataset:
    """train.csv (required), test.csv and the template (spec key sample_submission, when present)
    of a data folder, checked against the spec and each other: the template's header against the
    submission format and the classes, its ids against test.csv's (exactly the same). `say` is
    told about columns without a name (read_table), once per file."""
    data_dir = Path(data_dir)
    train_path = data_dir / TRAIN
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: data folder not found")
    if not train_path.exists():
        raise UserError(f"{data_dir}: no {TRAIN} there (expected {spec.name}'s files in Kaggle's layout)")
    named = (*spec.categorical, *spec.numeric)  # pandas' name of a column without one ("Unnamed: 0") keeps it
    train = read_table(train_path, spec.id, [spec.target], what="target", say=say, keep=named)
    plugin = plugins.load(spec.plugin, spec.where("plugin")) if spec.plugin else None
    if plugin is not None:  # the competition's own features; the hook never sees the target
        added = plugins.features(plugin, train.drop(columns=[spec.target]), spec.id, str(train_path))
        train = added.assign(**{spec.target: train[spec.target].to_numpy()})
    columns = infer_columns(train, spec, train_path)
    target = encode_target(train, spec, train_path)
    if test_path is not None and not Path(test_path).exists():
        raise UserError(f"{test_path}: file not found")
    test_path = Path(test_path) if test_path else data_dir / TEST
    test = read_table(test_path, spec.id, say=say, keep=named) if test_path.exists() else None
    if plugin is not None and test is not None:
        test = plugins.features(plugin, test, spec.id, str(test_path))
    sample_path = data_dir / spec.sample_submission
    sample_columns = sample_ids = None
    if sample_path.is_file():
        sample_columns = read_sample_columns(sample_path, spec, target.classes)
        sample_ids = read_sample_ids(sample_path, spec)
        if test is not None:
            check_template_ids(sample_path, sample_ids, test_path, test[spec.id], spec)
    # every value typed and checked here, before any run folder exists
    train_features = feature_frame(train, columns.numeric, columns.categorical, train_path, spec.id)
    remedy = (f" (add it to {test_path.name}, or list it under drop: in "
              f"{spec.path.name if spec.path else 'the spec'})")
    test_features = (feature_frame(test, columns.numeric, columns.categorical, test_path, spec.id, train_path.name,
                                   remedy) if test is not None else None)
    return Dataset(spec, train_path, test_path if test is not None else None,
                   sample_path if sample_columns else None, train, test, columns, target, sample_columns,
                   train_features, test_features, sample_ids)
