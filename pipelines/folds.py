"""Deterministic k-fold assignment, stratified where the target allows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold

from . import atomic
from .errors import UserError


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
