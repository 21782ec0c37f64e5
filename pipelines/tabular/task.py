"""A spec competition: k-fold training, prediction from the fold checkpoints, validated submissions.

The run folder is House Prices': run_state.json, folds.csv, fold<k>/ (model.safetensors +
meta.json, and LightGBM's model.lgb.txt), oof.csv, test_predictions.csv, run.json, metrics.json,
and a registry row; runs live in runs/<spec name>/ and resume as House Prices runs do (resume.py):
the spec's name is the competition's name, and its fingerprint is part of the data's.

Spaces. Fold models predict in the model space: the regression target (its log1p when the metric
is rmsle, so models fit what is scored), P(positive) for binary, class probabilities for
multiclass. Test predictions are averaged over folds in that space, then mapped back (expm1 for
rmsle, clipped at 0). Binary (and multiclass) folds are averaged as probabilities, not as logits
(log-probabilities): it is what kfold.run and the Dogs vs. Cats pipeline do, the mean of
probabilities never has a worse log loss than the folds' mean log loss (convexity), and on the
held-out rows of the measured tables it was the better of the two in 5 of 6 binary (table, config)
pairs (churn, credit x linear, lightgbm, mlp; by up to 0.0036 log loss; logits won churn/lightgbm by
0.0005) and in 3 of 6 multiclass ones (hpc, penguins); AUC and accuracy moved by under 0.002.

Files:
- oof.csv: id, fold, the target as written in train.csv, then oof_<target> (regression: the
  value; binary: P(positive)) or oof_<class> for each class (multiclass);
- test_predictions.csv: id, then <target> (the value, or P(positive)) or one column per class
  (multiclass probabilities): the fold-averaged predictions, validated; `submit` turns them into
  the spec's submission format (value, probability, label, probabilities), so a label submission
  still has probabilities behind it (blends need them). A binary run's file stays id + P(positive)
  whatever its submission format (a blend reads it so); a binary `probabilities` submission is
  made from it by write_submission (one column per class).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import atomic, checkpoint, config as configs, distributed, folds as folding, kfold, plugins, resume, runs
from ..device import resolve
from ..errors import UserError
from ..notes import say
from ..progress import fold_label
from ..train_state import Resume
from . import data, metrics, models
from .preprocess import Preprocessor
from .spec import Spec

ENGINE = "tabular"
DEFAULT_CONFIG = "lightgbm"  # chosen by measurement: config_name's docstring


def config_name(spec: Spec, name: str | None = None) -> str:
    """The config a spec without `config:` trains with (--config overrides both): lightgbm, the best
    of linear, lightgbm and mlp on six real tables laid out as competitions (docs/results.md, "Spec
    competitions", with the command that measures it)."""
    return name or spec.config or DEFAULT_CONFIG


def load_config(spec: Spec, name: str | None = None, overrides: dict | None = None):
    """--config NAME, else the spec's `config:`, else DEFAULT_CONFIG; with --set overrides."""
    try:
        return models.load_config(config_name(spec, name), overrides)
    except UserError as exc:
        if name is None and spec.config is not None and str(exc).startswith("unknown config"):
            raise UserError(f"{spec.where('config')}: {exc}") from None
        raise


# --------------------------------------------------------------------------- spaces

def transform(spec: Spec, cfg) -> str:
    """What a regression's fold models are fitted on: the config's `target` (log1p or raw), or with
    `target: auto` the spec's (log1p for rmsle, the metric's own space). Classification: none."""
    if spec.task != "regression" or cfg.target == "auto":
        return spec.target_transform
    return "log1p" if cfg.target == "log1p" else "none"


def fit_target(spec: Spec, target: data.Target, how: str | None = None) -> np.ndarray:
    """What fold models are fitted on (model space)."""
    how = spec.target_transform if how is None else how
    if spec.task == "regression":
        return np.log1p(target.values) if how == "log1p" else target.values
    return target.values


def to_output(transform: str, prediction: np.ndarray) -> np.ndarray:
    """Model space -> the competition's values (classification predictions are already probabilities)."""
    prediction = np.asarray(prediction, dtype=np.float64)
    return np.clip(np.expm1(prediction), 0.0, None) if transform == "log1p" else prediction


def make_folds(spec: Spec, dataset, cfg) -> np.ndarray:
    """The run's folds by the spec's scheme (folds.py): the competition's file, by group, in time
    order, or stratified (by class, or by quantile bins of a regression target)."""
    target = dataset.target
    if spec.folds_file is not None:
        return folding.file_folds(dataset.train_path.parent / spec.folds_file, dataset.train_ids, spec.id)
    if spec.group is not None:
        return folding.group_folds(target.values, dataset.train[spec.group].to_numpy(), cfg.folds, cfg.seed,
                                   spec.classification, spec.group)
    if spec.time is not None:
        return folding.time_folds(dataset.train[spec.time].to_numpy(), cfg.folds, spec.time)
    return folding.make_folds(target.values, cfg.folds, cfg.seed, "labels" if spec.classification else "bins")


def fold_scheme(spec: Spec) -> str:
    """The scheme as run.json and the leaderboard name it."""
    if spec.folds_file is not None:
        return f"file:{spec.folds_file}"
    if spec.group is not None:
        return f"group:{spec.group}"
    return f"time:{spec.time}" if spec.time is not None else "stratified"


def _problem(spec: Spec, target: data.Target) -> models.Problem:
    return models.Problem(spec.task, len(target.classes) if spec.task == "multiclass" else 0)


def prediction_columns(task: str, target: str, classes: list[str] | None) -> list[str]:
    return list(classes) if task == "multiclass" else [target]


def prediction_frame(id_column: str, ids, task: str, target: str, classes, values: np.ndarray) -> pd.DataFrame:
    columns = prediction_columns(task, target, classes)
    values = np.asarray(values, dtype=np.float64).reshape(len(ids), len(columns))
    frame = pd.DataFrame(values, columns=columns)
    frame.insert(0, id_column, np.asarray(ids, dtype=object))
    return frame


# --------------------------------------------------------------------------- training

def train(spec: Spec, cfg, data_dir: str | Path, run_name: str | None = None, device: str = "auto",
          only_folds: list[int] | None = None, restart: bool = False, test_path: str | Path | None = None) -> dict:
    """k-fold training of `cfg` on the spec's data. Rerunning an interrupted run (same name, or no
    name: the newest unfinished run with this config, data and spec) keeps its finished folds and
    resumes the others (a network from its last epoch); restart starts over (resume.py). Every
    check of the spec, config and data happens before a run folder exists."""
    started = time.perf_counter()
    distributed.refuse_launched(f"{spec.name} trains small tabular models")
    family = models.get(cfg.model, f"config {cfg.name}")
    models.check_task(cfg, spec.task, f"config {cfg.name}")
    device = resolve(device)
    dataset = data.load(spec, data_dir, test_path)
    target = dataset.target
    problem = _problem(spec, target)
    how = transform(spec, cfg)
    if how == "log1p" and spec.task == "regression" and len(target.values) and float(np.min(target.values)) <= -1:
        raise UserError(f"config {cfg.name}: target: log1p needs every {spec.target} above -1; "
                        f"{dataset.train_path} has {float(np.min(target.values))}")
    y_fit = fit_target(spec, target, how)
    fold_of_row = make_folds(spec, dataset, cfg)
    if only_folds is not None:
        only_folds = kfold.parse_fold_list(",".join(map(str, only_folds)), int(fold_of_row.max()) + 1)
    data_sha = {"train_sha": data.fingerprint(dataset.train_path),
                "test_sha": data.fingerprint(dataset.test_path) if dataset.test_path else None,
                "spec_sha": spec.fingerprint()}
    run = resume.open_run(spec.name, run_name, cfg, data_sha, restart=restart)
    run_dir = run.path
    try:
        return _train(spec, cfg, family, dataset, problem, y_fit, how, fold_of_row, only_folds, run, device,
                      data_sha, started)
    finally:
        resume.release(run_dir)


def _train(spec, cfg, family, dataset, problem, y_fit, how, fold_of_row, only_folds, run, device, data_sha, started):
    run_dir = run.path
    target = dataset.target
    config_values = configs.as_dict(cfg)
    folding.save_folds(run_dir / "folds.csv", dataset.train_ids, fold_of_row)
    x_frame, test_frame = dataset.train_features, dataset.test_features
    truth = target.values  # output space: values, 0/1, class indices
    metric = metrics.get(spec.metric)
    spec_meta = {"id": spec.id, "target": spec.target, "task": spec.task, "metric": spec.metric,
                 "transform": how, "classes": target.classes}
    if spec.plugin:  # predict runs the same plugin, and only the same
        spec_meta.update(plugin=spec.plugin, plugin_sha=plugins.sha(spec.plugin))
    scheme = fold_scheme(spec)
    if scheme != "stratified":  # time order: predict takes the latest fold's model, as training did
        spec_meta["folds_scheme"] = scheme

    def fit_fold(fold: int, train_index: np.ndarray, valid_index: np.ndarray) -> kfold.FoldOutput:
        seed = folding.fold_seed(cfg.seed, fold)
        pre = Preprocessor(dataset.columns.numeric, dataset.columns.categorical,
                           missing_indicator=cfg.missing_indicator, scaling=cfg.scaling,
                           clip_quantile=cfg.clip_quantile, max_levels=cfg.max_levels,
                           min_level_count=cfg.min_level_count).fit(x_frame.iloc[train_index])
        x_fit, x_valid = pre.transform(x_frame.iloc[train_index]), pre.transform(x_frame.iloc[valid_index])
        folder = run_dir / f"fold{fold}"

        def valid_figures(prediction: np.ndarray) -> dict:
            return {spec.metric: metric(truth[valid_index], to_output(how, prediction))}

        # seeds_per_fold models that differ only by seed (seed + member), averaged in the model space;
        # the first lives in fold<k>/ itself, the others in fold<k>/member<m>/
        valid = test = None
        best_epochs = []
        x_test = pre.transform(test_frame) if test_frame is not None else None
        for member in range(cfg.seeds_per_fold):
            member_seed = folding.fold_seed(cfg.seed, fold, member)
            where = member_folder(folder, member)
            if not (where / checkpoint.META).exists():  # else finished by an earlier, interrupted attempt
                label = fold_label(fold, cfg.folds, member if cfg.seeds_per_fold > 1 else None)
                state = Resume(where / "last", f"fold {fold} seed {member_seed}", {"fold": fold, "member": member})
                fitted, info = family.fit(cfg, problem, x_fit, y_fit[train_index], x_valid, y_fit[valid_index],
                                          member_seed, device, state, label, valid_figures)
                tensors, family_meta = family.save(fitted, where)
                checkpoint.save(where, tensors, {
                    "competition": spec.name, "engine": ENGINE, "spec": spec_meta, "config": config_values,
                    "fold": fold, "member": member, "seed": member_seed,
                    "problem": {"task": problem.task, "n_classes": problem.n_classes},
                    "n_features": int(x_fit.shape[1]), "preprocessor": pre.state,
                    "best_epoch": int(info.get("best_epoch", 0)), "history": info.get("history", []), **family_meta})
            # predictions from the model as saved, so that predict() from the checkpoints repeats them exactly
            fitted, _, _, meta, _ = _load_fold(where, device)
            best_epochs.append(int(meta.get("best_epoch", 0)))
            v = family.predict(fitted, x_valid, device)
            valid = v if valid is None else valid + v
            if x_test is not None:
                t = family.predict(fitted, x_test, device)
                test = t if test is None else test + t
        n = cfg.seeds_per_fold
        if n > 1:
            valid, test = valid / n, (test / n if test is not None else None)
        fold_info = {"train_rows": int(len(train_index))}
        if any(best_epochs):
            fold_info["best_epoch"] = best_epochs[0] if n == 1 else best_epochs
        return kfold.FoldOutput(valid, test, fold_info)

    def score(index: np.ndarray, prediction: np.ndarray) -> dict:
        return metrics.scores(spec.task, spec.metric, truth[index], to_output(how, prediction))

    result = kfold.run(fold_of_row, fit_fold, score, spec.metric, only_folds, store=run_dir,
                       decisions=metrics.decisions_for(spec.task, spec.metric, truth, lambda p: to_output(how, p)),
                       ordered=spec.time is not None)
    if not result.assembled:  # other processes still train folds of this run: the last one assembles it
        print(kfold.pending_message(run_dir, result))
        return {"row": None, "result": result, "run_dir": run_dir}
    resume.refresh(run)
    columns = prediction_columns(spec.task, spec.target, target.classes)
    oof = prediction_frame(spec.id, dataset.train_ids, spec.task, spec.target, target.classes,
                           to_output(how, result.oof_prediction))
    oof.columns = [spec.id] + [f"oof_{c}" for c in columns]
    oof.insert(1, "fold", fold_of_row)
    oof.insert(2, spec.target, target.labels)
    atomic.write_text(run_dir / "oof.csv", oof.to_csv(index=False))
    if result.test_prediction is not None:
        frame = prediction_frame(spec.id, dataset.test_ids, spec.task, spec.target, target.classes,
                                 to_output(how, result.test_prediction))
        write_predictions(spec, frame, run_dir / "test_predictions.csv", dataset.test_ids, target.classes)
    wall = time.perf_counter() - started + result.resumed_seconds
    folds_done = [s["fold"] for s in result.fold_scores]
    row = runs.record(run_dir, competition=spec.name, config=cfg, result=result, metric=spec.metric,
                      greater_is_better=spec.greater_is_better, wall_s=wall, device=str(device),
                      extra={"dataset": dataset.train_path.parent.name, "engine": ENGINE, "task": spec.task,
                             "classes": target.classes, "submission": spec.submission,
                             "spec": str(spec.path) if spec.path else None,
                             "resumed_folds": result.resumed_folds, "folds_scheme": scheme,
                             **metrics.threshold_record(spec.task, spec.metric, truth,
                                                        to_output(how, result.oof_prediction))},
                      data={"train": str(dataset.train_path),
                            "test": str(dataset.test_path) if dataset.test_path else None, **data_sha},
                      register=run.recorded_folds != folds_done)
    resume.mark_recorded(run, folds_done)
    return {"row": row, "result": result, "run_dir": run_dir}


# --------------------------------------------------------------------------- prediction

def member_folder(fold_folder: Path, member: int) -> Path:
    """Where a fold's model `member` is saved: the first in the fold folder itself, the others in
    fold<k>/member<m>/."""
    return Path(fold_folder) if member == 0 else Path(fold_folder) / f"member{member}"


def _load_fold(folder: Path, device) -> tuple:
    """(fitted model, family, preprocessor, meta, config) of one fold checkpoint."""
    tensors, meta = checkpoint.load(folder, device)
    if meta.get("engine") != ENGINE:
        raise UserError(f"{folder}: not a checkpoint of a spec (tabular) competition run")
    where = str(Path(folder) / checkpoint.META)
    cfg = models.saved_config(meta["config"], where)
    family = models.get(cfg.model, where)
    problem = models.Problem(**meta["problem"])
    fitted = family.load(cfg, problem, Path(folder), tensors, meta, device)
    return fitted, family, Preprocessor(state=meta["preprocessor"]), meta, cfg


def predict(run_dir: str | Path, test_path: str | Path, device: str = "auto") -> pd.DataFrame:
    """Fold-averaged predictions for a test CSV from the run's fold checkpoints only (no training
    data): the test_predictions.csv layout (module docstring), averaged as training averaged them
    (folds in time order: the latest fold's model alone)."""
    run_dir, device = Path(run_dir), resolve(device)
    folders = [f for f in kfold.finished_fold_dirs(run_dir) if (f / checkpoint.META).exists()]
    if not folders:
        raise UserError(f"{run_dir}: no fold checkpoints found")
    loaded = sorted((_load_fold(folder, device) for folder in folders), key=lambda item: int(item[3]["fold"]))
    first_meta, first_cfg = loaded[0][3], loaded[0][4]
    for fitted, family, pre, meta, cfg in loaded[1:]:
        differs = configs.first_difference(configs.as_dict(first_cfg), configs.as_dict(cfg))
        if differs or meta["spec"] != first_meta["spec"]:
            raise UserError(f"{run_dir}/fold{meta['fold']}: checkpoint from another config or spec than fold "
                            f"{first_meta['fold']} ({differs or 'spec'}); a run's folds must share them")
    spec_meta = first_meta["spec"]
    state = loaded[0][2].state
    features = [*state["numeric"], *state["categorical"]]
    frame = data.read_table(test_path, spec_meta["id"], say=say, keep=features)
    if spec_meta.get("plugin"):
        plugin_path = Path(spec_meta["plugin"])
        if not plugin_path.is_file():  # moved with its spec into the folder of specs (an exported bundle's)
            from .. import specs

            moved = specs.user_folder() / plugin_path.name
            if moved.is_file() and plugins.sha(moved) == spec_meta.get("plugin_sha"):
                plugin_path = moved
        if not plugin_path.is_file() or plugins.sha(plugin_path) != spec_meta.get("plugin_sha"):
            what = "is gone" if not plugin_path.is_file() else "has changed"
            raise UserError(f"{plugin_path}: the plugin run {run_dir.name} was trained with {what}; predict needs "
                            f"the same file (or train the run again)")
        frame = plugins.features(plugins.load(plugin_path), frame, spec_meta["id"], str(test_path))
    try:
        source = Path(runs.load_run(run_dir)["data"]["train"]).name
    except (OSError, ValueError, KeyError, TypeError):
        source = data.TRAIN
    if str(spec_meta.get("folds_scheme", "")).startswith("time:"):
        loaded = loaded[-1:]  # folds in time order: the latest fold's model alone (kfold._assemble)
    total = None
    for fitted, family, pre, meta, cfg in loaded:
        folder = run_dir / f"fold{meta['fold']}"
        x = pre.transform(data.feature_frame(frame, pre.state["numeric"], pre.state["categorical"], Path(test_path),
                                             spec_meta["id"], source, f" (run {run_dir.name} was trained on it)"))
        prediction = None
        for member in range(cfg.seeds_per_fold):  # averaged as training averaged them
            model = fitted if member == 0 else _load_fold(member_folder(folder, member), device)[0]
            p = family.predict(model, x, device)
            prediction = p if prediction is None else prediction + p
        if cfg.seeds_per_fold > 1:
            prediction = prediction / cfg.seeds_per_fold
        total = prediction if total is None else total + prediction  # as kfold.run sums, fold by fold
    return prediction_frame(spec_meta["id"], frame[spec_meta["id"]], spec_meta["task"], spec_meta["target"],
                            spec_meta["classes"], to_output(spec_meta["transform"], total / len(loaded)))


def run_classes(run_dir: str | Path) -> list[str] | None:
    """The class labels of a run (binary: [negative, positive]), from its run.json."""
    return runs.load_run(Path(run_dir)).get("classes")


def read_predictions(path: str | Path, spec: Spec) -> pd.DataFrame:
    """A test_predictions.csv (or predict's output) read back exactly: ids as text, floats round-trip."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: predictions file not found")
    return pd.read_csv(path, dtype={spec.id: str}, encoding="utf-8-sig")


# --------------------------------------------------------------------------- submissions

def _validate(frame: pd.DataFrame, columns: list[str], expected_ids, rule: str, classes, where: str) -> None:
    """One line for anything Kaggle would reject or score wrongly: header, ids (each once, all
    there), values (finite; >= 0; probabilities in [0, 1] summing to 1 per row; known labels)."""
    if list(frame.columns) != list(columns):
        raise UserError(f"{where}: header must be {','.join(columns)}, got {','.join(map(str, frame.columns))}")
    id_column = columns[0]
    ids = frame[id_column].astype(str).to_numpy()
    duplicated = pd.Series(ids).duplicated().to_numpy()
    if duplicated.any():
        raise UserError(f"{where}: {id_column} {ids[np.flatnonzero(duplicated)[0]]} appears more than once")
    if expected_ids is not None:
        expected = {str(i) for i in expected_ids}
        present = set(ids.tolist())
        if expected - present:
            raise UserError(f"{where}: {len(expected - present)} {id_column}(s) missing, e.g. "
                            f"{sorted(expected - present)[0]}")
        if present - expected:
            raise UserError(f"{where}: {len(present - expected)} unexpected {id_column}(s), e.g. "
                            f"{sorted(present - expected)[0]}")
    values = frame[columns[1:]]
    if rule == "label":
        bad = ~values.iloc[:, 0].astype(str).isin(list(classes)).to_numpy()
        what = f"one of the classes {', '.join(map(repr, classes))}"
    elif rule.startswith("ranked"):  # ranked:K
        k, known = int(rule.split(":")[1]), {str(c) for c in classes}
        tokens = values.iloc[:, 0].astype(str).str.split(" ")
        bad = ~tokens.map(lambda t: len(t) == min(k, len(known)) == len(set(t)) and set(t) <= known).to_numpy()
        what = f"{min(k, len(known))} different classes separated by spaces"
    else:
        numbers = values.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(numbers).all(axis=1)
        what = "a finite number"
        if rule == "nonnegative":
            bad |= (numbers < 0).any(axis=1)
            what = "a number >= 0"
        elif rule in ("probability", "probabilities"):
            with np.errstate(invalid="ignore"):
                bad |= ((numbers < 0) | (numbers > 1)).any(axis=1)
            what = "a probability in [0, 1]"
            if rule == "probabilities":
                bad |= np.abs(numbers.sum(axis=1) - 1.0) > 1e-6
                what = "a row of probabilities in [0, 1] summing to 1"
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        shown = ", ".join(f"{c}={values[c].iloc[row]!r}" for c in columns[1:4]) + (" ..." if len(columns) > 4 else "")
        raise UserError(f"{where}: row {row + 2} ({id_column} {ids[row]}): {shown} is not {what}")


def _rule(spec: Spec, submission: str) -> str:
    if submission == "value":
        return "nonnegative" if spec.metric == "rmsle" else "value"
    if submission == "ranked":
        return f"ranked:{metrics.map_k(spec.metric)}"
    return submission


def write_predictions(spec: Spec, frame: pd.DataFrame, path: Path, expected_ids, classes) -> Path:
    """test_predictions.csv: validated, written atomically."""
    rule = {"regression": _rule(spec, "value"), "binary": "probability", "multiclass": "probabilities"}[spec.task]
    columns = [spec.id] + prediction_columns(spec.task, spec.target, classes)
    _validate(frame, columns, expected_ids, rule, classes, str(path))
    atomic.write_text(path, frame.to_csv(index=False))
    return path


def write_submission(spec: Spec, frame: pd.DataFrame, out: str | Path, sample_submission: str | Path | None = None,
                     *, classes: list[str] | None = None, expected_ids=None, template_rows: bool = True,
                     threshold: float = 0.5) -> Path:
    """The spec's submission from predictions in the test_predictions.csv layout, validated, then
    written atomically (a refused submission leaves no file).

    With a template (sample_submission: the spec's key, default sample_submission.csv) the
    submission has its columns, in its order, and its rows, in its order: with template_rows
    (submit) the predictions must hold exactly its ids; without (predict, of any test file) its
    row order is followed when they hold exactly its ids, else theirs is kept (a file other than
    the competition's test set). Without a template: id + target, or id + one column per class in
    the run's class order (binary: negative, positive), in the predictions' row order.

    Values: the value; P(positive) (probability); the most probable class, or for binary the
    positive class when P(positive) > threshold (label: the run's, chosen out of fold for a metric
    that tunes it, else 0.5); the class probabilities (probabilities; binary: P(positive) in the
    positive class's column and 1 - P(positive) in the negative class's); the K most probable
    classes, most probable first, separated by spaces (ranked, for map@K).

    classes: the run's class labels (binary: [negative, positive], needed for a label or
    probabilities submission); expected_ids: the test ids it must hold exactly (default: the
    template's when its rows are followed, else the frame's)."""
    out = Path(out)
    if spec.task == "multiclass":
        classes = list(classes) if classes is not None else [str(c) for c in frame.columns[1:]]
    elif spec.task == "binary" and spec.submission in ("label", "probabilities") and classes is None:
        raise UserError(f"{out}: a {spec.submission} submission of a binary task needs the run's classes")
    frame = frame.copy()
    frame[spec.id] = frame[spec.id].astype(str)
    if sample_submission is not None and Path(sample_submission).exists():
        sample_submission = Path(sample_submission)
        header = data.read_sample_columns(sample_submission, spec, classes)
        sample_ids = [str(i) for i in data.read_sample_ids(sample_submission, spec)]
        position = {key: i for i, key in enumerate(frame[spec.id])}
        same = len(sample_ids) == len(position) == len(frame) and all(key in position for key in sample_ids)
        if template_rows or same:
            missing = [key for key in sample_ids if key not in position]
            if missing:
                raise UserError(f"{out}: the predictions have no row for {spec.id} {missing[0]} of "
                                f"{sample_submission.name} ({len(missing)} missing)")
            if len(position) == len(sample_ids) == len(frame):
                frame = frame.iloc[[position[key] for key in sample_ids]].reset_index(drop=True)
            if expected_ids is None:
                expected_ids = sample_ids
    else:
        header = data.default_header(spec, classes)
    ids = frame[spec.id].to_numpy(dtype=object)
    predicted = prediction_columns(spec.task, spec.target, classes)
    missing = [c for c in predicted if c not in frame.columns]
    if missing:
        raise UserError(f"{out}: the predictions have no column {missing[0]!r}")
    values = frame[predicted].to_numpy(dtype=np.float64)
    if spec.submission == "probabilities" and spec.task == "binary":
        by_class = {str(classes[0]): 1.0 - values[:, 0], str(classes[1]): values[:, 0]}
        submission = pd.DataFrame({c: by_class[c] for c in header[1:]})
    elif spec.submission == "probabilities":
        submission = pd.DataFrame({c: values[:, predicted.index(c)] for c in header[1:]})
    elif spec.submission == "label":
        chosen = metrics.decide(values[:, 0] if spec.task == "binary" else values, threshold)
        submission = pd.DataFrame({header[1]: np.asarray(classes, dtype=object)[chosen]})
    elif spec.submission == "ranked":
        top = metrics.ranked(values, metrics.map_k(spec.metric))
        names = np.asarray([str(c) for c in classes], dtype=object)
        submission = pd.DataFrame({header[1]: [" ".join(row) for row in names[top]]})
    else:
        submission = pd.DataFrame({header[1]: values[:, 0]})
    submission.insert(0, header[0], ids)
    _validate(submission, header, ids if expected_ids is None else expected_ids, _rule(spec, spec.submission),
              classes, str(out))
    atomic.write_text(out, submission.to_csv(index=False))
    return out
