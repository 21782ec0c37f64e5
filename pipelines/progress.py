"""Progress output that reads well both in a terminal and in a log file.

One policy for every long loop (folds, epochs, batches, image decoding, feature extraction):

- the stream a progress bar writes to (stderr) is a terminal: tqdm bars, as always;
- a Jupyter notebook: tqdm.auto's notebook bars (widgets; text bars without ipywidgets), never
  heartbeat lines or terminal escapes;
- it is not (``make all > log 2>&1``, nohup, a Slurm ``.out``): no bars, only a short heartbeat
  line, at most one every HEARTBEAT_S seconds over all loops together (``fold 2/5 seed 0:
  epoch 14/40, 31 s``), written to the same stream the bar would have used;
- quiet() (``--quiet``, CI): neither bars nor heartbeats.

Result lines (one per finished fold, the CV, where files went) are not progress: they go to
stdout in every case, through say(), which keeps them clear of a bar on screen.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Iterable, Iterator, TextIO

HEARTBEAT_S = 30.0      # at most one heartbeat line this often (all loops together)
clock = time.monotonic  # what the heartbeats' timing reads (tests replace it)

_COUNT_AFTER_UNIT = {"epoch", "fold", "batch", "step"}  # "epoch 14/40", but "1200/25000 img"
_last_beat: list[float] = [-float("inf")]               # when the last heartbeat was written


def quiet() -> bool:
    """Progress output off: under CI, or when PIPELINES_QUIET is set (--quiet)."""
    return bool(os.environ.get("CI") or os.environ.get("PIPELINES_QUIET"))


@contextlib.contextmanager
def quieted(on: bool = True):
    """Progress output off inside the block (with on), as it was after it: --quiet, the API's
    quiet=True and a sweep's trials leave nothing set behind them."""
    if not on:
        yield
        return
    before = os.environ.get("PIPELINES_QUIET")
    os.environ["PIPELINES_QUIET"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PIPELINES_QUIET", None)
        else:
            os.environ["PIPELINES_QUIET"] = before


def interactive(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default: stderr, where bars go) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed file
        return False


def notebook() -> bool:
    """Whether this runs in a Jupyter kernel (a notebook), where stderr is no terminal but bars are
    drawn as widgets."""
    if "IPython" not in sys.modules:  # never imported: not a kernel (and no import cost)
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def fold_label(fold: int, n_folds: int, member: int | None = None, word: str = "seed") -> str:
    """'fold 4/5' (fold 4 of folds 0..4, as in fold4/ and --folds 4), and 'fold 4/5 seed 0' for one of
    several members a fold trains (word='member' for 'fold 4/5 member 0')."""
    label = f"fold {fold}/{n_folds}"
    return label if member is None else f"{label} {word} {member}"


def fold_line(fold: int, n_folds: int, metric: str, score: float, seconds: float,
              epochs: int | list[int] | None = None) -> str:
    """The line for a finished fold: 'fold 2/5: rmse_log 0.12345, kept epoch 14, 12.3 s'
    (kept epochs 14 20 for several members; no epoch for models trained without epochs)."""
    parts = [f"{metric} {score:.5f}"]
    if isinstance(epochs, (list, tuple)):
        kept = [int(e) for e in epochs if e and int(e) > 0]
        if kept:
            parts.append(("kept epoch " if len(kept) == 1 else "kept epochs ") + " ".join(map(str, kept)))
    elif epochs and int(epochs) > 0:
        parts.append(f"kept epoch {int(epochs)}")
    parts.append(f"{seconds:.1f} s")
    return f"{fold_label(fold, n_folds)}: " + ", ".join(parts)


def say(line: str, file: TextIO | None = None) -> None:
    """A result line on stdout (default), flushed so that a log keeps it in order with the
    heartbeats on stderr; on a terminal, written around any progress bar on screen."""
    file = sys.stdout if file is None else file
    from tqdm import tqdm as _tqdm

    if getattr(_tqdm, "_instances", None):  # bars on screen: clear them, write, redraw them
        _tqdm.write(line, file=file)
        file.flush()
    else:
        print(line, file=file, flush=True)


def bar(iterable: Iterable | None = None, desc: str | None = None, total: int | None = None, *,
        unit: str = "it", disable: bool = False, heartbeat: bool = True, file: TextIO | None = None,
        initial: int = 0, leave: bool = False, **tqdm_options: Any):
    """A progress bar over `iterable` (or one updated by hand with update(n) when it is None).

    On a terminal: tqdm, with these options. Otherwise a Heartbeat (or, with heartbeat=False,
    for loops whose results already print a line each, nothing). disable or quiet(): nothing.
    Every kind iterates, and has update(n), set_postfix(**figures), poke(detail) and close()."""
    if disable or quiet():
        return Silent(iterable, total, initial)
    file = sys.stderr if file is None else file
    if notebook():
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, unit=unit, initial=initial, leave=leave, **tqdm_options)
    if interactive(file):
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, unit=unit, file=file, initial=initial, leave=leave,
                    **tqdm_options)
    if not heartbeat:
        return Silent(iterable, total, initial)
    return Heartbeat(iterable, desc, total, unit, file, initial)


def poke(progress: Any, detail: str) -> None:
    """Inside a long step of a loop (a batch of an epoch): lets a Heartbeat speak when it is due,
    naming the step ('batch 120/625'); does nothing to a tqdm bar."""
    if isinstance(progress, Silent):
        progress.poke(detail)


class Silent:
    """A loop without any progress output (the bar's interface, doing nothing)."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, initial: int = 0):
        self.iterable = iterable
        self.total = total
        self.n = initial

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.n += 1

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args: Any, **figures: Any) -> None:
        pass

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        pass

    def poke(self, detail: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Heartbeat(Silent):
    """For a stream that is not a terminal: at most one short line every HEARTBEAT_S seconds
    (counted over every loop, so nested loops do not add up), the first one HEARTBEAT_S seconds
    into the loop, none when the loop is short: 'fold 2/5 seed 0: epoch 14/40, 31 s'."""

    def __init__(self, iterable: Iterable | None, desc: str | None, total: int | None, unit: str,
                 file: TextIO, initial: int = 0):
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        super().__init__(iterable, total, initial)
        self.desc, self.unit, self.file = desc, unit, file
        self.started = clock()
        self.postfix = ""

    def update(self, n: int = 1) -> None:
        self.n += n
        self._maybe_beat(self._count(self.n))

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)

    def set_postfix(self, *args: Any, **figures: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in figures.items())

    def poke(self, detail: str) -> None:
        """Within the item after the n finished ones: 'epoch 15/40, batch 120/625'."""
        self._maybe_beat(f"{self._count(self.n + 1)}, {detail}")

    def _count(self, n: int) -> str:
        of = f"{n}/{self.total}" if self.total else f"{n}"
        return f"{self.unit} {of}" if self.unit in _COUNT_AFTER_UNIT else f"{of} {self.unit}"

    def _maybe_beat(self, where: str) -> None:
        now = clock()
        if now - max(self.started, _last_beat[0]) < HEARTBEAT_S:
            return
        _last_beat[0] = now
        line = f"{self.desc}: {where}" if self.desc else where
        line += f", {now - self.started:.0f} s"
        if self.postfix:
            line += f" ({self.postfix})"
        try:
            sys.stdout.flush()  # the result lines printed so far come first in a shared log
        except (AttributeError, ValueError, OSError):
            pass
        print(line, file=self.file, flush=True)
