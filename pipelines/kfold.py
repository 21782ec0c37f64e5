"""The k-fold engine every competition shares.

Train one model per fold on the other folds, predict the held-out fold (out-of-
fold predictions cover every training row exactly once) and the test set;
average the fold models' test predictions; CV is the metric on all OOF rows,
reported with the per-fold scores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from .errors import UserError
from .training import quiet


@dataclass
class FoldOutput:
    valid_prediction: np.ndarray
    test_prediction: np.ndarray | None
    info: dict = field(default_factory=dict)


@dataclass
class KFoldResult:
    oof_prediction: np.ndarray
    test_prediction: np.ndarray | None
    fold_scores: list[dict]
    cv: dict
    seconds: float


def fold_indices(folds: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray]:
    folds = np.asarray(folds)
    return np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)


def parse_fold_list(spec: str | None, n_folds: int) -> list[int]:
    """'0,2' or '1-3' or None (all folds)."""
    if spec is None or spec == "" or spec == "all":
        return list(range(n_folds))
    chosen: list[int] = []
    try:
        for part in str(spec).split(","):
            if "-" in part:
                lo, hi = part.split("-", 1)
                chosen.extend(range(int(lo), int(hi) + 1))
            else:
                chosen.append(int(part))
    except ValueError:
        raise UserError(f"--folds {spec!r}: expected fold numbers like 0,2 or 1-3") from None
    bad = [f for f in chosen if not 0 <= f < n_folds]
    if bad:
        raise UserError(f"--folds {spec!r}: fold {bad[0]} is outside 0..{n_folds - 1}")
    return sorted(set(chosen))


def run(folds: np.ndarray,
        fit_fold: Callable[[int, np.ndarray, np.ndarray], FoldOutput],
        score: Callable[[np.ndarray, np.ndarray], dict],
        main_metric: str,
        only_folds: list[int] | None = None) -> KFoldResult:
    """Fit every fold; score(index, prediction) returns the metrics for those rows."""
    started = time.perf_counter()
    folds = np.asarray(folds)
    n_folds = int(folds.max()) + 1
    chosen = only_folds if only_folds is not None else list(range(n_folds))
    oof = None
    test_sum, fold_scores = None, []
    for fold in tqdm(chosen, desc="folds", unit="fold", leave=False, disable=quiet() or len(chosen) < 2):
        train_index, valid_index = fold_indices(folds, fold)
        output = fit_fold(fold, train_index, valid_index)
        prediction = np.asarray(output.valid_prediction)
        if oof is None:
            oof = np.full((len(folds),) + prediction.shape[1:], np.nan, dtype=np.float64)
        oof[valid_index] = prediction
        if output.test_prediction is not None:
            test = np.asarray(output.test_prediction, dtype=np.float64)
            test_sum = test if test_sum is None else test_sum + test
        fold_scores.append({"fold": fold, "rows": int(len(valid_index)),
                            **score(valid_index, prediction), **output.info})
    scored = np.flatnonzero(np.isin(folds, chosen))
    cv = score(scored, oof[scored])
    values = [s[main_metric] for s in fold_scores]
    cv.update({f"{main_metric}_fold_mean": float(np.mean(values)),
               f"{main_metric}_fold_std": float(np.std(values)),
               "rows_scored": int(len(scored))})
    test_mean = None if test_sum is None else test_sum / len(chosen)
    return KFoldResult(oof_prediction=oof, test_prediction=test_mean, fold_scores=fold_scores,
                       cv=cv, seconds=time.perf_counter() - started)
