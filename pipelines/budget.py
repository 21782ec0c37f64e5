"""A time budget for a block of work: `with budget.until(deadline): ...`.

Inside the block the long loops ask whether they may go on: `check()` (every boosting round,
network epoch and before each fold) raises `OutOfTime` once the deadline has passed, and
`kfold.run` refuses to start a fold that the folds before it say will not fit (`before_fold`).
What was finished stays on disk (a fold's predictions, a network's last epoch), so a run stopped
this way resumes like an interrupted one. Boosted trees do not stop at the deadline: each fold ends
its boosting at its share of the time left (`share_spent`) and keeps the trees it has. Outside a
block every call is a no-op: training without a budget is unchanged.

The deadline is a `time.monotonic()` value held in a context variable, so it holds for the call
that set it (and its threads' copies of the context) and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
from typing import Iterator

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("pipelines_deadline", default=None)
_folds_after: contextvars.ContextVar[int] = contextvars.ContextVar("pipelines_folds_after", default=0)
# an earlier deadline that only boosting's fold shares count to (boosting_until)
_boosting: contextvars.ContextVar[float | None] = contextvars.ContextVar("pipelines_boosting", default=None)
# (start, end) of the fold in training: its share of the time left, shared equally with the folds after it
_fold_share: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar("pipelines_fold_share",
                                                                                         default=None)


class OutOfTime(Exception):
    """The block's deadline passed (or the next fold would pass it)."""


@contextlib.contextmanager
def until(deadline: float | None) -> Iterator[None]:
    """Within the block, check() raises OutOfTime after `deadline` (a time.monotonic() value; None:
    no deadline). An outer, earlier deadline still holds."""
    outer = _deadline.get()
    if deadline is not None and outer is not None:
        deadline = min(deadline, outer)
    token = _deadline.set(deadline if deadline is not None else outer)
    try:
        yield
    finally:
        _deadline.reset(token)


def left() -> float | None:
    """Seconds left before the deadline (negative once past); None without one."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def check(what: str = "training") -> None:
    """Raise OutOfTime when the deadline has passed."""
    remaining = left()
    if remaining is not None and remaining <= 0:
        raise OutOfTime(f"{what}: out of time")


def before_fold(fold: int, seconds_per_fold: list[float]) -> None:
    """Before training `fold`: refuse it when the folds this call trained so far took longer, on
    average, than what is left (the first fold has nothing to go by and only check()s)."""
    remaining = left()
    if remaining is None:
        return
    check(f"fold {fold}")
    each = sum(seconds_per_fold) / len(seconds_per_fold) if seconds_per_fold else 0.0
    if each > remaining:
        raise OutOfTime(f"fold {fold}: the folds so far took {each:.0f} s each, {remaining:.0f} s left")


@contextlib.contextmanager
def fold(folds_after: int) -> Iterator[None]:
    """Within the block one fold trains, and `folds_after` more follow it in this call (kfold.run):
    what before_epoch projects from."""
    after = max(0, int(folds_after))
    remaining, now, boosting = left(), time.monotonic(), _boosting.get()
    if remaining is not None and boosting is not None:
        remaining = min(remaining, boosting - now)
    share = None if remaining is None else (now, now + max(remaining, 0.0) / (1 + after))
    token, share_token = _folds_after.set(after), _fold_share.set(share)
    try:
        yield
    finally:
        _folds_after.reset(token)
        _fold_share.reset(share_token)


@contextlib.contextmanager
def boosting_until(deadline: float | None) -> Iterator[None]:
    """Within the block (and an `until` block), boosting's fold shares count to `deadline`, not to the
    block's: a preset's member of boosted trees leaves the members after it their share, while a
    network, which cannot stop early with a model, may still use all the time there is."""
    token = _boosting.set(deadline)
    try:
        yield
    finally:
        _boosting.reset(token)


def share_spent(fraction: float = 1.0, since: float | None = None) -> bool:
    """Whether the fold in training has used `fraction` of its share of the time (what was left when
    it started, to the boosting deadline if one is set, shared equally with the folds after it),
    counted from `since` when that is later than the fold's start (the first boosting round: a
    library's import and its data set-up, seconds in a fresh process, do not eat the share).
    Boosting stops adding trees there and keeps those it has, so that every fold of a model that
    cannot reach its rounds in time still finishes (models.py), and says so (`cut`). False outside
    a budget or a fold."""
    share = _fold_share.get()
    if share is None:
        return False
    start, end = share
    start = max(start, since) if since is not None else start
    spent = time.monotonic() >= start + fraction * (end - start)
    if spent:
        cut()
    return spent


_cuts: contextvars.ContextVar[list | None] = contextvars.ContextVar("pipelines_cuts", default=None)


def cut() -> None:
    """Boosting ended at its share of the time, not where it would have stopped by itself."""
    cuts = _cuts.get()
    if cuts is not None:
        cuts.append(time.monotonic())


@contextlib.contextmanager
def watch_cuts() -> Iterator[list]:
    """Within the block, the times boosting was cut short by its share (share_spent) are appended to
    the list it yields: a preset leaves such a repeat out of its member's average."""
    cuts: list = []
    token = _cuts.set(cuts)
    try:
        yield cuts
    finally:
        _cuts.reset(token)


def before_epoch(epoch: int, epochs: int, seconds: list[float], what: str = "training") -> None:
    """Before a network's epoch `epoch` (0-based) of `epochs`: check(), then refuse to go on when the
    epochs so far (their `seconds`, the last three averaged, never the fit's first: it carries
    one-time costs, a cold start under load took seconds) say that this fold's remaining epochs and
    the folds after it (each `epochs` long) will not fit in what is left: a network that cannot
    finish stops after a few epochs, not at the deadline."""
    remaining = left()
    if remaining is None:
        return
    check(what)
    recent = [s for s in seconds[1:][-3:] if s > 0]
    if not recent:
        return
    need = sum(recent) / len(recent) * ((epochs - epoch) + epochs * _folds_after.get())
    if need > remaining:
        raise OutOfTime(f"{what}: about {need:.0f} s of epochs to go, {remaining:.0f} s left")


def process_started() -> float:
    """The time.monotonic() value at which this process started (Linux: /proc/self/stat; elsewhere:
    now), so that a command's budget counts the interpreter's start and its imports too."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        age = 0.0
    return time.monotonic() - min(max(age, 0.0), 3600.0)
