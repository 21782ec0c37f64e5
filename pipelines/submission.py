"""Kaggle submission files: validated against the competition's rules before writing."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import atomic
from .errors import UserError


def validate(frame: pd.DataFrame, columns: list[str], expected_ids, value_ok: Callable[[np.ndarray], np.ndarray],
             value_rule: str, where: str = "submission") -> None:
    """Refuse, with one line, a submission that Kaggle would reject or score wrongly."""
    if list(frame.columns) != columns:
        raise UserError(f"{where}: header must be {','.join(columns)}, got {','.join(map(str, frame.columns))}")
    id_column, value_column = columns
    ids = frame[id_column].to_numpy()
    duplicated = pd.Series(ids).duplicated()
    if duplicated.any():
        raise UserError(f"{where}: {id_column} {ids[np.flatnonzero(duplicated)[0]]} appears more than once")
    expected = set(np.asarray(expected_ids).tolist())
    present = set(ids.tolist())
    missing, extra = expected - present, present - expected
    if missing:
        raise UserError(f"{where}: {len(missing)} {id_column}(s) missing, e.g. {sorted(missing)[0]}")
    if extra:
        raise UserError(f"{where}: {len(extra)} unexpected {id_column}(s), e.g. {sorted(extra)[0]}")
    values = pd.to_numeric(frame[value_column], errors="coerce").to_numpy(dtype=float)
    bad = ~value_ok(values) | ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UserError(f"{where}: row {row + 2} ({id_column} {ids[row]}): {value_column} "
                        f"{frame[value_column].iloc[row]!r} is not {value_rule}")


def write(frame: pd.DataFrame, path: str | Path, **rules) -> Path:
    """Validate, then write atomically; a refused submission leaves no file behind."""
    path = Path(path)
    validate(frame, where=str(path), **rules)
    atomic.write_text(path, frame.to_csv(index=False))
    return path


def read(path: str | Path, **rules) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: submission file not found")
    try:
        frame = pd.read_csv(path, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise UserError(f"{path}: not a readable CSV") from None
    validate(frame, where=str(path), **rules)
    return frame
