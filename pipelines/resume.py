"""Which run folder a `train` command writes to: a new one, or the unfinished run it resumes.

A run folder holds run_state.json from its first moment: the competition, the resolved
config and the data fingerprint. Rerunning a command resumes the run when they match:

  * with --name NAME: that run; a different config or data is refused with a message
    naming the first key (or data file) that differs;
  * without --name: the newest unfinished run with this config and data, if any (so
    "rerun the same command" works even with the default timestamped names);
  * --restart starts over: the named run's folder is emptied, or a new run is made.

While a process trains a run it holds an exclusive lock on <run>/.lock (released by the
system when the process dies, even by SIGKILL), so two processes never train one run.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import atomic, paths
from .config import as_dict, config_hash, first_difference
from .errors import UserError

STATE = "run_state.json"
LOCK = ".lock"
_held: dict[str, int] = {}


@dataclass
class RunDir:
    path: Path
    resumed: bool            # the folder held an earlier attempt of this run
    recorded_folds: list | None  # folds of the last recorded result, None if never recorded


def _values(config) -> dict:
    return {k: v for k, v in as_dict(config).items() if k != "name"}


def _lock(path: Path) -> None:
    key = str(path.resolve())
    if key in _held:
        return
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise UserError(f"run {path.name!r} is being trained by another process (pid {holder}); wait for it "
                        f"to finish or choose another --name") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = fd


def release(path: Path) -> None:
    """Let go of the run's lock (the process exiting does the same)."""
    fd = _held.pop(str(Path(path).resolve()), None)
    if fd is not None:
        os.close(fd)


def _locked_elsewhere(path: Path) -> bool:
    if str(path.resolve()) in _held or not (path / LOCK).exists():
        return False
    fd = os.open(path / LOCK, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def read_state(path: Path) -> dict | None:
    try:
        state = json.loads((path / STATE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return state if isinstance(state, dict) else None


def difference(state: dict, competition: str, config, data: dict) -> str | None:
    """What differs between a stored run state and this command, in words; None if nothing."""
    if state.get("competition") != competition:
        return f"it is a {state.get('competition')} run"
    differs = first_difference(state.get("config", {}), _values(config))
    if differs is not None:
        was, has = differs.split(" vs ", 1)
        return f"it was started with {was}, this command has {has}"
    saved_data = state.get("data", {})
    for key in sorted(set(saved_data) | set(data)):
        if saved_data.get(key) != data.get(key):
            return (f"it was started on other data ({key} {saved_data.get(key)!r}, now {data.get(key)!r})")
    return None


def _unfinished_match(competition: str, config, data: dict) -> Path | None:
    root = paths.runs_dir(competition)
    if not root.is_dir():
        return None
    found = []
    for path in root.iterdir():
        state = read_state(path) if path.is_dir() else None
        if (state is None or state.get("recorded_folds") is not None or state.get("config_name") != config.name
                or difference(state, competition, config, data) is not None or _locked_elsewhere(path)):
            continue
        found.append((state.get("created", ""), path.name, path))
    return max(found)[2] if found else None


def open_run(competition: str, name: str | None, config, data: dict, restart: bool = False) -> RunDir:
    """The folder this train command writes to, locked; see the module docstring."""
    if name is None and not restart:
        match = _unfinished_match(competition, config, data)
        if match is not None:
            name = match.name
    if name is None:  # a new run: the default name, made unique if a run began in the same second
        base = paths.default_run_name(config.name)
        name = next(n for n in (base if i == 1 else f"{base}-{i}" for i in range(1, 1000))
                    if not (paths.runs_dir(competition) / n).exists())
    path = paths.runs_dir(competition) / paths.check_name(name)
    state = read_state(path) if path.is_dir() else None
    existing = path.is_dir() and any(p.name != LOCK for p in path.iterdir())
    if existing and not restart:
        if state is None:
            raise UserError(f"run {path.name!r} already exists in {path} without {STATE} (an older or a blend "
                            f"run), so it cannot be resumed; pass --restart to replace it or choose another --name")
        why = difference(state, competition, config, data)
        if why is not None:
            raise UserError(f"run {path.name!r} cannot be resumed: {why}; pass --restart to start it over, "
                            f"or choose another --name")
    _lock(path)
    if existing and restart:
        for child in path.iterdir():
            if child.name == LOCK:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        existing, state = False, None
    if not existing:
        state = {"competition": competition, "config_name": config.name, "config_hash": config_hash(config),
                 "config": _values(config), "data": data, "created": datetime.now().isoformat(timespec="seconds"),
                 "recorded_folds": None}
        atomic.write_json(path / STATE, state)
    else:
        print(f"resuming run {path.name} (same config and data): finished folds are kept, unfinished ones "
              f"go on from their last epoch; --restart starts over")
    return RunDir(path=path, resumed=existing, recorded_folds=state.get("recorded_folds"))


def mark_recorded(run: RunDir, folds: list[int]) -> None:
    """After the registry row: a rerun of the same folds will not append another."""
    state = read_state(run.path) or {}
    atomic.write_json(run.path / STATE, {**state, "recorded_folds": sorted(int(f) for f in folds)})
    run.recorded_folds = sorted(int(f) for f in folds)
