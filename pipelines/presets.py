"""Presets: one command trains a competition's portfolio within a time budget and blends it.

    python -m pipelines train COMP --preset best --time-limit 600
    make train COMP=... PRESET=best TIME=600
    pl.train(COMP, preset="best", time_limit=600)

The competition says what its preset trains (`Competition.portfolio(preset, data) -> Plan`: the
members in order, and how to blend them). `api.train(preset=...)` trains them, each as a normal
run named `<prefix>-<member>` (resumable, on the leaderboard), one per core at a time (`outcomes`
here: one process each, one thread each), within the budget (budget.py: boosted trees end each
fold's boosting at its share of the member's share of the time left (`Slot`) and keep their
trees; a network that would not finish in the time left stops at its next epoch or fold, keeps
what it finished for a resume, and is left out), then blends the finished ones into the run
`<prefix>` (out of fold, nested: blending.py), which `submit`, `predict` and `RUN=best` take.

With time to spare, a plan with `rounds` blends the first round (run `<prefix>-r1`), trains the
members that blend weighs again with new folds and seeds (repeated k-fold; runs
`<prefix>-r<N>-<member>`), averages each member's repeats (`<prefix>-<member>-bag`, a plain mean,
each row predicted without it) and blends those.

The budget is the whole command's: it counts from the start of the process (the command line) or
of the call (Python), and `reserve(limit)` of it is kept for the blend and what follows the last
member. Figures (how far over it ran): docs/results.md, "Presets".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .errors import UserError

PRESETS = ("best", "fast")
DEFAULT_LIMIT = {"best": 600.0, "fast": 60.0}   # seconds, when no --time-limit is given
MIN_LIMIT = 10.0


@dataclass(frozen=True)
class Member:
    """One run of a preset: `name` (the run is `<prefix>-<name>`), its config and overrides."""
    name: str
    config: str
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """What a preset trains, in order, and how the finished members are blended (a blending.py
    method), with a note on why these members (printed before training). `rounds` > 1: time left
    once they are done trains the members the first blend weighs again, cheapest first, each
    round with another `seed` (the configs' key for the fold assignment and the models' seeds),
    each member while it fits in what is left; a member's repeats are averaged (a plain mean: each
    row predicted without it), and the blend is of those averages."""
    members: tuple[Member, ...]
    method: str = "weights"
    note: str = ""
    rounds: int = 1


ROUND_MARGIN = 1.25   # a member is trained again only with this many times its first time left


@dataclass(frozen=True)
class Slot:
    """When a member must finish: the preset's `deadline` (time.monotonic()), and the member's
    share of it (for its boosted trees), shared with the `after` members planned after it, which
    `workers` processes train."""
    deadline: float
    after: int = 0
    workers: int = 1
    needs: float = 1.0   # seconds it must have left to start at all

    def member_deadline(self, now: float) -> float:
        """The member's own deadline as it starts: an equal share of the time left with the members
        its process is still to train (those after it, spread over the processes); the last ones
        get what is left. Time a member leaves unused goes to those after it."""
        return now + max(self.deadline - now, 0.0) / (1.0 + self.after / self.workers)


def reserve(limit: float) -> float:
    """Seconds of the budget kept for the blend and the end of the command (the interpreter's exit
    alone takes about a second with torch loaded): 5 s and 2% of the budget, at most 60 s."""
    return min(5.0 + 0.02 * limit, 60.0)


def check(preset: str | None, time_limit: float | None, config: str | None = None,
          overrides: Sequence | dict | None = None, folds=None) -> None:
    if preset is None:
        if time_limit is not None:
            raise UserError("--time-limit goes with --preset (e.g. --preset best --time-limit 600)")
        return
    if preset not in PRESETS:
        raise UserError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    if config is not None or overrides:
        raise UserError(f"--preset {preset} chooses its members' configs; leave out --config and --set "
                        f"(train one config without --preset)")
    if folds:
        raise UserError(f"--preset {preset} trains every fold; leave out --folds")
    if time_limit is not None and time_limit < MIN_LIMIT:
        raise UserError(f"--time-limit {time_limit:g}: give at least {MIN_LIMIT:g} seconds")


def workers(members: int) -> int:
    """Members trained at once: one per usable core (PIPELINES_PRESET_WORKERS overrides), at most one
    per member; each is one process with one thread."""
    import os

    given = os.environ.get("PIPELINES_PRESET_WORKERS", "")
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    wanted = int(given) if given.isdigit() and int(given) > 0 else cores
    return max(1, min(wanted, members))


def _echo(outcome: dict) -> dict:
    if outcome["output"]:
        print(outcome["output"], end="", flush=True)
    return outcome


def _worker_init() -> None:
    import os

    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = "1"


def _in_parallel(job, jobs: list[tuple], workers: int):
    """The members' outcomes as they finish, `workers` processes at a time, in the plan's order of
    starting; each member's output is printed whole when it finishes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or torch state
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
        futures = [pool.submit(job, *args, True, True) for args in jobs]
        for future in as_completed(futures):
            yield _echo(future.result())


def outcomes(job, jobs: list[tuple], workers: int, quiet: bool):
    """job(*args, quiet, capture) for each args of `jobs` (each member's outcome, a dict with its
    name, status, line and output): in this process one after the other, or in `workers` processes
    whose output is printed whole as each member finishes."""
    if workers == 1:
        return {outcome["member"]: outcome for outcome in (_echo(job(*args, quiet, False)) for args in jobs)}
    return {outcome["member"]: outcome for outcome in _in_parallel(job, jobs, workers)}
