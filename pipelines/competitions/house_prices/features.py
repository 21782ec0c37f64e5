"""House Prices preprocessing, fitted inside each fold, with a JSON state.

Two recipes:
- "d2l": the book's recipe: standardise numeric columns, fill missing with 0,
  one-hot every categorical column with a column for NA.
- "full": what a strong competitor does: domain-aware filling (NA means "none"
  for pools, alleys, basements...), LotFrontage from the neighbourhood median,
  quality grades as ordinals, engineered totals and ages, log1p of skewed
  columns, standardisation, one-hot of the rest.

The fitted state is plain JSON (numbers, strings, lists), saved beside each
fold's weights, so prediction never unpickles anything.
"""

from __future__ import annotations

import difflib

import numpy as np
import pandas as pd

from ...errors import UserError
from .data import CATEGORICAL, NUMERIC

QUALITY = {"Ex": 5, "Gd": 4, "TA": 3, "Fa": 2, "Po": 1, "None": 0}
QUALITY_COLUMNS = ["ExterQual", "ExterCond", "BsmtQual", "BsmtCond", "HeatingQC", "KitchenQual",
                   "FireplaceQu", "GarageQual", "GarageCond", "PoolQC"]
ORDINALS = {
    "BsmtExposure": {"Gd": 4, "Av": 3, "Mn": 2, "No": 1, "None": 0},
    "BsmtFinType1": {"GLQ": 6, "ALQ": 5, "BLQ": 4, "Rec": 3, "LwQ": 2, "Unf": 1, "None": 0},
    "BsmtFinType2": {"GLQ": 6, "ALQ": 5, "BLQ": 4, "Rec": 3, "LwQ": 2, "Unf": 1, "None": 0},
    "GarageFinish": {"Fin": 3, "RFn": 2, "Unf": 1, "None": 0},
    "Functional": {"Typ": 7, "Min1": 6, "Min2": 5, "Mod": 4, "Maj1": 3, "Maj2": 2, "Sev": 1, "Sal": 0},
    **{column: QUALITY for column in QUALITY_COLUMNS},
}
# Where NA means the house has none of the thing, not that the value is unknown.
NA_MEANS_NONE = ["Alley", "BsmtQual", "BsmtCond", "BsmtExposure", "BsmtFinType1", "BsmtFinType2",
                 "FireplaceQu", "GarageType", "GarageFinish", "GarageQual", "GarageCond", "PoolQC",
                 "Fence", "MiscFeature", "MasVnrType"]
NA_MEANS_ZERO = ["MasVnrArea", "BsmtFinSF1", "BsmtFinSF2", "BsmtUnfSF", "TotalBsmtSF", "BsmtFullBath",
                 "BsmtHalfBath", "GarageCars", "GarageArea"]
AS_CATEGORY = ["MSSubClass", "MoSold", "YrSold"]
SKEW_THRESHOLD = 0.75


ENGINEERED = ["TotalSF", "TotalBath", "TotalPorchSF", "Age", "RemodAge", "QualSF",
              "HasPool", "Has2ndFlr", "HasGarage", "HasBsmt", "HasFireplace"]


def full_columns() -> tuple[list[str], list[str]]:
    """(numeric, categorical) columns of the "full" recipe, in matrix order."""
    numeric = [c for c in NUMERIC if c not in AS_CATEGORY] + [c + "_ord" for c in ORDINALS] + ENGINEERED
    categorical = [c for c in CATEGORICAL if c not in ORDINALS] + [c + "_cat" for c in AS_CATEGORY]
    return numeric, categorical


def parse_interactions(specs: list[str], recipe: str = "full", where: str = "interactions") -> list[list[str]]:
    """["Neighborhood*GrLivArea", ...] -> [["Neighborhood", "GrLivArea"], ...], checked against the
    full recipe's columns: a categorical column, then a numeric one."""
    if specs and recipe != "full":
        raise UserError(f"{where}: only the full recipe has them (features: full)")
    numeric, categorical = full_columns()
    pairs = []
    for spec in specs:
        parts = [p.strip() for p in str(spec).split("*")]
        if len(parts) != 2:
            raise UserError(f"{where}: {spec!r} must be CATEGORICAL*NUMERIC, e.g. 'Neighborhood*GrLivArea'")
        for name, columns, kind in ((parts[0], categorical, "categorical"), (parts[1], numeric, "numeric")):
            if name not in columns:
                close = difflib.get_close_matches(name, columns, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise UserError(f"{where}: {spec!r}: {name!r} is not a {kind} column{hint}")
        pairs.append(parts)
    return pairs


def _engineer(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in NA_MEANS_NONE:
        frame[column] = frame[column].fillna("None")
    for column in NA_MEANS_ZERO:
        frame[column] = frame[column].fillna(0.0)
    frame["GarageYrBlt"] = frame["GarageYrBlt"].fillna(frame["YearBuilt"])
    for column, mapping in ORDINALS.items():
        frame[column + "_ord"] = frame[column].map(mapping)
    frame["TotalSF"] = frame["TotalBsmtSF"] + frame["1stFlrSF"] + frame["2ndFlrSF"]
    frame["TotalBath"] = (frame["FullBath"] + 0.5 * frame["HalfBath"]
                          + frame["BsmtFullBath"] + 0.5 * frame["BsmtHalfBath"])
    frame["TotalPorchSF"] = (frame["OpenPorchSF"] + frame["EnclosedPorch"] + frame["3SsnPorch"]
                             + frame["ScreenPorch"] + frame["WoodDeckSF"])
    frame["Age"] = (frame["YrSold"] - frame["YearBuilt"]).clip(lower=0)
    frame["RemodAge"] = (frame["YrSold"] - frame["YearRemodAdd"]).clip(lower=0)
    frame["QualSF"] = frame["OverallQual"] * frame["GrLivArea"]
    for column, flag in (("PoolArea", "HasPool"), ("2ndFlrSF", "Has2ndFlr"), ("GarageArea", "HasGarage"),
                         ("TotalBsmtSF", "HasBsmt"), ("Fireplaces", "HasFireplace")):
        frame[flag] = (frame[column] > 0).astype(float)
    for column in AS_CATEGORY:
        frame[column + "_cat"] = frame[column].map(lambda v: "NA" if pd.isna(v) else str(int(v)))
    return frame


class Preprocessor:
    """fit(frame) learns the state from training rows; transform(frame) returns a float32 matrix."""

    def __init__(self, recipe: str = "full", state: dict | None = None, clip_quantile: float = 0.0,
                 scaling: str = "standard", interactions: list[str] | None = None):
        self.recipe = recipe
        self.state = state
        self.clip_quantile = clip_quantile
        self.scaling = scaling
        self.interactions = parse_interactions(interactions or [], recipe)

    # -- fitting ---------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> "Preprocessor":
        if self.recipe == "d2l":
            numeric, categorical = list(NUMERIC), list(CATEGORICAL)
            fill = {c: 0.0 for c in numeric}
            log_columns, lot_frontage = [], {}
        else:
            frame = _engineer(frame)
            numeric, categorical = full_columns()
            fill = {c: float(frame[c].median()) if frame[c].notna().any() else 0.0 for c in numeric}
            lot_by_hood = frame.groupby("Neighborhood")["LotFrontage"].median().dropna()
            lot_frontage = {str(k): float(v) for k, v in lot_by_hood.items()}
            filled = frame[numeric].fillna(fill)
            skew = filled.skew()
            log_columns = [c for c in numeric
                           if abs(skew[c]) > SKEW_THRESHOLD and filled[c].min() >= 0 and filled[c].nunique() > 2]
        state = {"recipe": self.recipe, "numeric": numeric, "categorical": categorical,
                 "fill": fill, "log": log_columns,
                 "lot_frontage_by_neighborhood": lot_frontage}
        self.state = state
        values = self._numeric_block(frame, with_scaling=False)
        q = self.clip_quantile
        state["min"] = [float(v) for v in np.quantile(values, q, axis=0)]
        state["max"] = [float(v) for v in np.quantile(values, 1 - q, axis=0)]
        # "mean"/"std" are the centre and scale applied by transform: mean and standard deviation,
        # or with scaling "robust" the median and interquartile range (scikit-learn's RobustScaler).
        state["scaling"] = self.scaling
        if self.scaling == "robust":
            low, centre, high = np.quantile(values, [0.25, 0.5, 0.75], axis=0)
            spread = high - low
            fallback = values.std(axis=0)  # a column with a zero IQR (mostly one value) uses its std
            spread = np.where(spread > 1e-12, spread, fallback)
        else:
            centre, spread = values.mean(axis=0), values.std(axis=0)
        state["mean"] = [float(v) for v in centre]
        state["std"] = [float(v) if v > 1e-12 else 1.0 for v in spread]
        state["categories"] = {c: sorted(frame[c].fillna("NA").astype(str).unique().tolist())
                               for c in categorical}
        # Category-specific slopes: one column per (category level, numeric column), the level's
        # indicator times the scaled numeric value, so a linear model can price size or quality
        # differently in each neighbourhood.
        state["interactions"] = self.interactions
        return self

    # -- transforming ------------------------------------------------------------
    def _numeric_block(self, frame: pd.DataFrame, with_scaling: bool = True) -> np.ndarray:
        state = self.state
        if state["recipe"] == "full" and state["lot_frontage_by_neighborhood"]:
            by_hood = frame["Neighborhood"].map(state["lot_frontage_by_neighborhood"])
            frame = frame.assign(LotFrontage=frame["LotFrontage"].fillna(by_hood))
        values = frame[state["numeric"]].fillna(state["fill"]).to_numpy(dtype=np.float64)
        for i, column in enumerate(state["numeric"]):
            if column in state["log"]:
                values[:, i] = np.log1p(np.clip(values[:, i], 0, None))
        if with_scaling:
            if self.state["recipe"] == "full":
                # Clip to the range seen in training (winsorised at clip_quantile): a house
                # bigger than almost any sold before should not get a price extrapolated
                # linearly from its size.
                values = np.clip(values, np.asarray(state["min"]), np.asarray(state["max"]))
            values = (values - np.asarray(state["mean"])) / np.asarray(state["std"])
        return values

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        if self.state is None:
            raise RuntimeError("Preprocessor.transform called before fit")
        if self.state["recipe"] == "full":
            frame = _engineer(frame)
        numeric = self._numeric_block(frame)
        blocks = [numeric]
        for column in self.state["categorical"]:
            blocks.append(self._one_hot(frame, column))
        for column, by in self.state.get("interactions", []):
            blocks.append(self._one_hot(frame, column) * numeric[:, [self.state["numeric"].index(by)]])
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def numeric_position(self, column: str) -> int:
        """Where a numeric column of the recipe sits in transform()'s matrix."""
        return self.state["numeric"].index(column)

    def one_hot_positions(self, column: str) -> list[int]:
        """Where a categorical column's one-hot block sits in transform()'s matrix."""
        start = len(self.state["numeric"])
        for name in self.state["categorical"]:
            size = len(self.state["categories"][name])
            if name == column:
                return list(range(start, start + size))
            start += size
        raise KeyError(column)

    def _one_hot(self, frame: pd.DataFrame, column: str) -> np.ndarray:
        categories = self.state["categories"][column]
        values = frame[column].fillna("NA").astype(str).to_numpy()
        # An unseen category gets all zeros rather than an error.
        return (values[:, None] == np.asarray(categories)[None, :]).astype(np.float64)

    @property
    def n_features(self) -> int:
        categories = self.state["categories"]
        return (len(self.state["numeric"]) + sum(len(v) for v in categories.values())
                + sum(len(categories[c]) for c, _ in self.state.get("interactions", [])))
