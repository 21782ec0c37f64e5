"""The Python API: the verbs as functions with typed arguments, each returning something to use.

    import pipelines as pl
    run = pl.train("house-prices", "lasso")           # a Run: its CV, folder, out-of-fold and test predictions
    print(run.cv, run.folder)
    pl.submit("house-prices", run.name)              # the validated submission's path
    pl.leaderboard("house-prices")                   # every recorded run, best CV first (a DataFrame)

The command line (`python -m pipelines VERB ...`, and the Makefile, which calls it), `sweep` and the
tests go through these functions: one verb layer for every competition. Each call leaves no global
state behind (quiet=True and deterministic=True hold for the call only). Errors a user can fix are
`pipelines.errors.UserError`, one line each.

`predict` lives here, once for every competition: a trained run's fold checkpoints (or, for a blend,
its members, combined as the blend combined them) predict a new test file or folder, and the
competition writes the result as its submission (`Competition.write_predicted`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import competition as competitions
from .errors import UserError


@dataclass(frozen=True)
class Run:
    """A finished run (or blend): where it is and what it scored. The files are read when asked for."""
    competition: str
    name: str
    folder: Path

    @property
    def info(self) -> dict:
        """Its run.json: config, CV, per-fold scores, wall time, data fingerprints, ..."""
        from . import runs

        return runs.load_run(self.folder)

    @property
    def cv(self) -> float:
        return float(self.info["cv"])

    @property
    def metric(self) -> str:
        return str(self.info["metric"])

    @property
    def fold_scores(self) -> list[float]:
        return [float(s) for s in self.info.get("fold_scores", [])]

    @property
    def oof(self):
        """The out-of-fold predictions (oof.csv) as a DataFrame."""
        import pandas as pd

        return pd.read_csv(self.folder / "oof.csv")

    @property
    def test_predictions(self):
        """The fold-averaged test predictions (test_predictions.csv), or None when it had no test set."""
        import pandas as pd

        path = self.folder / "test_predictions.csv"
        return pd.read_csv(path) if path.exists() else None

    def __repr__(self) -> str:
        try:
            return f"Run({self.competition}/{self.name}, CV {self.metric} {self.cv:.5f})"
        except (UserError, KeyError, OSError, ValueError):
            return f"Run({self.competition}/{self.name})"


# The arguments each verb's handler reads, at the command line's defaults (tests/test_api.py checks
# them against pipelines/cli.py's parser).
DEFAULTS = {
    "prepare": {"data": None, "config": None, "set": [], "workers": 2},
    "train": {"config": None, "set": [], "data": None, "name": None, "folds": None, "restart": False,
              "deterministic": False, "device": "auto", "preset": None, "time_limit": None, "track": None},
    "predict": {"run": None, "test": None, "out": None, "device": "auto"},
    "submit": {"run": None, "out": None, "kaggle": False, "wait": 0},
    "blend": {"runs": [], "method": "weights", "name": None, "restart": False, "track": None},
}


def _args(verb: str, comp: str, quiet: bool, **values) -> argparse.Namespace:
    unknown = set(values) - set(DEFAULTS[verb])
    if unknown:
        raise TypeError(f"{verb}: unexpected argument {sorted(unknown)[0]!r}")
    return argparse.Namespace(verb=verb, competition=comp, quiet=quiet, **{**DEFAULTS[verb], **values})


def _overrides(overrides: dict | Sequence[str] | None) -> list[str]:
    """Config keys as `--set KEY=VALUE` pairs: a dict's values as JSON (which --set reads as YAML),
    or the pairs as the command line gives them."""
    if overrides is None:
        return []
    if isinstance(overrides, dict):
        return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    return [str(pair) for pair in overrides]


def _folds(folds: Sequence[int] | str | None) -> str | None:
    if folds is None or isinstance(folds, str):
        return folds
    return ",".join(str(int(f)) for f in folds)


def _handler(comp: competitions.Competition, verb: str):
    handler = comp.verb(verb)
    if handler is None:
        raise UserError(f"{comp.name} has no {verb!r} verb (its verbs: {', '.join(comp.verb_names)})")
    return handler


@contextlib.contextmanager
def _call(quiet: bool, deterministic: bool = False):
    from . import distributed, progress

    with contextlib.ExitStack() as stack:
        stack.enter_context(progress.quieted(quiet))
        if deterministic:
            from .device import deterministic as exact
            stack.enter_context(exact())
        try:
            yield
        finally:
            distributed.cleanup()


def _recorded_run(comp: competitions.Competition, found: list[Path]) -> Run | None:
    if not found:
        return None
    folder = found[-1]
    return Run(comp.name, folder.name, folder)


def load(competition: str) -> competitions.Competition:
    """The competition of a built-in's name, a known spec's name or a spec file's path."""
    return competitions.load(str(competition))


# --------------------------------------------------------------------------- the verbs

def prepare(competition: str, data: str | Path | None = None, *, config: str | None = None,
            overrides: dict | Sequence[str] | None = None, workers: int = 2, quiet: bool = False) -> Path:
    """Check the raw data and build what training reads; returns the prepared data folder. Without
    `data`, a Kaggle competition's files are downloaded unless data/<name>/ has them."""
    from . import paths

    comp = load(competition)
    with _call(quiet):
        if data is None:
            from . import kaggle
            kaggle.ensure_data(comp.name)
        _handler(comp, "prepare")(_args("prepare", comp.name, quiet, data=str(data) if data else None,
                                        config=config, set=_overrides(overrides), workers=workers))
    return paths.data_dir(comp.name)


def train(competition: str, config: str | None = None, *, data: str | Path | None = None, name: str | None = None,
          overrides: dict | Sequence[str] | None = None, folds: Sequence[int] | str | None = None, device: str = "auto",
          restart: bool = False, deterministic: bool = False, quiet: bool = False, preset: str | None = None,
          time_limit: float | None = None, started: float | None = None, track: str | None = None) -> Run | None:
    """Train k folds of `config` (default: the competition's), with `overrides` of its keys; returns
    the Run, or None when other processes still train folds of it (the last one records it).
    Rerunning with the same name (or none) resumes an interrupted run; restart=True starts over.

    preset="best" (or "fast") instead of a config: the competition's portfolio, each member a run
    named `<name>-<member>` (name default: preset-<preset>), trained within time_limit seconds from
    `started` (a time.monotonic() value; default: now), then blended into the run `<name>`, which
    is returned (pipelines/presets.py). track="mlflow": each run recorded is also logged to MLflow
    (pipelines/tracking.py)."""
    from . import presets, runs, tracking

    presets.check(preset, time_limit, config, overrides, folds)
    if preset is not None:
        with _call(quiet, deterministic), tracking.tracked(track):
            return _train_preset(competition, preset, time_limit, data, name, device, restart, quiet,
                                 time.monotonic() if started is None else started)
    comp = load(competition)
    args = _args("train", comp.name, quiet, config=config, set=_overrides(overrides),
                 data=str(data) if data else None, name=name, folds=_folds(folds), restart=restart,
                 deterministic=deterministic, device=device, track=track)
    with _call(quiet, deterministic), tracking.tracked(track), runs.recorded() as found:
        _handler(comp, "train")(args)
    return _recorded_run(comp, found)


def _train_preset(competition: str, preset: str, time_limit: float | None, data, name: str | None, device: str,
                  restart: bool, quiet: bool, started: float) -> Run:
    """train(preset=...): the competition's portfolio (presets.py), each member a run, within the
    budget, then their blend; returns the blend's Run (or the one member's, when only one finished)."""
    from . import distributed, presets
    from .progress import say

    if distributed.launched():
        raise UserError(f"--preset {preset} starts its members' processes itself; run it without torchrun")
    comp = load(competition)
    if comp.portfolio is None:
        raise UserError(f"{comp.name} has no presets; train a config with --config")
    if time_limit is None:
        time_limit = presets.DEFAULT_LIMIT[preset]
        say(f"--preset {preset}: no --time-limit given, so {time_limit:.0f} s (the preset's default)")
    plan = comp.portfolio(preset, data)
    prefix = name or f"preset-{preset}"
    deadline = started + time_limit - presets.reserve(time_limit)
    say(f"--preset {preset}: {', '.join(m.name for m in plan.members)} within {time_limit:.0f} s, then a "
        f"{plan.method} blend as run {prefix}" + (f" ({plan.note})" if plan.note else ""))
    workers = presets.workers(len(plan.members))
    if workers > 1:
        say(f"--preset {preset}: {workers} members at a time, one process each (one thread each)")
    jobs = _member_jobs(competition, plan.members, lambda m: f"{prefix}-{m.name}", data, device, restart,
                        deadline, workers)
    done = presets.outcomes(preset_member, jobs, workers, quiet)
    lines = [f"  {member.name}: {done[member.name]['line']}" for member in plan.members]
    members = [member for member in plan.members if done[member.name]["status"] == "done"]
    if not members:
        for line in lines:
            say(line)
        if all(done[m.name]["status"] == "failed" for m in plan.members):  # the data or the spec, not the time
            errors = {done[m.name]["line"].removeprefix("failed: ") for m in plan.members}
            raise UserError(errors.pop() if len(errors) == 1 else
                            f"--preset {preset}: every member failed (their errors are above)")
        raise UserError(f"--preset {preset}: no member finished within --time-limit {time_limit:g}; give it more time")
    repeats = {m.name: [run(comp.name, done[m.name]["run"])] for m in members}  # in the plan's order
    seconds = {m.name: done[m.name]["seconds"] for m in members}
    if plan.rounds > 1 and len(members) > 1 and _fits(deadline, min(seconds.values())):
        _repeat(comp, competition, plan, members, repeats, seconds, data, prefix, device, restart, deadline,
                workers, quiet, lines)
    final = []
    for member in members:
        runs_of = repeats[member.name]
        if len(runs_of) == 1:
            final.append(runs_of[0])
            continue
        final.append(blend(comp.name, [r.name for r in runs_of], method="mean", name=f"{prefix}-{member.name}-bag",
                           restart=True, quiet=quiet))
        lines.append(f"  {member.name}: {len(runs_of)} repeats averaged: CV {final[-1].metric} {final[-1].cv:.5f} "
                     f"(run {final[-1].name})")
    result = _round_result(comp.name, final, prefix, plan.method, quiet)
    lines.append(f"  one member finished: run {result.name} is the result" if len(final) == 1 else
                 f"  blend ({plan.method}, out of fold): CV {result.metric} {result.cv:.5f} (run {result.name})")
    print(f"--preset {preset} on {comp.name}: {len(members)} of {len(plan.members)} members in "
          f"{time.monotonic() - started:.0f} s of {time_limit:.0f} s")
    for line in lines:
        print(line)
    return result


def _fits(deadline: float, seconds: float) -> bool:
    """Whether a member that took `seconds` the first time fits again in the time left (with a margin)."""
    from . import presets

    return deadline - time.monotonic() >= presets.ROUND_MARGIN * seconds


def _repeat(comp, competition: str, plan, members: list, repeats: dict, seconds: dict, data, prefix: str,
            device: str, restart: bool, deadline: float, workers: int, quiet: bool, lines: list) -> None:
    """Time to spare (presets.Plan.rounds): the members the first round's blend weighs, cheapest
    first, trained again with new folds and seeds, round after round, each member only while it fits
    in the time left; appends each repeat's Run to repeats[member]."""
    from . import presets

    first = _round_result(comp.name, [repeats[m.name][0] for m in members], f"{prefix}-r1", plan.method, quiet)
    weighed = {row["run"] for row in first.info["blend"]["members"] if row["weight"] > 0}
    lines.append(f"  round 1: CV {first.metric} {first.cv:.5f} (run {first.name})")
    wanted = sorted([m for m in members if repeats[m.name][0].name in weighed], key=lambda m: seconds[m.name])
    for number in range(2, plan.rounds + 1):
        chosen = [m for m in wanted if _fits(deadline, seconds[m.name])]
        if not chosen:
            break
        begun = time.monotonic()
        again = [presets.Member(m.name, m.config, {**m.overrides, "seed": number}) for m in chosen]
        jobs = _member_jobs(competition, again, lambda m: f"{prefix}-r{number}-{m.name}", data, device, restart,
                            deadline, workers, needs=lambda m: presets.ROUND_MARGIN * seconds[m.name], shared=False)
        done = presets.outcomes(preset_member, jobs, workers, quiet)
        trained = [m for m in again if done[m.name]["status"] == "done"]
        finished = [m for m in trained if not done[m.name]["cut"]]
        cut = [m.name for m in trained if done[m.name]["cut"]]
        for member in finished:
            repeats[member.name].append(run(comp.name, done[member.name]["run"]))
        lines.append(f"  round {number}, seed {number} (new folds): {len(finished)} of {len(again)} members again "
                     f"({', '.join(m.name for m in finished) or 'none'}) in {time.monotonic() - begun:.0f} s"
                     + (f"; left out of the averages, their boosting cut short by the time: {', '.join(cut)}"
                        if cut else ""))
        if not finished:
            break


def _member_jobs(competition: str, members: Sequence, name, data, device: str, restart: bool, deadline: float,
                 workers: int, needs=lambda member: 1.0, shared: bool = True) -> list[tuple]:
    """preset_member's arguments for each member, in order: its run `name(member)`, and its Slot (the
    deadline, shared with the members after it, or, not `shared`, all of it for its boosting: a
    repeat starts only when its first time fits; `needs(member)` seconds left to start at all)."""
    from . import presets

    return [(str(competition), member, None if data is None else str(data), name(member), device, restart,
             presets.Slot(deadline, len(members) - index - 1 if shared else 0, workers, needs(member)))
            for index, member in enumerate(members)]


def _round_result(competition: str, finished: list, name: str, method: str, quiet: bool) -> Run:
    """A round's result: the blend of its finished members as run `name`, or its one member's run."""
    if len(finished) == 1:
        return finished[0]
    return blend(competition, [r.name for r in finished], method=method, name=name, restart=True, quiet=quiet)


def preset_member(competition: str, member, data: str | None, run_name: str, device: str, restart: bool,
                  slot, quiet: bool = True, capture: bool = False) -> dict:
    """One member of a preset, trained within the preset's deadline, its boosted trees within the
    member's share of the time left (presets.Slot; in this process or a worker's): {member, run,
    status (done, stopped, skipped, failed), line (one line saying what happened), output (what
    training printed, when captured)}."""
    import io

    from . import budget

    outcome = {"member": member.name, "run": run_name, "output": ""}
    if slot.deadline - time.monotonic() < slot.needs:
        return {**outcome, "status": "skipped", "line": "skipped, no time left"}
    started = time.monotonic()
    buffer = io.StringIO()
    with contextlib.ExitStack() as stack:
        if capture:
            stack.enter_context(contextlib.redirect_stdout(buffer))
        try:
            with budget.until(slot.deadline), budget.boosting_until(slot.member_deadline(started)), \
                    budget.watch_cuts() as cuts:
                trained = train(competition, member.config, data=data, name=run_name, overrides=member.overrides,
                                device=device, restart=restart, quiet=quiet)
        except budget.OutOfTime as exc:
            return {**outcome, "output": buffer.getvalue(), "status": "stopped",
                    "line": f"stopped after {time.monotonic() - started:.0f} s, out of time ({exc}; its finished folds "
                            f"are kept: run {run_name} resumes when the preset runs again with a longer --time-limit)"}
        except UserError as exc:
            return {**outcome, "output": buffer.getvalue(), "status": "failed", "line": f"failed: {exc}"}
    if trained is None:
        return {**outcome, "output": buffer.getvalue(), "status": "failed",
                "line": "not recorded: another process still trains folds of it"}
    took = time.monotonic() - started
    return {**outcome, "output": buffer.getvalue(), "status": "done", "seconds": took, "cut": bool(cuts),
            "line": f"CV {trained.metric} {trained.cv:.5f} in {took:.0f} s (run {run_name})"
                    + (", its boosting cut short by the time" if cuts else "")}


def predict(competition: str, run: str, test: str | Path, out: str | Path, *, device: str = "auto",
            quiet: bool = False) -> Path:
    """Predict a test file or folder from a run's fold checkpoints (a blend: from its members, combined
    as the blend combined them), written as the competition's submission at `out`; returns `out`."""
    from . import blending as blend, notes, paths, runs

    comp = load(competition)
    if comp.write_predicted is None:
        raise UserError(f"{comp.name} has no 'predict' verb (its verbs: {', '.join(comp.verb_names)})")
    with _call(quiet):
        run_dir = paths.find_run(comp.name, runs.resolve_run(comp.name, str(run)))
        recorded = runs.load_run(run_dir)   # find_run returns only folders with a run.json
        is_blend = blend.is_blend(recorded)
        with notes.notes_once():
            if is_blend:
                frame = blend.predict(comp.name, run_dir, Path(test), device)
            else:
                frame = comp.blend.predict_member(run_dir, Path(test), device)
            path = comp.write_predicted(run_dir, recorded, frame, Path(out), Path(test))
        print(f"wrote {path} ({len(frame)} rows) from {'blend ' if is_blend else ''}{run_dir.name}")
    return Path(path)


def predict_command(args) -> int:
    """The `predict` verb of every competition (cli.py)."""
    predict(args.competition, args.run, args.test, args.out, device=getattr(args, "device", None) or "auto",
            quiet=bool(getattr(args, "quiet", False)))
    return 0


def submit(competition: str, run: str = "best", *, out: str | Path | None = None, kaggle: bool = False,
           wait: float = 0, quiet: bool = False) -> Path:
    """Write the run's validated submission (default submissions/<competition>/<run>.csv) from its
    test predictions; `best`: the finished run with the best CV. With kaggle=True, upload it."""
    from . import paths, runs

    comp = load(competition)
    out = str(out) if out else None
    with _call(quiet):
        name = runs.resolve_run(comp.name, str(run))
        run_dir = paths.find_run(comp.name, name)
        _handler(comp, "submit")(_args("submit", comp.name, quiet, run=name, out=out, kaggle=kaggle, wait=wait))
        path = runs.submission_path(comp.name, run_dir, out)
        if kaggle:
            from . import kaggle as kaggle_cli
            kaggle_cli.submit(comp.name, name, out, wait=wait)
    return path


def export(competition: str, run: str, out: str | Path, *, base: str | Path | None = None, wheels: bool = True,
           quiet: bool = False) -> Path:
    """Write run `run` (a blend: with its members) as a bundle that predicts offline (pipelines/bundle.py):
    the runs, the spec, wheels/ (with `base`, a pip freeze: only what it lacks), predict.py and an
    inference notebook; returns the bundle's folder."""
    from . import bundle

    with _call(quiet):
        return bundle.export(str(competition), run, out, base=base, wheels=wheels, quiet=quiet)


def blend(competition: str, runs: Sequence[str], *, method: str = "weights", name: str | None = None,
          restart: bool = False, quiet: bool = False, track: str | None = None) -> Run:
    """Blend finished runs that share their folds into a new run (mean, fitted weights or a stack;
    weights and stack are fitted out of fold, nested); returns the blend's Run (track="mlflow":
    also logged to MLflow)."""
    from . import blending, runs as run_records, tracking

    comp = load(competition)
    with _call(quiet), tracking.tracked(track), run_records.recorded() as found:
        blending.command(_args("blend", comp.name, quiet, runs=[str(r) for r in runs], method=method, name=name,
                               restart=restart, track=track))
    return _recorded_run(comp, found)


def run(competition: str, name: str = "best") -> Run:
    """A recorded run by name (or folder); `best`: the finished run with the best CV."""
    from . import paths, runs

    comp = load(competition)
    resolved = runs.resolve_run(comp.name, str(name), quiet=True)
    folder = paths.find_run(comp.name, resolved)
    return Run(comp.name, folder.name, folder)


def leaderboard(competition: str | None = None, *, config: str | None = None):
    """Every recorded run (of one competition, of one config), best CV first, as a DataFrame."""
    import pandas as pd

    from . import registry as board

    name = load(competition).name if competition else None
    rows = board.ranked(board.read(), name)
    if config:
        rows = [r for r in rows if r.get("config") == config]
    columns = ["competition", "run", "config", "metric", "cv", "cv_std", "folds", "wall_s", "date", "path"]
    return pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
