"""Deterministic k-fold assignment: stratified where the target allows, by group, in time order,
or from the competition's own file.

Every scheme gives one fold number per row. A fold's model trains on every row of the other folds,
except in time order (`ordered`), where it trains on the rows before its own (earlier folds, and
the first block, numbered -1, which no fold validates: nothing comes before it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold

from . import atomic
from .errors import UserError


def fold_seed(seed: int, fold: int, member: int = 0) -> int:
    """The seed of fold `fold`'s model number `member` (seeds_per_fold), in every engine: a fold's
    members take consecutive seeds, and folds stay 100 apart so that up to 100 members never share one."""
    return seed + 100 * fold + member


def make_folds(target, n_folds: int, seed: int, stratify: str = "auto") -> np.ndarray:
    """Return fold numbers 0..n_folds-1, one per row.

    stratify: "labels" for classes, "bins" for a continuous target (quantile bins),
    "none", or "auto" (labels when there are at most 20 distinct values, else bins).
    """
    target = np.asarray(target)
    n = len(target)
    if not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise UserError(f"folds must be an integer >= 2, got {n_folds!r}")
    if n_folds > n:
        raise UserError(f"folds={n_folds} is more than the {n} rows to split")
    if stratify == "auto":
        stratify = "labels" if len(np.unique(target)) <= 20 else "bins"
    if stratify == "labels":
        strata = target
    elif stratify == "bins":
        n_bins = int(max(2, min(10, n // (2 * n_folds))))
        ranks = pd.Series(target).rank(method="first").to_numpy()
        strata = np.minimum((ranks - 1) * n_bins // n, n_bins - 1).astype(int)
    elif stratify == "none":
        strata = None
    else:
        raise UserError(f"stratify {stratify!r} is not one of auto, labels, bins, none")
    folds = np.full(n, -1, dtype=np.int64)
    if strata is not None and np.min(np.unique(strata, return_counts=True)[1]) >= n_folds:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(n), strata)
    else:
        splits = KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros(n))
    for fold, (_, valid_index) in enumerate(splits):
        folds[valid_index] = fold
    return folds


def save_folds(path: str | Path, ids, folds) -> None:
    frame = pd.DataFrame({"id": np.asarray(ids), "fold": np.asarray(folds)})
    atomic.write_text(path, frame.to_csv(index=False))


def load_folds(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: folds file not found")
    frame = pd.read_csv(path)
    if list(frame.columns) != ["id", "fold"]:
        raise UserError(f"{path}: expected columns id,fold, got {','.join(frame.columns)}")
    return frame


SCHEMES = ("stratified", "group", "time", "file")


def group_folds(target, groups, n_folds: int, seed: int, classification: bool, column: str) -> np.ndarray:
    """Every row of a group (a patient, a user) in one fold; classes balanced across folds as far
    as the groups allow (scikit-learn's StratifiedGroupKFold), or groups shuffled (GroupKFold)."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    groups = pd.Series(np.asarray(groups, dtype=object)).astype(str).to_numpy()
    distinct = len(set(groups))
    if distinct < n_folds:
        raise UserError(f"group: {column!r} has {distinct} distinct values, fewer than the {n_folds} folds")
    if classification:
        splits = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(
            np.zeros(len(groups)), np.asarray(target), groups)
    else:
        splits = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros(len(groups)), None, groups)
    folds = np.full(len(groups), -1, dtype=np.int64)
    for fold, (_, valid_index) in enumerate(splits):
        folds[valid_index] = fold
    return folds


def time_order(values, column: str) -> np.ndarray:
    """The rows' times as sortable numbers: numbers as they are, else dates (one line naming the
    first value that is neither)."""
    series = pd.Series(values)
    numbers = pd.to_numeric(series, errors="coerce")
    if numbers.notna().all():
        return numbers.to_numpy(dtype=float)
    dates = pd.to_datetime(series, errors="coerce", format="mixed")
    bad = dates.isna() & numbers.isna()
    if bad.any():
        raise UserError(f"time: {column!r} row {int(np.flatnonzero(bad.to_numpy())[0]) + 2}: {series[bad].iloc[0]!r} "
                        f"is neither a number nor a date")
    return dates.astype("int64").to_numpy(dtype=float)


def time_folds(times, n_folds: int, column: str) -> np.ndarray:
    """The rows in time order cut into n_folds + 1 blocks of about equal size, never between two
    rows of the same time: the first block is -1 (training only), block b is fold b - 1, validated
    by a model trained on the blocks before it."""
    times = time_order(times, column)
    order = np.argsort(times, kind="stable")
    distinct = np.unique(times)
    if len(distinct) < n_folds + 1:
        raise UserError(f"time: {column!r} has {len(distinct)} distinct values; {n_folds} folds in time order "
                        f"need at least {n_folds + 1}")
    # each block ends at a change of time nearest an equal share of the rows
    sorted_times = times[order]
    changes = np.flatnonzero(np.diff(sorted_times) > 0) + 1   # positions where a new time starts
    cuts, n = [], len(times)
    for b in range(1, n_folds + 1):
        wanted = b * n / (n_folds + 1)
        candidates = changes[(changes > (cuts[-1] if cuts else 0))]
        cuts.append(int(candidates[np.argmin(np.abs(candidates - wanted))]) if len(candidates) else n)
    if len(set(cuts)) < n_folds or cuts[-1] >= n:
        raise UserError(f"time: {column!r}: too few distinct times to cut {n_folds + 1} blocks of rows")
    block = np.zeros(n, dtype=np.int64)
    block[order] = np.searchsorted(np.asarray(cuts), np.arange(n), side="right")
    return block - 1


def file_folds(path: Path, ids, id_column: str) -> np.ndarray:
    """The competition's own folds: a CSV with the id column and `fold` (0, 1, ...), one row per
    training row; one line naming the file and the first id or value at fault."""
    if not Path(path).exists():
        raise UserError(f"{path}: folds file not found")
    frame = pd.read_csv(path, dtype={id_column: str})
    if id_column not in frame.columns or "fold" not in frame.columns:
        raise UserError(f"{path}: expected the columns {id_column} and fold, got {','.join(map(str, frame.columns))}")
    folds = pd.to_numeric(frame["fold"], errors="coerce")
    bad = folds.isna() | (folds < 0) | (folds != folds.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{path}: row {row + 2}: fold {frame['fold'].iloc[row]!r} is not a whole number >= 0")
    given = dict(zip(frame[id_column].astype(str), folds.astype(int)))
    if len(given) != len(frame):
        raise UserError(f"{path}: {id_column} {frame[id_column][frame[id_column].duplicated()].iloc[0]} appears twice")
    ids = [str(i) for i in ids]
    missing = [i for i in ids if i not in given]
    if missing:
        raise UserError(f"{path}: no fold for {id_column} {missing[0]} of train.csv ({len(missing)} missing)")
    folds = np.asarray([given[i] for i in ids], dtype=np.int64)
    numbers = sorted(set(folds.tolist()))
    if numbers != list(range(len(numbers))) or len(numbers) < 2:
        raise UserError(f"{path}: folds must be numbered 0, 1, ... (at least two); found {numbers[:10]}")
    return folds
