"""Where generated files live: data/, runs/, submissions/ under the project home.

The home is the current folder unless PIPELINES_HOME says otherwise (tests use a
temporary one).
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

from .errors import UserError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def home() -> Path:
    return Path(os.environ.get("PIPELINES_HOME", ".")).resolve()


def data_dir(competition: str) -> Path:
    return home() / "data" / competition


def runs_dir(competition: str) -> Path:
    return home() / "runs" / competition


def submissions_dir(competition: str) -> Path:
    return home() / "submissions" / competition


def registry_path() -> Path:
    return home() / "runs" / "registry.jsonl"


REPORT_FOLDER = "report"


def report_path(run_dir: str | Path) -> Path:
    """Where a run's report (pipelines/report.py) is written: <run_dir>/report/report.md."""
    return Path(run_dir) / REPORT_FOLDER / "report.md"


def default_run_name(config_name: str) -> str:
    return f"{config_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UserError(f"run name {name!r}: use letters, digits, '.', '_' and '-' only")
    return name


def new_run_dir(competition: str, name: str, restart: bool = False) -> Path:
    path = runs_dir(competition) / check_name(name)
    if path.exists() and any(path.iterdir()) and not restart:
        raise UserError(f"run {name!r} already exists in {path}; choose another --name or pass --restart")
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_run(competition: str, run: str) -> Path:
    """A run by name (under runs/<competition>/) or by path."""
    candidate = Path(run)
    if candidate.is_dir() and (candidate / "run.json").exists():
        return candidate
    path = runs_dir(competition) / run
    if not (path / "run.json").exists():
        known = sorted(p.name for p in runs_dir(competition).glob("*") if (p / "run.json").exists())
        hint = f"; known runs: {', '.join(known[-5:])}" if known else ""
        raise UserError(f"no finished run {run!r} for {competition} in {runs_dir(competition)}{hint}")
    return path


def no_data_error(competition: str, folder: Path, on_kaggle: bool) -> UserError:
    from . import hints

    """What to do when data/<competition>/ holds no data: download it (a Kaggle competition), or copy
    the user's own files there; either way, or train with --data DIR."""
    if on_kaggle:
        how = f"run `{hints.prepare(competition)}` (Kaggle download)"
    else:
        how = f"copy your files there with `{hints.prepare(competition, 'DIR')}`"
    return UserError(f"no {competition} data in {folder}: {how}, or pass --data DIR")
