"""Sweeps: an Optuna search over a config's keys, every trial a real run.

    python -m pipelines sweep COMPETITION --config NAME --trials N --search lr=1e-4:1e-2:log \\
        --search "hidden=[[64],[128],[256]]" [--set key=value ...] [--name SWEEP] [--storage URL]

Search dimensions (`--search`, repeatable, or a YAML file of them with `--space FILE`):
  * `key=LOW:HIGH` uniform (integers when both bounds are), `key=LOW:HIGH:log` log-uniform;
  * `key=[A, B, C]` one of these values (YAML: a list-valued key takes lists, `[[64], [128, 64]]`).

Each trial trains the config with the trial's values as `--set` overrides (and the sweep's own
`--set` values) through the competition's `train` verb: a run like any other, named
<sweep>-<digest of its values>, resumable, recorded in the registry with its values in its
config. After each fold the mean score of the trial's folds so far is reported to Optuna; a
trial whose running score is in the worst quarter of the finished trials' at the same fold (after
its second fold, once 4 trials finished; Optuna's PercentilePruner) is pruned: it stops there,
its finished folds kept.

The study lives in runs/<competition>/sweeps/<sweep>/study.db (SQLite), so a killed sweep resumes
where it stopped when the same command is run again: finished trials stay, the trial that was
running is tried again with the same values, and its run resumes from its finished folds.
Several processes (or machines) work on one sweep by pointing at one storage: the same command
in each, on one machine with the default SQLite file, or with `--storage` naming a database URL
that all of them reach (Optuna's RDB storage: sqlite:///path, postgresql://..., mysql://...). A
trial whose process stopped sending heartbeats for STALE_AFTER seconds is failed and tried again.
The sweep stops when N trials have finished (completed or pruned) across all processes.

An honest pick: the best trial of many is optimistic (it won partly by the luck of its folds).
When the sweep is done, the best trial's values are trained again on other fold seeds
(`--rerun-seeds`, default 7 and 11; runs <winner>-seed<S>), and so are the runner-up's, so the two
compare on the same folds; their CV mean and spread are printed beside the sweep's figures.
sweep.json in the sweep's folder records them, and the leaderboard marks a winner whose re-run
CV is worse than the runner-up's. Each trial's training output goes to the sweep's logs/ folder;
the sweep prints one line per trial.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from . import atomic, competition, hints, kfold, paths, resume, runs
from .errors import UserError

SWEEPS = "sweeps"
STUDY_FILE = "study.db"
SUMMARY = "sweep.json"
DEFAULT_RERUN_SEEDS = (7, 11)
HEARTBEAT_S = 10          # a running trial's heartbeat...
STALE_AFTER = 60          # ...and how long without one before another process fails and retries it
PRUNE_PERCENTILE = 75.0   # prune a trial worse than this share of the finished ones, at the same fold
PRUNE_STARTUP = 4         # finished trials before any pruning
PRUNE_WARMUP = 1          # folds (0-based steps) before any pruning: never after the first fold alone


# --------------------------------------------------------------------------- the search space

@dataclass(frozen=True)
class Dimension:
    key: str
    kind: str                      # "float" | "int" | "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None   # categorical: the values (any YAML value)

    def suggest(self, trial):
        if self.kind == "categorical":
            encoded = [json.dumps(c) for c in self.choices]   # Optuna's choices are scalars: lists go as JSON
            return json.loads(trial.suggest_categorical(self.key, encoded))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.key} in {', '.join(json.dumps(c) for c in self.choices)}"
        return f"{self.key} {self.low:g}..{self.high:g}{' (log)' if self.log else ''}{' (int)' if self.kind == 'int' else ''}"


def _number(text: str, where: str):
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            value = float(value)  # YAML reads 1e-4 as a string
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{where}: {text!r} is not a number")
    return value


def dimension(key: str, value, where: str) -> Dimension:
    """One dimension from its written form: "LOW:HIGH[:log]" or a list of values."""
    key = str(key).strip()
    if not key:
        raise UserError(f"{where}: expected KEY=LOW:HIGH[:log] or KEY=[A, B, ...]")
    if isinstance(value, list):
        if len(value) < 2:
            raise UserError(f"{where}: {key} needs at least two values to choose from, got {value!r}")
        return Dimension(key, "categorical", choices=tuple(value))
    parts = str(value).split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].strip() != "log"):
        raise UserError(f"{where}: {key}={value!r}: expected LOW:HIGH, LOW:HIGH:log or a list [A, B, ...]")
    low, high = (_number(p.strip(), where) for p in parts[:2])
    log = len(parts) == 3
    if not low < high:
        raise UserError(f"{where}: {key}: the low end {low} must be below the high end {high}")
    if log and low <= 0:
        raise UserError(f"{where}: {key}: a log range needs a low end above 0, got {low}")
    kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    return Dimension(key, kind, low, high, log)


def parse_search(items: list[str]) -> list[Dimension]:
    dims = []
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--search {item!r}: expected KEY=LOW:HIGH[:log] or KEY=[A, B, ...]")
        key, raw = item.split("=", 1)
        raw = raw.strip()
        value = yaml.safe_load(raw) if raw.startswith("[") else raw
        dims.append(dimension(key, value, f"--search {item!r}"))
    return dims


def load_space(path: str | Path) -> list[Dimension]:
    """A YAML mapping of key -> "LOW:HIGH[:log]" or a list of values."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"search space file {path} not found")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError:
        raise UserError(f"{path}: not valid YAML") from None
    if not isinstance(values, dict) or not values:
        raise UserError(f"{path}: expected a mapping of keys to ranges (LOW:HIGH[:log]) or lists of values")
    return [dimension(k, v, f"{path}: {k}") for k, v in values.items()]


def check_space(dims: list[Dimension], fixed: dict) -> None:
    keys = [d.key for d in dims]
    if not dims:
        raise UserError("sweep: nothing to search; give --search KEY=LOW:HIGH[:log] (or --space FILE)")
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise UserError(f"sweep: {twice[0]} is searched twice")
    both = sorted(set(keys) & set(fixed))
    if both:
        raise UserError(f"sweep: {both[0]} is both searched (--search) and fixed (--set)")
    if "seed" in keys:
        raise UserError("sweep: seed is not a search dimension (it chooses the folds; the re-runs vary it)")


# --------------------------------------------------------------------------- one trial = one run

def run_name(sweep: str, values: dict) -> str:
    """A trial's run: the same values give the same run, so a retried trial resumes it."""
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]
    return f"{sweep}-{digest}"


def train(comp: str, config: str, name: str, overrides: dict, data: str | None, device: str,
          listener=None, log: Path | None = None) -> dict | None:
    """Train one run with pipelines.api.train (as the command line would), quietly; its run.json when
    it finished, None when it failed (the error said on stderr in one line). With `log`, what
    training prints on stdout goes to that file instead."""
    import sys

    from . import api

    with contextlib.ExitStack() as stack:
        if listener is not None:
            stack.enter_context(kfold.fold_listener(listener))
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(log, "a"))))
        try:
            run = api.train(comp, config, data=data, name=name, overrides=overrides, device=device, quiet=True)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return None
    if run is None or not (run.folder / "run.json").exists():
        return None
    return runs.load_run(run.folder)


# --------------------------------------------------------------------------- the study

@dataclass
class Settings:
    competition: str
    config: str
    space: list[dict]
    fixed: dict
    data: str | None


def sweep_dir(comp: str, name: str) -> Path:
    return paths.runs_dir(comp) / SWEEPS / paths.check_name(name)


def _storage(url: str | None, folder: Path):
    """Optuna's RDB storage with heartbeats (a stale trial is failed and queued again). Processes
    that start together would race to create the tables: they take turns on a lock file in the
    sweep's folder, and a remote database is tried three times."""
    import warnings

    import optuna

    # heartbeats and the retry callback are "experimental" in Optuna 4 (in use since 2.8)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    folder.mkdir(parents=True, exist_ok=True)
    if url is None:
        url = f"sqlite:///{folder / STUDY_FILE}"
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    with open(folder / "storage.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for attempt in range(3):
            try:
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=STALE_AFTER,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
            except Exception as exc:  # SQLAlchemy's errors: a bad URL, an unreachable database, a race
                if attempt == 2:
                    detail = str(exc).splitlines()[0] if str(exc) else "no detail"
                    raise UserError(f"sweep --storage {url!r}: cannot open it ({type(exc).__name__}: {detail})") from None
                time.sleep(1.0 + attempt)


def _study(name: str, storage, direction: str, settings: Settings, seed: int | None):
    import optuna

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
    pruner = optuna.pruners.PercentilePruner(PRUNE_PERCENTILE, n_startup_trials=PRUNE_STARTUP,
                                             n_warmup_steps=PRUNE_WARMUP)
    study = optuna.create_study(study_name=name, storage=storage, direction=direction, sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise UserError(f"sweep {name}: its study {direction}s, but the stored one {study.direction.name.lower()}s")
    mine = asdict(settings)
    saved = study.user_attrs.get("settings")
    if saved is None:
        study.set_user_attr("settings", mine)
    elif saved != mine:
        differ = next(k for k in mine if mine[k] != saved.get(k))
        raise UserError(f"sweep {name} was started with other settings ({differ}: {saved.get(differ)!r}, now "
                        f"{mine[differ]!r}); run the same command to resume it, or choose another --name")
    return study


def _finished(study) -> tuple[int, int, int]:
    from optuna.trial import TrialState

    counts = {s: 0 for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    for t in study.get_trials(deepcopy=False, states=tuple(counts)):
        counts[t.state] += 1
    return counts[TrialState.COMPLETE], counts[TrialState.PRUNED], counts[TrialState.FAIL]


def _retry_orphans(study) -> int:
    """Trials left running by a process that is gone (this machine's, default storage): fail them
    and queue their values again, so their runs resume now rather than after STALE_AFTER."""
    from optuna.trial import TrialState

    retried = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        try:
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except Exception:  # another process finished or failed it meanwhile
            continue
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
        retried += 1
    return retried


class _Workers:
    """Every process on the sweep holds a shared lock on the sweep folder's workers.lock; one
    that gets it exclusively is alone, so any running trial is an orphan."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(folder / "workers.lock", os.O_RDWR | os.O_CREAT, 0o644)

    def alone(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(self.fd, fcntl.LOCK_SH)
            return False
        return True

    def share(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_SH)

    def close(self) -> None:
        os.close(self.fd)


def _objective(comp: competition.Competition, settings: Settings, dims: list[Dimension], sweep: str,
               device: str):
    import optuna

    def objective(trial):
        values = {d.key: d.suggest(trial) for d in dims}
        name = run_name(sweep, values)
        trial.set_user_attr("run", name)
        scores: list[float] = []

        def listener(fold: int, n_folds: int, score: float) -> None:
            scores.append(score)
            trial.report(float(np.mean(scores)), step=len(scores) - 1)
            if trial.should_prune():
                raise optuna.TrialPruned(f"after {len(scores)} of {n_folds} folds: mean {np.mean(scores):.5f}")

        started = time.perf_counter()
        shown = " ".join(f"{k}={json.dumps(v)}" for k, v in values.items())
        log = sweep_dir(comp.name, sweep) / "logs" / f"{name}.log"
        try:
            run = train(comp.name, settings.config, name, {**settings.fixed, **values}, settings.data, device,
                        listener, log)
        except optuna.TrialPruned as pruned:
            resume.release(paths.runs_dir(comp.name) / name)
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
            print(f"trial {trial.number:>3}: pruned {pruned}   {shown}   (run {name})", flush=True)
            raise
        except KeyboardInterrupt:
            trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})  # resumed next time
            raise
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
        if run is None:
            print(f"trial {trial.number:>3}: failed (the error is above)   {shown}   (run {name})", flush=True)
            raise _TrialFailed(f"trial {trial.number}: training run {name} failed (the error is above)")
        trial.set_user_attr("folds", [float(s) for s in run.get("fold_scores", [])])
        print(f"trial {trial.number:>3}: CV {run['metric']} {float(run['cv']):.5f} in "
              f"{time.perf_counter() - started:.1f} s   {shown}   (run {name})", flush=True)
        return float(run["cv"])

    return objective


class _TrialFailed(Exception):
    pass


def optimize(comp: competition.Competition, settings: Settings, dims: list[Dimension], sweep: str, trials: int,
             storage_url: str | None, device: str, seed: int | None) -> object:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)   # a failed trial is said in one line here, not a traceback
    folder = sweep_dir(comp.name, sweep)
    direction = "maximize" if comp.metric.greater_is_better else "minimize"
    study = _study(sweep, _storage(storage_url, folder), direction, settings, seed)
    workers = _Workers(folder)
    try:
        if workers.alone() and storage_url is None:
            retried = _retry_orphans(study)
            if retried:
                print(f"sweep {sweep}: {retried} trial(s) left running by a stopped process are tried again "
                      f"(their runs resume)", flush=True)
        workers.share()
        objective = _objective(comp, settings, dims, sweep, device)

        def stop_when_done(study, trial) -> None:
            complete, pruned, failed = _finished(study)
            if complete + pruned >= trials or failed >= max(trials, 3):
                study.stop()
            elif trial.state.name == "FAIL" and complete == 0 and pruned == 0:
                study.stop()   # the first trials fail: a setting is wrong, not the luck of a trial

        complete, pruned, _ = _finished(study)
        if complete + pruned < trials:
            study.optimize(objective, callbacks=[stop_when_done], catch=(_TrialFailed,), gc_after_trial=False)
        complete, pruned, failed = _finished(study)
        if complete == 0:
            raise UserError(f"sweep {sweep}: no trial finished ({pruned} pruned, {failed} failed); "
                            f"the first failure's error is printed above")
        return study
    finally:
        workers.close()


# --------------------------------------------------------------------------- the pick

def _trials_table(study, metric: str) -> list[str]:
    from optuna.trial import TrialState

    lines = [f"{'trial':>5}  {'state':<8}  {metric:>10}  {'folds':>5}  {'seconds':>7}  values"]
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.state == TrialState.COMPLETE:
            figure = f"{t.value:.5f}"
        elif t.intermediate_values:
            figure = f"({t.intermediate_values[max(t.intermediate_values)]:.5f})"
        else:
            figure = "-"
        folds = len(t.user_attrs.get("folds") or t.intermediate_values)
        values = " ".join(f"{k}={v}" for k, v in t.params.items())
        lines.append(f"{t.number:>5}  {t.state.name.lower():<8}  {figure:>10}  {folds:>5}  "
                     f"{t.user_attrs.get('seconds', '-'):>7}  {values}")
    return lines


def trial_values(trial, dims: list[Dimension]) -> dict:
    """A finished trial's values as `--set` takes them (categorical ones are stored as JSON)."""
    return {d.key: (json.loads(trial.params[d.key]) if d.kind == "categorical" else trial.params[d.key])
            for d in dims}


def pick(comp: competition.Competition, study, settings: Settings, dims: list[Dimension], sweep: str,
         seeds: tuple[int, ...], device: str) -> dict:
    """Re-run the best trial on other fold seeds; write and return sweep.json."""
    from optuna.trial import TrialState

    greater = comp.metric.greater_is_better
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    ranked = sorted(done, key=lambda t: -t.value if greater else t.value)
    best = ranked[0]
    # the runner-up is the best trial with other settings: a sampler may draw the winner's values
    # again, and that trial is the winner's own run
    others = [t for t in ranked[1:] if t.user_attrs["run"] != best.user_attrs["run"]]
    runner = others[0] if others else None
    values = trial_values(best, dims)
    winner = best.user_attrs["run"]
    folder = sweep_dir(comp.name, sweep)

    def rerun(trial) -> tuple[list[float], list[str]]:
        chosen = trial_values(trial, dims)
        cvs, names = [], []
        for seed in seeds:
            name = f"{trial.user_attrs['run']}-seed{seed}"
            run = train(comp.name, settings.config, name, {**settings.fixed, **chosen, "seed": seed},
                        settings.data, device, log=folder / "logs" / f"{name}.log")
            if run is None:
                raise UserError(f"sweep {sweep}: re-running trial {trial.number} with seed {seed} failed (above)")
            cvs.append(float(run["cv"]))
            names.append(name)
            print(f"re-run of trial {trial.number} on fold seed {seed}: CV {float(run['cv']):.5f} (run {name})",
                  flush=True)
        return cvs, names

    with open(folder / "pick.lock", "w") as lock:   # one process re-runs; another one waits and reuses
        fcntl.flock(lock, fcntl.LOCK_EX)
        rerun_cvs, rerun_runs = rerun(best)
        runner_cvs, runner_runs = rerun(runner) if runner is not None else ([], [])
    complete, pruned, failed = _finished(study)
    seconds = [t.user_attrs["seconds"] for t in study.get_trials(deepcopy=False) if "seconds" in t.user_attrs]
    summary = {
        "sweep": sweep, "competition": comp.name, "config": settings.config, "metric": comp.metric.name,
        "greater_is_better": greater, "space": [d.describe() for d in dims], "fixed": settings.fixed,
        "trials": {"complete": complete, "pruned": pruned, "failed": failed,
                   "pruned_share": round(pruned / max(complete + pruned, 1), 3),
                   "mean_seconds": round(float(np.mean(seconds)), 1) if seconds else None},
        "winner": winner, "winner_trial": best.number, "winner_cv": float(best.value), "winner_values": values,
        "rerun_seeds": list(seeds), "rerun_runs": rerun_runs, "rerun_cvs": rerun_cvs,
        "rerun_mean": float(np.mean(rerun_cvs)) if rerun_cvs else None,
        "rerun_std": float(np.std(rerun_cvs)) if rerun_cvs else None,
        "runner_up": runner.user_attrs["run"] if runner else None,
        "runner_up_cv": float(runner.value) if runner else None,
        # the runner-up re-run on the same seeds: the like-for-like comparison the verdict uses
        "runner_up_rerun_runs": runner_runs, "runner_up_rerun_cvs": runner_cvs,
        "runner_up_rerun_mean": float(np.mean(runner_cvs)) if runner_cvs else None,
    }
    atomic.write_text(folder / SUMMARY, json.dumps(summary, indent=1) + "\n")
    return summary


def winner_holds(summary: dict) -> bool | None:
    """Whether the winner's re-run CV is at least as good as the runner-up's on the same seeds
    (None: nothing to compare)."""
    mean, runner = summary.get("rerun_mean"), summary.get("runner_up_rerun_mean")
    if mean is None or runner is None:
        return None
    return mean >= runner if summary["greater_is_better"] else mean <= runner


def _verdict(summary: dict) -> str:
    if summary["rerun_mean"] is None:
        return "no re-runs (--rerun-seeds none): the winner's CV is the best of many trials, so optimistic"
    if summary["runner_up"] is None:
        return "no runner-up (one trial completed, or every trial drew the same values) to compare the re-runs with"
    mean, runner = summary["rerun_mean"], summary["runner_up_rerun_mean"]
    if not winner_holds(summary):
        return (f"WARNING: on the re-run seeds the runner-up ({summary['runner_up']}, {runner:.5f}) beats the "
                f"winner ({mean:.5f}): the winner's lead was the luck of its folds; prefer neither on this sweep alone")
    return (f"the winner holds: re-run mean {mean:.5f} against the runner-up's {runner:.5f} on the same seeds "
            f"(sweep: {summary['winner_cv']:.5f} vs {summary['runner_up_cv']:.5f})")


# --------------------------------------------------------------------------- the verb

def _seeds(text: str | None) -> tuple[int, ...]:
    if text is None:
        return DEFAULT_RERUN_SEEDS
    if text.strip().lower() in ("", "none", "0"):
        return ()
    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise UserError(f"--rerun-seeds {text!r}: expected seeds separated by commas, e.g. 7,11, or none") from None


def command(args) -> int:
    from .config import parse_overrides

    comp = competition.load(args.competition)
    config = args.config or comp.default_config
    if not config:
        raise UserError(f"sweep {comp.name}: give --config (this competition has no default config)")
    if args.trials < 1:
        raise UserError(f"--trials must be at least 1, got {args.trials}")
    dims = parse_search(args.search) + (load_space(args.space) if args.space else [])
    fixed = parse_overrides(args.set)
    check_space(dims, fixed)
    seeds = _seeds(args.rerun_seeds)
    name = args.name or f"{Path(config).stem}-sweep"
    data = str(Path(args.data).resolve()) if args.data else None
    settings = Settings(comp.name, config, [asdict(d) for d in dims], fixed, data)
    print(f"sweep {name}: {comp.name}, config {config}, {args.trials} trials; "
          f"{'; '.join(d.describe() for d in dims)}" + (f"; fixed {fixed}" if fixed else ""), flush=True)
    study = optimize(comp, settings, dims, name, args.trials, args.storage, args.device, args.seed)
    for line in _trials_table(study, comp.metric.name):
        print(line)
    summary = pick(comp, study, settings, dims, name, seeds, args.device)
    t = summary["trials"]
    print(f"sweep {name}: {t['complete']} trials completed, {t['pruned']} pruned "
          f"({100 * t['pruned_share']:.0f}%), {t['failed']} failed; {t['mean_seconds']} s per trial on average")
    print(f"best trial {summary['winner_trial']} (run {summary['winner']}): CV {comp.metric.name} "
          f"{summary['winner_cv']:.5f} with {' '.join(f'{k}={json.dumps(v)}' for k, v in summary['winner_values'].items())}")
    if summary["rerun_cvs"]:
        cvs = ", ".join(f"{c:.5f}" for c in summary["rerun_cvs"])
        print(f"re-run on fold seeds {', '.join(map(str, summary['rerun_seeds']))}: {cvs}; "
              f"mean {summary['rerun_mean']:.5f} +/- {summary['rerun_std']:.5f} (sweep: {summary['winner_cv']:.5f})")
    if summary["runner_up_rerun_cvs"]:
        print(f"runner-up (run {summary['runner_up']}, sweep CV {summary['runner_up_cv']:.5f}) on the same seeds: "
              f"mean {summary['runner_up_rerun_mean']:.5f}")
    print(_verdict(summary))
    print(f"wrote {sweep_dir(comp.name, name) / SUMMARY}")
    # compare takes two runs: without a runner-up (one distinct trial) the winner's submission is next
    rest = (f"compare {comp.name} {summary['winner']} {summary['runner_up']}" if summary["runner_up"]
            else f"submit {comp.name} --run {summary['winner']}")
    print(f"next: {hints.pipelines(rest)}")
    return 0


def add_arguments(sub) -> None:
    sub.add_argument("--config", help="the config whose keys are searched (default: the competition's default)")
    sub.add_argument("--trials", type=int, default=20, help="trials to finish, completed or pruned, across every "
                                                            "process on the sweep (default 20)")
    sub.add_argument("--search", action="append", default=[], metavar="KEY=RANGE",
                     help="a dimension: KEY=LOW:HIGH, KEY=LOW:HIGH:log or KEY=[A,B,...] (repeatable)")
    sub.add_argument("--space", help="a YAML file of dimensions (key: LOW:HIGH[:log] or a list)")
    sub.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                     help="a fixed override for every trial, e.g. --set folds=5")
    sub.add_argument("--data", help="folder with the competition's files (default: data/<competition>)")
    sub.add_argument("--name", help="the sweep's name (default: <config>-sweep); its trials' runs are <name>-<digest>")
    sub.add_argument("--storage", help="an Optuna database URL shared by several processes or machines "
                                       "(default: sqlite in runs/<competition>/sweeps/<name>/)")
    sub.add_argument("--rerun-seeds", help="fold seeds the best trial is re-run on (default 7,11; none: skip)")
    sub.add_argument("--seed", type=int, default=None, help="the sampler's seed (default: none)")
