"""Blends: an ensemble of finished runs that share the same folds, recorded as a run of its own.

    python -m pipelines blend COMPETITION RUN1 RUN2 ... [--method mean|weights|stack]

Members are one prediction column per run (a value, P(positive)) or, for a multiclass
competition, one probability column per class: the blend space combines (rows, members, classes)
arrays on the log probabilities, whose weighted sum is turned back into probabilities by a
softmax (weights fitted on the multiclass log loss; the stack adds one intercept per class).

Only runs with identical folds.csv (same ids, same fold numbers, same order), the same
training-data fingerprint and an out-of-fold prediction for every row can be blended.

Methods (predictions combined in the competition's blend space, Competition.blend; for example
House Prices blends log prices, Dogs vs. Cats the logits of P(dog)):
  * mean:    the plain mean in the space's mean_space (House Prices: of the log prices, a geometric
             mean of the prices; Dogs vs. Cats: of the probabilities P(dog)).
  * weights: non-negative weights summing to 1 in the blend space, fitted on the out-of-fold
             predictions with the space's loss (squared error of the log price; absolute error
             for a spec scored by mae; log loss).
  * stack:   a linear model with an intercept fitted in the blend space (BlendSpace.stack: least
             squares with non-negative coefficients on the log prices, or a logistic regression
             on the logits).

Honest CV: for weights and stack the blend's prediction for the rows of fold k comes from
weights (or a stacker) fitted on the out-of-fold rows of the other folds only, so the CV never
scores a row the blend was fitted on. The weights used for the test predictions are fitted on
all out-of-fold rows. Members' out-of-fold predictions are taken as the space's member_values
(Dogs vs. Cats: P(dog) clipped with the member's own `clip`, as its test predictions were), so the
blend is fitted on what it is applied to.

The blend leaves the files a trained run leaves (folds.csv copied, oof.csv, test_predictions.csv,
run.json, metrics.json, a registry row), so `submit`, `report`, `leaderboard` and another
blend read it like any run.

Predicting a new test file (House Prices) or folder (Dogs vs. Cats) from a blend (`predict`,
called by the competitions' `predict` verb) predicts it with each member run (from its fold
checkpoints, or, for a member that is itself a blend, by this same recipe) and combines the
members' predictions exactly as the blend combined their test predictions when it was made: the
weights and intercept (stacker) recorded in run.json's config_values, members taken as their
member_values, the result clipped by the blend's clip. run.json records each member's
config hash and training id; a member that is gone, or was retrained since (another training id
or config), is refused, naming it.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import atomic, hints, kfold, paths, report, runs
from .competition import BlendSpace, Competition, load as load_competition
from .errors import UserError
from .folds import load_folds

METHODS = ("mean", "weights", "stack")
DEFAULT_METHOD = "weights"


@dataclass
class BlendConfig:
    """What run.json records as the blend's config (config name blend-<method>)."""
    name: str
    method: str
    space: str
    members: list[str] = field(default_factory=list)
    member_configs: list[str] = field(default_factory=list)
    member_hashes: list[str] = field(default_factory=list)
    member_training_ids: list[str | None] = field(default_factory=list)  # which training of each member
    member_paths: list[str] = field(default_factory=list)   # their folders, relative to the home when under it
    weights: list[float] = field(default_factory=list)     # final fit, on all out-of-fold rows
    intercept: float | list[float] = 0.0                    # one per class for a multiclass stack
    clip: float | None = None                               # BlendSpace.blend_clip: clip of the blend's output


# --------------------------------------------------------------------------- competitions

def adapter(name: str) -> BlendSpace:
    """The competition's blend space (pipelines.competition.BlendSpace): its columns, link and stacker."""
    return _competition(name).blend


def _competition(name: str) -> Competition:
    try:
        return load_competition(name)
    except UserError as exc:
        raise UserError(f"blend: {exc}") from None


# --------------------------------------------------------------------------- fitting

def weighted(z: np.ndarray, w) -> np.ndarray:
    """The members' values in the blend space weighted and summed: z (rows, members) @ w, or for
    class probabilities z (rows, members, classes) -> (rows, classes)."""
    w = np.asarray(w, float)
    return z @ w if z.ndim == 2 else np.einsum("nmk,m->nk", z, w)


def softmax_loss(s: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Multiclass log loss of softmax(s) (rows, classes) for class indices, and its gradient in s."""
    s = s - s.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(s).sum(axis=1))
    rows = np.arange(len(target))
    p = np.exp(s - log_norm[:, None])
    p[rows, target] -= 1.0
    return float(np.mean(log_norm - s[rows, target])), p / len(target)


ABSOLUTE_SMOOTHING = 1e-3   # the absolute error's smoothing, in units of the target's spread


def fit_simplex(z: np.ndarray, target: np.ndarray, loss: str) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise the loss of z @ w against target
    (squared error; absolute error, smoothed within ABSOLUTE_SMOOTHING of the target's spread of
    zero so that this optimiser fits it fast (an exact linear programme is slow on many rows:
    docs/decisions.md); log loss of sigmoid(z @ w) for 0/1 targets; multinomial: log loss of
    softmax(sum of w_j z_j) for class indices, z (rows, members, classes))."""
    from scipy.optimize import minimize

    z = np.asarray(z, float)
    target = np.asarray(target, int if loss == "multinomial" else float)
    n, m = z.shape[:2]
    if m == 1:
        return np.ones(1)
    if loss in ("squared", "absolute"):
        # the optimiser's tolerances are absolute: values in the thousands (a price) made it stop at
        # its start, so they are fitted in units of the target's spread (the weights do not change)
        spread = float(np.std(target))
        scale = max(1.0, spread) if loss == "squared" else (spread if spread > 0 else 1.0)
        z, target = z / scale, target / scale

    def objective(w):
        s = weighted(z, w)
        if loss == "squared":
            r = s - target
            return float(np.mean(r * r)), 2.0 * z.T @ r / n
        if loss == "absolute":
            r = s - target
            smooth = np.sqrt(r * r + ABSOLUTE_SMOOTHING ** 2)
            return float(np.mean(smooth)), z.T @ (r / smooth) / n
        if loss == "multinomial":
            value, grad = softmax_loss(s, target)
            return value, np.einsum("nk,nmk->m", grad, z)
        p = 1.0 / (1.0 + np.exp(-s))
        return float(np.mean(np.logaddexp(0.0, s) - target * s)), z.T @ (p - target) / n

    result = minimize(objective, np.full(m, 1.0 / m), jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * m,
                      constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - 1.0, "jac": lambda w: np.ones(m)}],
                      options={"ftol": 1e-12, "maxiter": 1000})
    w = np.clip(np.asarray(result.x, float), 0.0, None)
    if not np.isfinite(w).all() or w.sum() <= 0:
        raise UserError(f"blend: the weight fit failed ({result.message})")
    w = w / w.sum()
    start = np.full(m, 1.0 / m)  # never return weights worse than the plain mean of the inputs
    return w if objective(w)[0] <= objective(start)[0] else start


def fit(method: str, ad, values: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, float]:
    """(weights, intercept) of the blend fitted on these rows (members' values in columns)."""
    m = values.shape[1]
    if method == "mean":
        return np.full(m, 1.0 / m), 0.0
    z, target = ad.link(values), ad.fit_target(truth)
    if method == "weights":
        return fit_simplex(z, target, ad.loss), 0.0
    return ad.stack(z, target)


def combine(method: str, ad, values: np.ndarray, weights: np.ndarray, intercept) -> np.ndarray:
    """The blend's prediction (price, P(dog), rows of class probabilities) for members' values in
    columns (rows, members[, classes])."""
    if method == "mean":
        return ad.mean(values)
    return ad.unlink(weighted(ad.link(values), weights) + np.asarray(intercept, float))


def nested(method: str, ad, values: np.ndarray, truth: np.ndarray, folds: np.ndarray):
    """Blend OOF predictions where fold k's rows come from a fit on the other folds' rows only.

    Returns (oof prediction, {fold: (weights, intercept)})."""
    oof = np.full(values.shape[:1] + values.shape[2:], np.nan)
    fitted = {}
    for fold in np.unique(folds):
        train_index, valid_index = kfold.fold_indices(folds, fold)
        weights, intercept = fit(method, ad, values[train_index], truth[train_index])
        oof[valid_index] = combine(method, ad, values[valid_index], weights, intercept)
        fitted[int(fold)] = (weights, intercept)
    return oof, fitted


# --------------------------------------------------------------------------- members

@dataclass
class Member:
    name: str
    run_dir: Path
    run: dict
    folds: pd.DataFrame
    oof: pd.DataFrame
    test: pd.DataFrame | None


def _load_member(ad, competition: str, spec: str) -> Member:
    run_dir = paths.find_run(competition, spec)
    run = runs.load_run(run_dir)
    name = run_dir.name
    if run.get("competition") != competition:
        raise UserError(f"run {name} is a {run.get('competition')!r} run, not {competition}: "
                        f"only runs of one competition can be blended")
    for needed in ("folds.csv", "oof.csv"):
        if not (run_dir / needed).exists():
            raise UserError(f"run {name}: no {needed} in {run_dir}, so it cannot be blended")
    folds = load_folds(run_dir / "folds.csv")
    oof = pd.read_csv(run_dir / "oof.csv")
    missing = [c for c in (ad.oof_id, "fold", ad.target, *ad.oof_columns(run)) if c not in oof.columns]
    if missing:
        raise UserError(f"{run_dir / 'oof.csv'}: missing column(s) {', '.join(missing)}")
    test_path = run_dir / "test_predictions.csv"
    test = pd.read_csv(test_path) if test_path.exists() else None
    if test is not None:
        missing = [c for c in (ad.test_id, *ad.test_columns(run)) if c not in test.columns]
        if missing:
            raise UserError(f"{test_path}: missing column(s) {', '.join(missing)}")
    return Member(name, run_dir, run, folds, oof, test)


def member_block(ad, frame: pd.DataFrame, columns: list[str], run: dict) -> np.ndarray:
    """A member's predictions as the blend takes them: (rows,) for one column, (rows, classes) else."""
    block = frame[columns].to_numpy(dtype=float)
    return ad.member_values(block[:, 0] if len(columns) == 1 else block, run)


def test_frame(ad, ids: np.ndarray, pred: np.ndarray, clip, run: dict) -> pd.DataFrame:
    """The blend's test predictions as test_predictions.csv's frame (one column per class when 2-D)."""
    if np.ndim(pred) == 1:
        return ad.test_frame(ids, pred, clip)
    return pd.DataFrame({ad.test_id: ids, **dict(zip(ad.test_columns(run), np.asarray(pred).T))})


def _jsonable(intercept):
    return [float(b) for b in intercept] if np.ndim(intercept) else float(intercept)


def _first_difference(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.flatnonzero(a != b)[0])


def check_members(ad, members: list[Member], same_folds: bool = True) -> None:
    """Refuse, in one line naming the first run at fault, members that cannot be blended.
    same_folds=False (a plain mean, which fits nothing): members may have other fold assignments of
    the same rows (repeated k-fold: each row's mean is still of predictions made without it)."""
    first = members[0]
    ids0 = first.folds["id"].astype(str).to_numpy()
    folds0 = first.folds["fold"].to_numpy()
    train0 = first.run.get("data", {}).get(ad.data_key)
    for member in members:
        name = member.name
        if member.run.get("classes") != first.run.get("classes"):
            raise UserError(f"run {name}: other classes than {first.name} "
                            f"({member.run.get('classes')} vs {first.run.get('classes')})")
        if member is not first:
            ids = member.folds["id"].astype(str).to_numpy()
            fold = member.folds["fold"].to_numpy()
            if len(ids) != len(ids0):
                raise UserError(f"run {name}: different fold assignment from {first.name} "
                                f"({len(ids)} rows in folds.csv, not {len(ids0)})")
            if (ids != ids0).any():
                row = _first_difference(ids, ids0)
                raise UserError(f"run {name}: different fold assignment from {first.name} "
                                f"(folds.csv row {row + 2}: id {ids[row]}, not {ids0[row]})")
            if same_folds and (fold != folds0).any():
                row = _first_difference(fold, folds0)
                raise UserError(f"run {name}: different fold assignment from {first.name} "
                                f"(id {ids[row]} is in fold {fold[row]}, not {folds0[row]})")
            train = member.run.get("data", {}).get(ad.data_key)
            if train is None or train != train0:
                raise UserError(f"run {name}: different training data from {first.name} "
                                f"(data.{ad.data_key} {train} vs {train0})")
        oof_ids = member.oof[ad.oof_id].astype(str).to_numpy()
        if len(oof_ids) != len(ids0) or (oof_ids != ids0).any() or \
                (member.oof["fold"].to_numpy() != member.folds["fold"].to_numpy()).any():
            raise UserError(f"run {name}: {member.run_dir / 'oof.csv'} does not follow its folds.csv row by row")
        # fold -1: the first block of time-ordered folds, which no fold validates (folds.py)
        own = member.folds["fold"].to_numpy()
        empty = member.oof[ad.oof_columns(member.run)].isna().any(axis=1).to_numpy() & (own >= 0)
        if empty.any():
            untrained = sorted({int(f) for f in own[empty]})
            raise UserError(f"run {name} did not train every fold: {int(empty.sum())} rows have no out-of-fold "
                            f"prediction (fold(s) {', '.join(map(str, untrained))}); retrain it without --folds")
    with_test = [m for m in members if m.test is not None]
    if with_test and len(with_test) != len(members):
        lacking = next(m for m in members if m.test is None)
        raise UserError(f"run {lacking.name} has no test_predictions.csv while {with_test[0].name} has: "
                        f"the blend could not predict the test set")
    if with_test:
        ids0 = set(first.test[ad.test_id].tolist())
        test0 = first.run.get("data", {}).get(ad.test_data_key)
        for member in members[1:]:
            if set(member.test[ad.test_id].tolist()) != ids0:
                raise UserError(f"run {member.name}: its test predictions cover other ids than {first.name}'s")
            test = member.run.get("data", {}).get(ad.test_data_key)
            if test is not None and test0 is not None and test != test0:
                raise UserError(f"run {member.name}: different test data from {first.name} "
                                f"(data.{ad.test_data_key} {test} vs {test0})")


def load_members(competition: str, specs: list[str], same_folds: bool = True) -> list[Member]:
    ad = adapter(competition)
    if ad.not_blendable:
        raise UserError(ad.not_blendable)
    if len(specs) < 2:
        raise UserError(f"blend needs at least 2 runs, got {len(specs)}")
    members, seen = [], {}
    for spec in specs:
        member = _load_member(ad, competition, spec)
        where = member.run_dir.resolve()
        if where in seen:
            raise UserError(f"run {member.name} is given twice ({seen[where]!r} and {spec!r})")
        seen[where] = spec
        members.append(member)
    check_members(ad, members, same_folds)
    return members


# --------------------------------------------------------------------------- the verb

def blend(competition: str, specs: list[str], method: str = DEFAULT_METHOD, name: str | None = None,
          restart: bool = False) -> dict:
    """Blend finished runs into a new run; returns {"row", "result", "run_dir", "config"}."""
    started = time.perf_counter()
    if method not in METHODS:
        raise UserError(f"blend --method {method!r} is not one of {', '.join(METHODS)}")
    comp = _competition(competition)
    ad, metric = comp.blend, comp.metric.name
    members = load_members(competition, specs, same_folds=method != "mean")
    first = members[0]
    folds = first.folds["fold"].to_numpy()
    truth = ad.truth(first.oof, first.run)
    values = np.stack([member_block(ad, m.oof, ad.oof_columns(m.run), m.run) for m in members], axis=1)
    clip = ad.blend_clip([m.run for m in members])

    # rows of a fold (time-ordered folds leave the first block unvalidated: fold -1, no out-of-fold prediction)
    scored = folds >= 0
    inner, per_fold = nested(method, ad, values[scored], truth[scored], folds[scored])
    oof = np.full((len(truth),) + inner.shape[1:], np.nan)
    oof[scored] = inner
    weights, intercept = fit(method, ad, values[scored], truth[scored])

    per_row, threshold = ad.decisions(truth, oof, folds)  # binary decisions chosen out of fold, if any

    def scores(index: np.ndarray) -> dict:
        return ad.scores(truth[index], oof[index], clip, **({} if per_row is None else {"threshold": per_row[index]}))

    fold_scores = []
    for fold, (w, b) in per_fold.items():
        index = np.flatnonzero(folds == fold)
        score = {"fold": fold, "rows": int(len(index)), **scores(index), "weights": [float(x) for x in w]}
        if method == "stack":
            score["intercept"] = _jsonable(b)
        fold_scores.append(score)
    cv = scores(np.flatnonzero(scored))
    per = [s[metric] for s in fold_scores]
    cv.update({f"{metric}_fold_mean": float(np.mean(per)), f"{metric}_fold_std": float(np.std(per)),
               "rows_scored": int(scored.sum())})
    cv.update(ad.cv_extras(truth[scored], oof[scored]))

    test_ids = test_pred = None
    if first.test is not None:
        test_ids = first.test[ad.test_id].to_numpy()
        test_values = np.stack([member_block(ad, m.test.set_index(ad.test_id).reindex(test_ids),
                                             ad.test_columns(m.run), m.run) for m in members], axis=1)
        test_pred = combine(method, ad, test_values, weights, intercept)
    result = kfold.KFoldResult(oof_prediction=oof, test_prediction=test_pred, fold_scores=fold_scores, cv=cv,
                               seconds=time.perf_counter() - started)

    config = BlendConfig(name=f"blend-{method}", method=method,
                         space=ad.mean_space if method == "mean" else ad.space,
                         members=[m.name for m in members],
                         member_configs=[str(m.run.get("config")) for m in members],
                         member_hashes=[str(m.run.get("config_hash")) for m in members],
                         member_training_ids=[m.run.get("training_id") for m in members],
                         member_paths=[_portable(m.run_dir) for m in members],
                         weights=[float(x) for x in weights], intercept=_jsonable(intercept), clip=clip)
    run_dir = paths.new_run_dir(competition, name or paths.default_run_name(config.name), restart)
    for stale in ("test_predictions.csv",):  # an overwritten run never keeps another blend's file
        if (run_dir / stale).exists():
            (run_dir / stale).unlink()
    shutil.copyfile(first.run_dir / "folds.csv", run_dir / "folds.csv")
    columns = ad.oof_columns(first.run)
    frame = first.oof.drop(columns=columns).copy()
    for j, column in enumerate(columns):
        frame[column] = oof if oof.ndim == 1 else oof[:, j]
    atomic.write_text(run_dir / "oof.csv", frame.to_csv(index=False))
    if test_pred is not None:
        frame = test_frame(ad, test_ids, test_pred, clip, first.run)
        ad.write_test(frame, run_dir / "test_predictions.csv", frame[ad.test_id], comp.submission, first.run)
    member_rows = [{"run": m.name, "config": m.run.get("config"), "config_hash": m.run.get("config_hash"),
                    "training_id": m.run.get("training_id"),
                    "cv": m.run.get("cv"), "weight": float(w)} for m, w in zip(members, weights)]
    row = runs.record(run_dir, competition=competition, config=config, result=result, metric=metric,
                      greater_is_better=comp.metric.greater_is_better, wall_s=time.perf_counter() - started, device="cpu",
                      data=dict(first.run.get("data", {})),
                      extra={"blend": {"method": method, "members": member_rows, "intercept": _jsonable(intercept)},
                             **ad.extra(cv, first.run), **({} if threshold is None else {"threshold": threshold})})
    return {"row": row, "result": result, "run_dir": run_dir, "config": config}


def command(args) -> int:
    """The `blend` verb: blend, print the weights and the CV, write the report."""
    out = blend(args.competition, args.runs, args.method, args.name, args.restart)
    config, row = out["config"], out["row"]
    members = row["blend"]["members"]
    width = max(len(m["run"]) for m in members)
    label = "weight" if config.method != "stack" else "coefficient"
    how = ("equal weights, nothing fitted" if config.method == "mean" else
           f"final fit on all {out['result'].cv['rows_scored']} out-of-fold rows, used for the test set")
    print(f"blend {config.method} in {config.space} ({how}):")
    for member in members:
        print(f"  {member['run']:<{width}}  {label} {member['weight']:.4f}   "
              f"(config {member['config']}, CV {row['metric']} {float(member['cv']):.5f})")
    if config.method == "stack":
        print(f"  intercept {config.intercept:.4f}" if np.ndim(config.intercept) == 0 else
              f"  intercepts (one per class) {', '.join(f'{b:.3f}' for b in config.intercept)}")
    best = (max if row["greater_is_better"] else min)(float(m["cv"]) for m in members)
    for line in runs.summary_lines(row, out["result"]):
        print(line)
    how = "" if config.method == "mean" else " (nested: each fold's rows blended by a fit on the other folds only)"
    print(f"best member CV {best:.5f}; blend CV {row['cv']:.5f}{how}")
    report.write_after_training(out["run_dir"])
    if (out["run_dir"] / "test_predictions.csv").exists():
        print(f"next: {hints.submit(args.competition, out['run_dir'].name)}")
    return 0


# --------------------------------------------------------------------------- predict

NEEDED = ("method", "members", "member_hashes", "member_training_ids", "weights", "intercept", "clip")


def is_blend(run: dict) -> bool:
    """Whether a run.json is a blend's: config blend-<method>, its members in config_values."""
    return str(run.get("config", "")).startswith("blend-") and "members" in (run.get("config_values") or {})


def is_blend_dir(run_dir: Path) -> bool:
    return (Path(run_dir) / "run.json").exists() and is_blend(runs.load_run(Path(run_dir)))


@dataclass
class _Plan:
    """A blend checked for prediction: its recipe and its members (run dir, run.json, and the
    member's own plan when it is a blend)."""
    name: str
    method: str
    weights: np.ndarray
    intercept: float | list[float]
    clip: float | None
    members: list[tuple[Path, dict, "_Plan | None"]]


def _rerun(competition: str, name: str, values: dict) -> str:
    members = " ".join(values.get("members") or ["RUN1", "RUN2"])
    return hints.pipelines(f"blend {competition} {members} --method {values.get('method', DEFAULT_METHOD)} "
                           f"--name {name} --restart")


def _portable(run_dir: Path) -> str:
    """A member's folder as recorded: relative to the project home when under it (a moved or copied
    home still finds its own runs), absolute otherwise."""
    where = Path(run_dir).resolve()
    try:
        return str(where.relative_to(paths.home()))
    except ValueError:
        return str(where)


def _member_dir(competition: str, member: str, recorded: str | None) -> Path | None:
    """The member's folder: the one recorded when the blend was made, else runs/<competition>/<member>."""
    for candidate in ([paths.home() / recorded] if recorded else []) + [paths.runs_dir(competition) / member]:
        if (candidate / "run.json").exists():
            return candidate
    return None


def _plan(competition: str, run_dir: Path, chain: frozenset) -> _Plan:
    """Check a blend and (recursively) its members before anything is predicted; refuse in one line."""
    run = runs.load_run(run_dir)
    name = run_dir.name
    if run.get("competition") != competition:
        raise UserError(f"run {name} is a {run.get('competition')!r} blend, not {competition}")
    values = run.get("config_values") or {}
    missing = [key for key in NEEDED if key not in values]
    if missing:
        raise UserError(f"blend {name} was made before blends recorded what predict needs (no "
                        f"{', '.join(missing)} in {run_dir / 'run.json'}): re-run the blend command, "
                        f"{_rerun(competition, name, values)}")
    members = list(values["members"])
    uneven = [key for key in ("member_hashes", "member_training_ids", "weights", "member_paths")
              if key in values and len(values[key]) != len(members)]
    if values["method"] not in METHODS or uneven or len(members) < 2:
        what = (f"method {values['method']!r}" if values["method"] not in METHODS else
                f"{uneven[0]} has {len(values[uneven[0]])} entries for {len(members)} members" if uneven else
                f"{len(members)} member(s)")
        raise UserError(f"blend {name}: {run_dir / 'run.json'} is damaged ({what}): re-run the blend command, "
                        f"{_rerun(competition, name, values)}")
    recorded = list(values.get("member_paths") or [None] * len(members))
    planned = []
    for member, where, config_hash, training_id in zip(members, recorded, values["member_hashes"],
                                                        values["member_training_ids"]):
        member_dir = _member_dir(competition, member, where)
        if member_dir is None:
            gone = paths.home() / where if where else paths.runs_dir(competition) / member
            raise UserError(f"blend {name}: member run {member} is missing (no {gone / 'run.json'}): restore it, "
                            f"or blend runs that exist under a new --name")
        if member_dir.resolve() in chain:
            raise UserError(f"blend {name}: member run {member} is this blend or a blend containing it: "
                            f"re-run the blend command, {_rerun(competition, name, values)}")
        member_run = runs.load_run(member_dir)
        now_hash, now_id = str(member_run.get("config_hash")), member_run.get("training_id")
        if now_hash != str(config_hash) or now_id != training_id:
            what = (f"config hash {now_hash}, not {config_hash}" if now_hash != str(config_hash) else
                    f"training_id {now_id}, not {training_id}")
            raise UserError(f"blend {name}: member run {member} was retrained since the blend was made ({what}); "
                            f"the blend was made from its earlier training: re-run the blend command, "
                            f"{_rerun(competition, name, values)}")
        if is_blend(member_run):
            sub = _plan(competition, member_dir, chain | {member_dir.resolve()})
        else:
            sub = None
            if not kfold.finished_fold_dirs(member_dir):
                raise UserError(f"blend {name}: member run {member} has no fold checkpoints in {member_dir}, so the "
                                f"blend cannot predict new data (its test_predictions.csv still serves `submit`)")
        planned.append((member_dir, member_run, sub))
    return _Plan(name, values["method"], np.asarray(values["weights"], float), _jsonable(values["intercept"]),
                 values["clip"], planned)


def run_dirs(competition: str, run_dir: Path) -> list[Path]:
    """The run's folder and, for a blend, each member's (members of members too), each once, as
    `predict` checks and uses them (export: pipelines/bundle.py)."""
    found = [Path(run_dir)]
    if not is_blend_dir(found[0]):
        return found

    def walk(plan: _Plan) -> None:
        for member_dir, _, sub in plan.members:
            if member_dir.resolve() not in {f.resolve() for f in found}:
                found.append(member_dir)
            if sub is not None:
                walk(sub)
    walk(_plan(competition, found[0], frozenset({found[0].resolve()})))
    return found


def _predict_plan(ad, plan: _Plan, test: Path, device: str) -> pd.DataFrame:
    frames = []
    for member_dir, member_run, sub in plan.members:
        if sub is not None:
            frame = _predict_plan(ad, sub, test, device)
        else:
            try:
                frame = ad.predict_member(member_dir, test, device)
            except UserError as exc:
                if type(exc) is not UserError:
                    raise
                raise UserError(f"blend {plan.name}: member run {member_dir.name}: {exc}") from None
        frames.append((member_run, frame))
    # as blend() read the members' test_predictions.csv: rows in the first member's order
    ids = frames[0][1][ad.test_id].to_numpy()
    values = np.stack([member_block(ad, frame.set_index(ad.test_id).reindex(ids), ad.test_columns(run), run)
                       for run, frame in frames], axis=1)
    if np.isnan(values).any():
        column = int(np.flatnonzero(np.isnan(values).reshape(len(ids), len(frames), -1).any(axis=(0, 2)))[0])
        raise UserError(f"blend {plan.name}: member run {plan.members[column][0].name} predicted other "
                        f"{ad.test_id}s than {plan.members[0][0].name} for {test}")
    return test_frame(ad, ids, combine(plan.method, ad, values, plan.weights, plan.intercept), plan.clip,
                      frames[0][0])


def predict(competition: str, run_dir: Path, test: Path, device: str = "auto") -> pd.DataFrame:
    """A blend's predictions for a new test file (House Prices) or image folder (Dogs vs. Cats):
    each member predicts it (from its fold checkpoints, or as a blend itself), then the members
    are combined with the blend's recorded method, weights, intercept and clip. Returns the frame
    the competition's submission writer takes (columns as in test_predictions.csv)."""
    ad = adapter(competition)
    run_dir = Path(run_dir)
    if not is_blend_dir(run_dir):
        raise UserError(f"run {run_dir.name} is not a blend (its run.json has no blend config)")
    plan = _plan(competition, run_dir, frozenset({run_dir.resolve()}))
    return _predict_plan(ad, plan, Path(test), device)
