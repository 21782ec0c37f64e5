"""What a finished run leaves behind: run.json, metrics.json, and a registry row."""

from __future__ import annotations

import contextlib

import json
import platform
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from . import atomic, competition as competitions, config as configs, registry as leaderboard, paths, resume
from .errors import UserError
from .config import as_dict, config_hash

BEST = "best"   # --run best: the finished run with the best CV that has test predictions (resolve_run)


def code_version() -> dict:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {"commit": commit or "unknown", "dirty": dirty}


_listeners: list[list[Path]] = []   # inside recorded(): the run folders recorded so far


@contextlib.contextmanager
def recorded():
    """The run folders `record` writes inside the block, in order (the API returns the last)."""
    found: list[Path] = []
    _listeners.append(found)
    try:
        yield found
    finally:
        _listeners.remove(found)


def record(run_dir: Path, *, competition: str, config, result, metric: str, greater_is_better: bool,
           wall_s: float, device: str, data: dict, extra: dict | None = None, register: bool = True) -> dict:
    """Write run.json and metrics.json (atomically) and append the registry row (unless register
    is False: a resumed run whose row is already in the registry). Both carry the run's
    training_id (see training_id), which the leaderboard uses to tell a restarted run from its
    earlier training."""
    cv = float(result.cv[metric])
    row = {
        "run": run_dir.name, "competition": competition, "config": config.name,
        "config_hash": config_hash(config), "metric": metric, "greater_is_better": greater_is_better,
        "cv": cv, "cv_std": float(result.cv[f"{metric}_fold_std"]),
        "fold_scores": [float(s[metric]) for s in result.fold_scores],
        "folds": len(result.fold_scores), "wall_s": round(wall_s, 2), "device": device,
        "date": datetime.now().isoformat(timespec="seconds"), "data": data, "code": code_version(),
        "host": platform.node(), "path": str(run_dir), "deterministic": _deterministic(),
    }
    row["params"] = params(competition, config)
    row.update(extra or {})
    row.update(training_id(run_dir, register, config.name))
    atomic.write_json(run_dir / "metrics.json", {"cv": result.cv, "folds": result.fold_scores})
    atomic.write_json(run_dir / "run.json", {**row, "config_values": as_dict(config)})
    if register:
        leaderboard.append(row)
    for found in _listeners:
        found.append(Path(run_dir))
    return row


def params(competition: str, config) -> dict | None:
    """The run's config values that differ from what the config file of its name gives (its --set
    overrides), for the leaderboard's params column: configs/<competition>/ first, then the folder of
    the competition's kind (configs/tabular/, configs/images/). None when that cannot be told."""
    folders = [competition]
    try:
        folders.append(competitions.load(competition).kind)
    except Exception:  # an unregistered name (a run written by hand): its own folder only
        pass
    try:
        found = configs.params(config, folders)
    except Exception:  # never lose a run over a column of the leaderboard
        return None
    return None if found is None else json.loads(json.dumps(found, default=str))


def training_id(run_dir: Path, register: bool = True, config_name: str | None = None) -> dict:
    """{"training_id": ID} for the training now in run_dir: one id per training, kept in its
    run_state.json, so a resumed run (more folds, a rerun) keeps it and a --restart (which
    writes a fresh run_state.json) gets a new one. A folder without run_state.json (a blend)
    gets a new id each time it is recorded, and so does one whose run_state.json names another
    config (a blend written over a trained run's folder). Called under the run's assembly lock.

    A training first recorded before ids existed (recorded_folds set, no id) that is recorded
    again gets its id with "continues_legacy": its earlier registry rows, which have no id, are
    the same training. Re-recorded without a registry row, it stays without an id, like them."""
    state = resume.read_state(run_dir)
    if state is not None and config_name is not None and state.get("config_name") != config_name:
        state = None
    if state is not None and state.get("training_id"):
        return {"training_id": state["training_id"]}
    if state is not None and state.get("recorded_folds") is not None and not register:
        return {}
    made = {"training_id": uuid.uuid4().hex}
    if state is not None:
        atomic.write_json(run_dir / resume.STATE, {**state, **made})
        if state.get("recorded_folds") is not None:
            made["continues_legacy"] = True
    return made


def _deterministic() -> bool:
    """Whether torch ran with deterministic algorithms only (--deterministic)."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.are_deterministic_algorithms_enabled())


def load_run(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def summary_lines(row: dict, result) -> list[str]:
    metric = row["metric"]
    per_fold = " ".join(f"{s[metric]:.5f}" for s in result.fold_scores)
    return [
        f"run:  {row['run']}",
        f"dir:  {row['path']}",
        f"CV {metric}: {row['cv']:.5f} (out-of-fold, {result.cv['rows_scored']} rows)",
        f"fold mean {float(np.mean([s[metric] for s in result.fold_scores])):.5f} "
        f"+- {row['cv_std']:.5f}; per fold: {per_fold}",
        f"wall time: {row['wall_s']:.1f} s on {row['device']}",
    ]


def stored_test_predictions(competition: str, run: str, why_missing: str):
    """A finished run's record and its fold-averaged test predictions, for `submit`."""
    run_dir = paths.find_run(competition, run)
    source = run_dir / "test_predictions.csv"
    if not source.exists():
        raise UserError(f"{run_dir}: the run has no test predictions ({why_missing})")
    return run_dir, load_run(run_dir), pd.read_csv(source)


def submission_path(competition: str, run_dir: Path, out: str | None) -> Path:
    return Path(out) if out else paths.submissions_dir(competition) / f"{run_dir.name}.csv"


def _complete(run: dict) -> bool:
    """Whether every fold of the run was trained (a run of `--folds 0` scores one fold of five)."""
    planned = (run.get("config_values") or {}).get("folds")
    scored = run.get("folds")
    return not (isinstance(planned, int) and isinstance(scored, int) and scored < planned)


def best_run(competition: str) -> tuple[Path, dict, int]:
    """(folder, run.json, how many candidates) of the competition's finished run with the best CV
    (direction-aware; blends included) among those with test_predictions.csv and every fold
    trained; ties go to the newest. UserError when there is none."""
    candidates, partial = [], 0
    for run_json in sorted(paths.runs_dir(competition).glob("*/run.json")):
        run_dir = run_json.parent
        if not (run_dir / "test_predictions.csv").is_file():
            continue
        try:
            run = json.loads(run_json.read_text())
            cv = float(run["cv"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not np.isfinite(cv):
            continue
        if not _complete(run):
            partial += 1
            continue
        candidates.append((run_dir, run, cv))
    if not candidates:
        more = f" ({partial} trained on only some folds)" if partial else ""
        raise UserError(f"--run {BEST}: no finished run of {competition} in {paths.runs_dir(competition)} has "
                        f"test predictions (test_predictions.csv){more}; train one first")
    def key(item):
        run_dir, run, cv = item
        return (-cv if run.get("greater_is_better") else cv, _reverse(str(run.get("date", ""))), run_dir.name)
    run_dir, run, _ = min(candidates, key=key)
    return run_dir, run, len(candidates)


def _reverse(text: str) -> tuple:
    """A sort key that orders strings newest (largest) first."""
    return tuple(-ord(c) for c in text)


def resolve_run(competition: str, run: str, quiet: bool = False) -> str:
    """A --run value as the verbs take it: "best" is the run best_run picks (its name, printed with
    its CV), unless a run is literally named "best" (that one wins); any other value is returned as
    it is (paths.find_run reads it). One place for predict, report, submit and compare."""
    if run != BEST:
        return run
    try:
        paths.find_run(competition, run)
    except UserError:
        pass
    else:
        if not quiet:
            print(f"--run {BEST}: a run is named {BEST!r}; using it (rename it to pick the best CV instead)")
        return run
    run_dir, record, count = best_run(competition)
    if not quiet:
        direction = "higher" if record.get("greater_is_better") else "lower"
        print(f"--run {BEST}: {run_dir.name} (CV {record.get('metric', '')} {float(record['cv']):.5f}, "
              f"config {record.get('config', '?')}; the best of {count} finished run(s) with test "
              f"predictions, {direction} is better)")
    return run_dir.name
