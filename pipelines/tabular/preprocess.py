"""Preprocessing fitted inside each fold (on the fold's training rows only), with a JSON state.

- numeric columns: missing values filled with the column's median, plus a 0/1 "was missing"
  column for each column that had missing values (`missing_indicator`); clipped to the
  [q, 1 - q] quantiles of the training rows (`clip_quantile`; 0 clips to the training range, so
  a test value beyond anything seen is not extrapolated linearly); then standardised
  (`scaling: standard`) or left as they are (`scaling: none`);
- categorical columns: one-hot of the `max_levels` most frequent levels seen at least
  `min_level_count` times (a missing value is a level of its own), plus an "other" column for
  every rarer level and for levels never seen in training, so a new level at test time is fine.

The state holds only numbers, strings and lists: it is saved in each fold's meta.json and read
back for prediction; nothing is unpickled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import UserError

MISSING = "<missing>"
OTHER = "<other>"
VERSION = 1


class Preprocessor:
    """fit(frame) learns the state from training rows; transform(frame) returns a float32 matrix.
    Frames are data.feature_frame's: numeric columns as floats, categorical ones as text."""

    def __init__(self, numeric: list[str] = (), categorical: list[str] = (), *, missing_indicator: bool = True,
                 scaling: str = "standard", clip_quantile: float = 0.0, max_levels: int = 30,
                 min_level_count: int = 3, state: dict | None = None):
        if state is not None and state.get("version") != VERSION:
            raise UserError(f"preprocessing state of version {state.get('version')!r}; this code reads {VERSION}")
        self.state = state or {"version": VERSION, "numeric": list(numeric), "categorical": list(categorical),
                               "missing_indicator": bool(missing_indicator), "scaling": scaling,
                               "clip_quantile": float(clip_quantile), "max_levels": int(max_levels),
                               "min_level_count": int(min_level_count)}
        self.fitted = state is not None

    def fit(self, frame: pd.DataFrame) -> "Preprocessor":
        state = self.state
        values = frame[state["numeric"]].to_numpy(dtype=np.float64)
        with np.errstate(all="ignore"):
            medians = [float(np.nanmedian(v)) if np.isfinite(v).any() else 0.0 for v in values.T]
        missing = np.isnan(values)
        state["median"] = medians
        state["indicator"] = ([c for c, m in zip(state["numeric"], missing.any(axis=0)) if m]
                              if state["missing_indicator"] else [])
        filled = np.where(missing, np.asarray(medians), values)
        q = state["clip_quantile"]
        low = np.quantile(filled, q, axis=0) if len(filled) else np.zeros(filled.shape[1])
        high = np.quantile(filled, 1 - q, axis=0) if len(filled) else np.zeros(filled.shape[1])
        clipped = np.clip(filled, low, high)
        if state["scaling"] == "standard":
            centre, spread = clipped.mean(axis=0), clipped.std(axis=0)
        else:
            centre, spread = np.zeros(clipped.shape[1]), np.ones(clipped.shape[1])
        state["low"], state["high"] = [float(v) for v in low], [float(v) for v in high]
        state["mean"] = [float(v) for v in centre]
        state["std"] = [float(v) if v > 1e-12 else 1.0 for v in spread]
        levels = {}
        for column in state["categorical"]:
            counts = frame[column].fillna(MISSING).value_counts()
            ranked = sorted(((int(n), str(level)) for level, n in counts.items()), key=lambda t: (-t[0], t[1]))
            levels[column] = [level for n, level in ranked if n >= state["min_level_count"]][:state["max_levels"]]
        state["levels"] = levels
        self.fitted = True
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError("Preprocessor.transform called before fit")
        state = self.state
        values = frame[state["numeric"]].to_numpy(dtype=np.float64)
        missing = np.isnan(values)
        filled = np.where(missing, np.asarray(state["median"]), values)
        clipped = np.clip(filled, np.asarray(state["low"]), np.asarray(state["high"]))
        blocks = [(clipped - np.asarray(state["mean"])) / np.asarray(state["std"])]
        if state["indicator"]:
            positions = [state["numeric"].index(c) for c in state["indicator"]]
            blocks.append(missing[:, positions].astype(np.float64))
        for column in state["categorical"]:
            levels = state["levels"][column]
            text = frame[column].fillna(MISSING).astype(str).to_numpy()
            one_hot = (text[:, None] == np.asarray(levels, dtype=object)[None, :]).astype(np.float64)
            other = 1.0 - one_hot.sum(axis=1, keepdims=True)
            blocks.append(np.concatenate([one_hot, other], axis=1))
        return np.concatenate(blocks, axis=1).astype(np.float32)

    @property
    def feature_names(self) -> list[str]:
        state = self.state
        names = list(state["numeric"]) + [f"{c} missing" for c in state["indicator"]]
        for column in state["categorical"]:
            names += [f"{column}={level}" for level in state["levels"][column]] + [f"{column}={OTHER}"]
        return names

    @property
    def n_features(self) -> int:
        return len(self.feature_names)
