"""Comparable-sales adjustment (`comps: K`), as an appraiser makes one.

A fold's model prices a house; the adjustment then adds how much the house's K nearest training
houses (by neighbourhood first, then quality, size, age and lot) sold above or below what the
same kind of model priced them at. Those training residuals are out-of-fold: an inner 5-fold
inside the fold's training rows, so they say what the model misses on houses it has not seen,
not its in-sample slack, and the rows the fold scores are never used.

How much to trust the comparables is measured inside the fold too: each training house's own
residual is regressed on the adjustment its comparables (the other training houses) would give it,
and the slope, clipped to [0, 1], scales every adjustment the fold makes. A model whose remaining
errors are not shared by neighbouring houses gets little or no correction.

The space is read from the fold's own preprocessed matrix (so the sizes are log-scaled and, with
clip_quantile, winsorised as the model sees them), each numeric coordinate divided by its standard
deviation over the training houses. Stored per fold in fold<k>/comps/ (safetensors + JSON), so
prediction needs only the run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy.spatial.distance import cdist  # exact differences: the same distances wherever it runs

from ... import checkpoint
from ...errors import UserError

NUMERIC = ["OverallQual", "GrLivArea", "TotalSF", "YearBuilt", "LotArea"]
CATEGORY = "Neighborhood"
INNER_FOLDS = 5
DISTANCE_OFFSET = 0.3  # a comparable's weight is 1 / (distance + offset): nearest count most, none infinitely
PRIOR = 3.0            # the weighted mean residual is shrunk by K / (K + PRIOR) towards no correction
FOLDER = "comps"
TENSORS = ("numeric", "category", "scale", "space", "residuals", "trust")


class Comps:
    """Residuals of a fold's training houses, and where those houses sit in the comparables' space."""

    def __init__(self, numeric, category, scale, space, residuals, trust, k: int, hood_weight: float):
        self.numeric = np.asarray(numeric, dtype=np.int64)
        self.category = np.asarray(category, dtype=np.int64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.space = np.asarray(space, dtype=np.float64)
        self.residuals = np.asarray(residuals, dtype=np.float64)
        self.trust = np.asarray(trust, dtype=np.float64).reshape(1)
        self.k = min(int(k), len(self.residuals) - 1)
        self.hood_weight = float(hood_weight)

    @classmethod
    def fit(cls, x: np.ndarray, residuals: np.ndarray, columns: tuple[list[int], list[int]], k: int,
            hood_weight: float) -> "Comps":
        x = np.asarray(x, dtype=np.float64)
        numeric = np.asarray(columns[0], dtype=np.int64)
        scale = x[:, numeric].std(axis=0)
        comps = cls(numeric, columns[1], np.where(scale > 1e-12, scale, 1.0), np.zeros((0, 0)), residuals,
                    1.0, k, hood_weight)
        comps.space = comps.locate(x)
        distance = cdist(comps.space, comps.space)
        np.fill_diagonal(distance, np.inf)  # a house is not its own comparable
        own = comps._weighted_mean(distance)
        # least-squares slope of a house's residual on its comparables' (through 0), in [0, 1]
        slope = float(own @ comps.residuals / (own @ own)) if own @ own > 0 else 0.0
        comps.trust = np.array([min(max(slope, 0.0), 1.0)])
        return comps

    def locate(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.hstack([x[:, self.numeric] / self.scale, self.hood_weight * x[:, self.category]])

    def adjust(self, x: np.ndarray) -> np.ndarray:
        """The correction to add to the model's log price of each row of x."""
        return self.trust[0] * self._weighted_mean(cdist(self.locate(x), self.space))

    def _weighted_mean(self, distance: np.ndarray) -> np.ndarray:
        """The K nearest training houses' residuals, weighted by nearness, shrunk by K / (K + PRIOR)."""
        nearest = np.argpartition(distance, self.k - 1, axis=1)[:, :self.k]
        weight = 1.0 / (np.take_along_axis(distance, nearest, axis=1) + DISTANCE_OFFSET)
        mean = (weight * self.residuals[nearest]).sum(1) / weight.sum(1)
        return mean * self.k / (self.k + PRIOR)

    def save(self, fold_dir: Path, meta: dict) -> None:
        checkpoint.save(Path(fold_dir) / FOLDER,
                        {name: torch.from_numpy(np.ascontiguousarray(getattr(self, name))) for name in TENSORS},
                        {**meta, "comps": self.k, "comps_hood_weight": self.hood_weight, "trust": float(self.trust[0])})


def load(fold_dir: Path, k: int, hood_weight: float) -> Comps:
    folder = Path(fold_dir) / FOLDER
    state, _ = checkpoint.load(folder)
    missing = [name for name in TENSORS if name not in state]
    if missing:
        raise UserError(f"{folder}: comps checkpoint has no {missing[0]!r} tensor")
    return Comps(*(state[name].numpy() for name in TENSORS), k, hood_weight)


def exists(fold_dir: Path) -> bool:
    return (Path(fold_dir) / FOLDER / checkpoint.META).exists()


def inner_residuals(fit_predict: Callable[..., np.ndarray], x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Each training house's log-price residual under a model fitted without it (inner k-fold).
    fit_predict(x_train, y_train, x_held_out, y_held_out, inner_fold) returns log prices for
    x_held_out; y_held_out is there for what the model's own training does with its validation
    rows (a network with `keep: best` picks its epoch on them, as it would in the outer folds)."""
    from sklearn.model_selection import KFold

    residuals = np.zeros(len(y))
    for inner, (train, held_out) in enumerate(KFold(INNER_FOLDS, shuffle=True, random_state=seed).split(x)):
        residuals[held_out] = y[held_out] - fit_predict(x[train], y[train], x[held_out], y[held_out], inner)
    return residuals
