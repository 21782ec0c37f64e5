"""Reading and checking House Prices CSVs (Kaggle's train.csv / test.csv layout)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import UserError
from .competition import ID, TARGET

NUMERIC = [
    "LotFrontage", "LotArea", "OverallQual", "OverallCond", "YearBuilt", "YearRemodAdd",
    "MasVnrArea", "BsmtFinSF1", "BsmtFinSF2", "BsmtUnfSF", "TotalBsmtSF", "1stFlrSF", "2ndFlrSF",
    "LowQualFinSF", "GrLivArea", "BsmtFullBath", "BsmtHalfBath", "FullBath", "HalfBath",
    "BedroomAbvGr", "KitchenAbvGr", "TotRmsAbvGrd", "Fireplaces", "GarageYrBlt", "GarageCars",
    "GarageArea", "WoodDeckSF", "OpenPorchSF", "EnclosedPorch", "3SsnPorch", "ScreenPorch",
    "PoolArea", "MiscVal", "MoSold", "YrSold", "MSSubClass",
]
CATEGORICAL = [
    "MSZoning", "Street", "Alley", "LotShape", "LandContour", "Utilities", "LotConfig", "LandSlope",
    "Neighborhood", "Condition1", "Condition2", "BldgType", "HouseStyle", "RoofStyle", "RoofMatl",
    "Exterior1st", "Exterior2nd", "MasVnrType", "ExterQual", "ExterCond", "Foundation", "BsmtQual",
    "BsmtCond", "BsmtExposure", "BsmtFinType1", "BsmtFinType2", "Heating", "HeatingQC", "CentralAir",
    "Electrical", "KitchenQual", "Functional", "FireplaceQu", "GarageType", "GarageFinish",
    "GarageQual", "GarageCond", "PavedDrive", "PoolQC", "Fence", "MiscFeature", "SaleType",
    "SaleCondition",
]
FEATURES = NUMERIC + CATEGORICAL


def fingerprint(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def read_csv(path: str | Path, *, with_target: bool) -> pd.DataFrame:
    """Read and check a train.csv (with_target) or test.csv; errors name the file and row."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a CSV file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: file is empty")
    try:
        # utf-8-sig strips a byte-order mark; pandas handles CRLF line ends.
        frame = pd.read_csv(path, encoding="utf-8-sig", keep_default_na=False, na_values=["NA", ""],
                            dtype={c: str for c in CATEGORICAL})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    required = [ID] + FEATURES + ([TARGET] if with_target else [])
    missing = [c for c in required if c not in frame.columns]
    if missing and len(frame.columns) == 1:
        separator = next((s for s in (";", "\t", "|") if s in frame.columns[0]), None)
        if separator is not None:
            raise UserError(f"{path}: one column only: the file is separated by {separator!r}, not by commas "
                            f"(save it as a comma-separated CSV)")
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise UserError(f"{path}: missing required column(s) {shown}")
    if len(frame) == 0:
        raise UserError(f"{path}: has a header but no rows")
    _check_ids(frame, path)
    for column in NUMERIC:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise UserError(f"{path}: row {row + 2} (Id {frame[ID].iloc[row]}): column {column} "
                            f"is not numeric ({frame[column].iloc[row]!r})")
        frame[column] = values.astype(float)
    if with_target:
        prices = pd.to_numeric(frame[TARGET], errors="coerce")
        bad = ~np.isfinite(prices.to_numpy(dtype=float)) | (prices.to_numpy(dtype=float) <= 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise UserError(f"{path}: row {row + 2} (Id {frame[ID].iloc[row]}): SalePrice "
                            f"{frame[TARGET].iloc[row]!r} is not a positive number")
        frame[TARGET] = prices.astype(float)
    return frame.reset_index(drop=True)


def _check_ids(frame: pd.DataFrame, path: Path) -> None:
    ids = pd.to_numeric(frame[ID], errors="coerce")
    bad = ids.isna() | (ids != ids.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        if pd.isna(frame[ID].iloc[row]):
            raise UserError(f"{path}: row {row + 2}: Id is missing")
        raise UserError(f"{path}: row {row + 2}: Id {frame[ID].iloc[row]!r} is not an integer")
    frame[ID] = ids.astype(np.int64)
    duplicated = frame[ID].duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise UserError(f"{path}: row {row + 2}: duplicate Id {frame[ID].iloc[row]}")
