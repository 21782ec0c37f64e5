"""A competition's own code beside its spec: a Python file (spec key `plugin:`) whose functions the
engine calls at documented points, so a competition can add what only it knows without a fork.

Tabular hook (pipelines/tabular):

    def features(frame):            # a pandas DataFrame: the id column and the feature columns
        frame["rooms_per_person"] = frame["rooms"] / frame["people"]
        return frame                # the same rows, in the same order, with the id column kept

The frame's columns are numbers where every value of the column is one (missing values as NaN)
and text otherwise; the id column stays text, as read. New columns may hold numbers, text or
booleans; the engine then types every column as it types the files' own.
`features` is called once on train.csv (without its target column: the hook never sees a label),
once on test.csv, and on every file `predict` reads, before the columns are typed; what it returns
is what the models see. It works row by row in spirit: a statistic of the whole file (a mean, a
count of a category) differs between train.csv and test.csv and is better left to the folds'
preprocessing. The plugin file's hash is part of the spec's fingerprint: a run refuses to resume,
and `predict` refuses to run, once the file has changed.

Image hook (pipelines/images), for a competition whose labels are in its file names rather than
in a labels file (the spec then leaves out `labels:`):

    def labels(names):              # the training folder's image file names, e.g. "cat.12.jpg"
        return [name.split(".")[0] for name in names]   # each one's class, or None to leave it out

`labels` is called once per training run with every image file name of `train_images` (names
only, sorted; a zip's members by their base names) and returns one class per name, as text (a
number is written as text), or None for an image that is not a training example. The rows keep
the names' sorted order; an image's id is its file name without the extension. The file's hash is
part of the spec's fingerprint, as for `features`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from .errors import UserError

HOOKS = {"tabular": ("features",), "images": ("labels",)}
SIGNATURES = {"features": "features(frame)", "labels": "labels(names)"}
KIND_NAMES = {"tabular": "a tabular", "images": "an image"}
_loaded: dict[tuple[str, str], ModuleType] = {}


def sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def load(path: str | Path, where: str = "plugin", kind: str = "tabular") -> ModuleType:
    """The plugin module (loaded once per file content); one line for a file that is missing, does
    not compile, fails on import or has none of the hooks of its kind of competition."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{where}: {path} not found (a plugin is a .py file, its path relative to the spec file)")
    key = (str(path.resolve()), sha(path))
    if key in _loaded:
        module = _loaded[key]
        _check_hooks(module, path, kind)
        return module
    name = f"pipelines_plugin_{key[1]}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        source = path.read_text(encoding="utf-8-sig")
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise UserError(f"{path}:{exc.lineno}: {exc.msg} (the spec's plugin does not compile)") from None
    try:
        exec(code, module.__dict__)
    except Exception as exc:  # the user's code: its first line, where it happened
        raise UserError(f"{path}{_line(exc, path)}: importing the plugin failed: {type(exc).__name__}: {exc}") from None
    _check_hooks(module, path, kind)
    sys.modules.setdefault(name, module)
    _loaded[key] = module
    return module


def _check_hooks(module: ModuleType, path: Path, kind: str) -> None:
    hooks = HOOKS[kind]
    if not any(callable(getattr(module, hook, None)) for hook in hooks):
        others = [SIGNATURES[h] for k, names in HOOKS.items() if k != kind for h in names
                  if callable(getattr(module, h, None))]
        also = f" ({', '.join(others)} is a hook of another kind of competition)" if others else ""
        raise UserError(f"{path}: a plugin of {KIND_NAMES[kind]} competition defines "
                        f"{' or '.join(SIGNATURES[h] for h in hooks)}{also}")


def _line(exc: BaseException, path: Path) -> str:
    """':N', the plugin's own line where the exception was raised (the deepest frame in its file)."""
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    return f":{lines[-1]}" if lines else ""


def features(module: ModuleType, frame, id_column: str, where: str):
    """`features(frame)` of the plugin (the frame as it is when the plugin has no such hook); one line
    naming the plugin and the file when it fails or returns other rows."""
    import pandas as pd

    hook = getattr(module, "features", None)
    if not callable(hook):
        return frame
    path = Path(module.__file__)
    ids = frame[id_column].to_numpy()
    try:
        out = hook(_typed(frame, id_column))
    except Exception as exc:
        raise UserError(f"{path}{_line(exc, path)}: features() failed on {where}: {type(exc).__name__}: {exc}") from None
    if not isinstance(out, pd.DataFrame):
        raise UserError(f"{path}: features() returned {type(out).__name__} for {where}; it returns the DataFrame")
    if id_column not in out.columns or len(out) != len(ids) or (out[id_column].to_numpy() != ids).any():
        raise UserError(f"{path}: features() must keep {where}'s rows, their order and its {id_column} column "
                        f"({len(ids)} rows in, {len(out)} out)")
    return _as_text(out.reset_index(drop=True), id_column)


def _typed(frame, id_column: str):
    """The files' text as the hook sees it: a column of numbers (blanks aside) as floats."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        if column == id_column:
            continue
        values = out[column]
        present = values.notna() & (values.astype(str).str.strip() != "")
        numbers = pd.to_numeric(values.where(present), errors="coerce")
        if present.any() and numbers[present].notna().all():
            out[column] = numbers.astype(float)
    return out


def _as_text(frame, id_column: str):
    """Back to the files' form (every value text, missing as None) for the engine's typing; a float
    is written as its repr, which reads back as the same number."""
    import numpy as np
    import pandas as pd

    out = {}
    for column in frame.columns:
        values = frame[column]
        if column == id_column:
            out[column] = values.astype(str)
            continue
        if pd.api.types.is_float_dtype(values) or pd.api.types.is_integer_dtype(values):
            numbers = values.astype(float).replace([np.inf, -np.inf], np.nan)
            out[column] = numbers.map(lambda v: None if np.isnan(v) else repr(float(v))).astype(object)
        else:
            out[column] = values.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v))
                                     else str(v)).astype(object)
    return pd.DataFrame(out, index=frame.index)


def labels(module: ModuleType, names: list[str], where: str) -> list[str | None]:
    """`labels(names)` of the plugin: one class (text) or None per name; one line naming the plugin
    when it fails, returns another count, or returns something that is not a class."""
    import numpy as np

    path = Path(module.__file__)
    try:
        out = module.labels(list(names))
    except Exception as exc:
        raise UserError(f"{path}{_line(exc, path)}: labels() failed on {where}: {type(exc).__name__}: {exc}") from None
    try:
        out = list(out)
    except TypeError:
        raise UserError(f"{path}: labels() returned {type(out).__name__} for {where}; it returns one class (or "
                        f"None) per file name") from None
    if len(out) != len(names):
        raise UserError(f"{path}: labels() returned {len(out)} values for the {len(names)} file names of {where}; "
                        f"it returns one class (or None) per name, in their order")
    classes: list[str | None] = []
    for name, value in zip(names, out):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            classes.append(None)
        elif isinstance(value, (str, int, np.integer)) and not isinstance(value, bool):
            text = str(value).strip()
            if not text:
                raise UserError(f"{path}: labels() gave {name!r} an empty class; None leaves an image out")
            classes.append(text)
        else:
            raise UserError(f"{path}: labels() gave {name!r} the class {value!r} ({type(value).__name__}); a class "
                            f"is text or an integer, None leaves the image out")
    return classes
