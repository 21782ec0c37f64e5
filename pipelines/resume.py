"""Which run folder a `train` command writes to: a new one, or the unfinished run it resumes.

A run folder holds run_state.json from its first moment: the competition, the resolved
config, the data fingerprint and the code fingerprint (code_fingerprint: a hash of every *.py of
the pipelines package, and one per file; the README, docs, tests and configs are not code here,
the config being recorded on its own). Rerunning a command resumes the run when they all match:

  * with --name NAME: that run; a different config, data or code is refused with one line
    naming the first key (or data file) that differs, or the package files that changed, so
    folds trained by other code are never combined with this code's folds;
  * without --name: the newest unfinished run with this config, data and code, if any (so
    "rerun the same command" works even with the default timestamped names); a run of other
    code is not picked, and a new run is made instead;
  * --restart starts over: the named run's folder is emptied, or a new run is made.

A run_state.json written before the code fingerprint (no "code" key) resumes as before, its
code unchecked. Processes training folds of one run in parallel run the same code, so they
share its fingerprint and join the run.

Locks (flock: the system releases them when the process dies, even by SIGKILL):

  * <run>/.lock: shared by every process training the run, exclusive for --restart (which empties
    the folder), so a restart never pulls the run from under another process;
  * <run>/fold<k>/.lock: exclusive while a process trains fold k, so several processes (--folds
    0,1 on one GPU, --folds 2,3 on another) train disjoint folds of one run at once, and a fold
    being trained elsewhere is left to that process;
  * <run>/.assemble.lock: exclusive while a process puts the run together (oof.csv, CV, registry):
    the last process to finish does it, once every fold is done (kfold.run).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator

from . import atomic, paths
from .config import as_dict, config_hash, first_difference
from .errors import UserError

STATE = "run_state.json"
LOCK = ".lock"
ASSEMBLE_LOCK = ".assemble.lock"
_held: dict[str, int] = {}


@dataclass
class RunDir:
    path: Path
    resumed: bool            # the folder held an earlier attempt of this run
    recorded_folds: list | None  # folds of the last recorded result, None if never recorded


def _values(config) -> dict:
    return {k: v for k, v in as_dict(config).items() if k != "name"}


def _try_flock(file: Path, exclusive: bool = True) -> tuple[int | None, str]:
    """(fd, "") holding a non-blocking flock on `file`, or (None, holder's pid) when another open
    file holds a conflicting one."""
    file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        return None, holder
    if exclusive:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd, ""


def _lock(path: Path, exclusive: bool = False) -> None:
    key = str(path.resolve())
    if key in _held:
        if exclusive:
            _upgrade(path)
        return
    fd, holder = _try_flock(path / LOCK, exclusive)
    if fd is None:
        raise UserError(f"run {path.name!r} is being trained by another process (pid {holder}); wait for it "
                        f"to finish or choose another --name" + (" (--restart empties the run, so it waits for "
                                                                  "every process on it)" if exclusive else ""))
    if not exclusive:  # the pid of a process on the run, for the messages above
        os.pwrite(fd, f"{os.getpid()}\n".ljust(12).encode(), 0)
    _held[key] = fd


def _upgrade(path: Path) -> None:
    fd = _held[str(path.resolve())]
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UserError(f"run {path.name!r} is being trained by another process; --restart waits for every "
                        f"process on the run to finish") from None


def _share(path: Path) -> None:
    fcntl.flock(_held[str(path.resolve())], fcntl.LOCK_SH)


def release(path: Path) -> None:
    """Let go of the run's locks, the fold locks and the assembly lock included (the process
    exiting does the same)."""
    root = str(Path(path).resolve())
    for key in [k for k in _held if k == root or k.startswith(root + os.sep) or k == root + "#assemble"]:
        os.close(_held.pop(key))


# --------------------------------------------------------------------------- folds in parallel

def _fold_lock(path: Path, fold: int) -> Path:
    return Path(path) / f"fold{fold}" / LOCK


def lock_fold(path: Path, fold: int) -> bool:
    """Claim fold k of the run for this process; False when another process trains it now."""
    file = _fold_lock(path, fold)
    key = str(file.resolve())
    if key in _held:
        return True
    for attempt in range(5):  # another process may be probing the lock for a moment (fold_holder)
        fd, _ = _try_flock(file)
        if fd is not None:
            _held[key] = fd
            return True
        time.sleep(0.1)
    return False


def release_fold(path: Path, fold: int) -> None:
    fd = _held.pop(str(_fold_lock(path, fold).resolve()), None)
    if fd is not None:
        os.close(fd)


def fold_holder(path: Path, fold: int) -> str | None:
    """The pid of another process training fold k now, or None."""
    file = _fold_lock(path, fold)
    if str(file.resolve()) in _held or not file.exists():
        return None
    fd, holder = _try_flock(file)
    if fd is None:
        return holder
    os.close(fd)
    return None


def begin_assembly(path: Path) -> None:
    """Wait for, then hold, the run's assembly lock (released by release()): one process at a time
    decides whether every fold is done and, if so, writes the run's results."""
    key = str(Path(path).resolve()) + "#assemble"
    if key in _held:
        return
    fd = os.open(Path(path) / ASSEMBLE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _held[key] = fd


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


def _added_at_default(saved: dict, config) -> dict:
    """This config's values without the keys added to the schema since `saved` was written that
    are at their defaults (e.g. a new speed switch): an older run still resumes."""
    values = _values(config)
    try:
        defaults = as_dict(type(config)())
    except TypeError:  # a schema without defaults for every key
        return values
    return {k: v for k, v in values.items() if k in saved or k not in defaults or v != defaults[k]}


@functools.lru_cache(maxsize=None)
def code_fingerprint(root: Path | None = None) -> dict:
    """{"hash": H, "files": {"pipelines/x.py": h, ...}} over every *.py of the package folder
    (`root`, by default this package's): a resumed run must not combine folds trained by other
    code. Short sha256s, the per-file ones so that a refusal can name the files that changed.
    Computed once per process (it reads every file of the package)."""
    root = Path(root or Path(__file__).resolve().parent)
    files = {f.relative_to(root.parent).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()[:12]
             for f in sorted(root.rglob("*.py")) if not f.name.startswith(".") and f.is_file()}
    overall = hashlib.sha256("".join(f"{k} {v}\n" for k, v in files.items()).encode()).hexdigest()[:16]
    return {"hash": overall, "files": files}


def _code_changes(saved: dict, now: dict) -> str:
    was, has = saved.get("files", {}), now["files"]
    changes = [f"{f} {'added' if f not in was else 'removed' if f not in has else 'changed'}"
               for f in sorted(set(was) | set(has)) if was.get(f) != has.get(f)]
    named = ", ".join(changes[:3]) + (f", and {len(changes) - 3} more" if len(changes) > 3 else "")
    return f"the code changed since it started ({named})" if changes else "the code changed since it started"


def difference(state: dict, competition: str, config, data: dict) -> str | None:
    """What differs between a stored run state and this command, in words; None if nothing.
    A state without a code fingerprint (written before it was recorded) matches any code."""
    if state.get("competition") != competition:
        return f"it is a {state.get('competition')} run"
    saved = state.get("config", {})
    differs = first_difference(saved, _added_at_default(saved, config))
    if differs is not None:
        was, has = differs.split(" vs ", 1)
        return f"it was started with {was}, this command has {has}"
    saved_data = state.get("data", {})
    for key in sorted(set(saved_data) | set(data)):
        if saved_data.get(key) != data.get(key):
            return (f"it was started on other data ({key} {saved_data.get(key)!r}, now {data.get(key)!r})")
    saved_code = state.get("code")
    if isinstance(saved_code, dict) and saved_code.get("hash") != code_fingerprint()["hash"]:
        return _code_changes(saved_code, code_fingerprint())
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
    with _opening(path):  # two processes starting one run at once (folds in parallel) open it one after the other
        return _open(path, competition, config, data, restart)


@contextlib.contextmanager
def _opening(path: Path) -> Iterator[None]:
    key = str(path.resolve()) + "#assemble"
    if key in _held:
        yield
        return
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / ASSEMBLE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _open(path: Path, competition: str, config, data: dict, restart: bool) -> RunDir:
    state = read_state(path) if path.is_dir() else None
    existing = path.is_dir() and any(p.name not in (LOCK, ASSEMBLE_LOCK) for p in path.iterdir())
    if existing and not restart:
        if state is None:
            raise UserError(f"run {path.name!r} already exists in {path} without {STATE} (an older or a blend "
                            f"run), so it cannot be resumed; pass --restart to replace it or choose another --name")
        why = difference(state, competition, config, data)
        if why is not None:
            raise UserError(f"run {path.name!r} cannot be resumed: {why}; pass --restart to start it over, "
                            f"or choose another --name")
    joining = existing and not restart and _locked_elsewhere(path)  # another process trains it now
    _lock(path, exclusive=restart)
    if existing and restart:
        for child in path.iterdir():
            if child.name in (LOCK, ASSEMBLE_LOCK):
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        existing, state = False, None
    if not existing:
        state = {"competition": competition, "config_name": config.name, "config_hash": config_hash(config),
                 "config": _values(config), "data": data, "code": code_fingerprint(),
                 "created": datetime.now().isoformat(timespec="seconds"),
                 "recorded_folds": None}
        atomic.write_json(path / STATE, state)
        if restart:
            _share(path)  # from here on, other processes may train other folds of the run
    elif joining:
        print(f"joining run {path.name}: another process is training folds of it; this one trains the folds "
              f"that are neither finished nor taken (folds in parallel)")
    else:
        print(f"resuming run {path.name} (same config and data): finished folds are kept, unfinished ones "
              f"go on from their last epoch; --restart starts over")
    return RunDir(path=path, resumed=existing, recorded_folds=state.get("recorded_folds"))


def refresh(run: RunDir) -> None:
    """Re-read which folds were last recorded (another process on the run may have recorded since)."""
    state = read_state(run.path)
    if state is not None:
        run.recorded_folds = state.get("recorded_folds")


def mark_recorded(run: RunDir, folds: list[int]) -> None:
    """After the registry row: a rerun of the same folds will not append another."""
    state = read_state(run.path) or {}
    atomic.write_json(run.path / STATE, {**state, "recorded_folds": sorted(int(f) for f in folds)})
    run.recorded_folds = sorted(int(f) for f in folds)
