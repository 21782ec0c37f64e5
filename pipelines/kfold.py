"""The k-fold engine every competition shares.

Train one model per fold on the other folds, predict the held-out fold (out-of-
fold predictions cover every training row exactly once) and the test set;
average the fold models' test predictions; CV is the metric on all OOF rows,
reported with the per-fold scores.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import atomic, budget, distributed, progress, resume, train_state
from .errors import UserError

PREDICTIONS = "predictions.safetensors"


@dataclass
class FoldOutput:
    valid_prediction: np.ndarray
    test_prediction: np.ndarray | None
    info: dict = field(default_factory=dict)
    seconds: float = 0.0  # set when read back from a finished fold: what its training took


@dataclass
class KFoldResult:
    oof_prediction: np.ndarray
    test_prediction: np.ndarray | None
    fold_scores: list[dict]
    cv: dict
    seconds: float
    resumed_folds: list[int] = field(default_factory=list)
    resumed_seconds: float = 0.0  # what the resumed folds took when they were trained
    pending: dict = field(default_factory=dict)  # fold -> pid of another process still training it:
                                                 # nothing was assembled (oof_prediction is None)
    assembled: bool = True        # False on the ranks > 0 of a distributed run and while folds are pending


def fold_indices(folds: np.ndarray, fold: int, ordered: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows) of `fold`: the rows of every other fold, or in time order
    (`ordered`) the rows before it (earlier folds and the training-only block -1; folds.py)."""
    folds = np.asarray(folds)
    return np.flatnonzero(folds < fold if ordered else folds != fold), np.flatnonzero(folds == fold)


def parse_fold_list(spec: str | None, n_folds: int) -> list[int]:
    """'0,2' or '1-3' or None (all folds)."""
    if spec is None or spec == "" or spec == "all":
        return list(range(n_folds))
    chosen: list[int] = []
    try:
        for part in str(spec).split(","):
            if "-" in part:
                lo, hi = part.split("-", 1)
                chosen.extend(range(int(lo), int(hi) + 1))
            else:
                chosen.append(int(part))
    except ValueError:
        raise UserError(f"--folds {spec!r}: expected fold numbers like 0,2 or 1-3") from None
    bad = [f for f in chosen if not 0 <= f < n_folds]
    if bad:
        raise UserError(f"--folds {spec!r}: fold {bad[0]} is outside 0..{n_folds - 1}")
    return sorted(set(chosen))


def run(folds: np.ndarray,
        fit_fold: Callable[[int, np.ndarray, np.ndarray], FoldOutput],
        score: Callable[[np.ndarray, np.ndarray], dict],
        main_metric: str,
        only_folds: list[int] | None = None,
        store: Path | None = None,
        decisions: Callable[[np.ndarray, np.ndarray], Callable] | None = None,
        ordered: bool = False) -> KFoldResult:
    """Fit every fold; score(index, prediction) returns the metrics for those rows.

    `decisions(oof, folds)`, when given, returns the score function for the assembled result (the
    fold scores and the CV): one whose decisions were chosen out of fold from every fold's
    predictions (a binary threshold: metrics.thresholds_out_of_fold). A fold's line while training
    is scored with `score`. `ordered`: folds in time order (fold_indices); the test predictions are
    then the latest fold's (the model trained on the most rows, the most recent ones).

    With `store` (the run folder), each finished fold's predictions are kept in
    fold<k>/predictions.safetensors, written last: a fold that has it is finished and is
    read back instead of refitted, so a rerun of an interrupted run trains only what is
    missing. Then the fold's fold<k>/last/ training state (train_state.py) is removed.

    With `store`, several processes may train disjoint folds of one run at once: a fold is
    trained under its lock (resume.lock_fold), and one held by another process is left to it.
    Then, under the run's assembly lock, the result is put together from every finished fold
    of the run (this process's and the others'), unless another process is still training a
    fold: then `pending` names those folds and nothing is assembled; the last process to finish
    assembles. In a distributed run (torchrun) rank 0 decides which folds to train, all ranks
    train them together, and rank 0 alone writes and assembles.
    """
    started = time.perf_counter()
    folds = np.asarray(folds)
    n_folds = int(folds.max()) + 1
    chosen = only_folds if only_folds is not None else list(range(n_folds))
    # a bar of the folds on a terminal; in a log the line per finished fold (_report_fold) says it
    bar = progress.bar(chosen, desc="folds", unit="fold", heartbeat=False,
                       disable=len(chosen) < 2 or not distributed.is_main())
    if store is None:
        outputs, took = {}, []
        for position, fold in enumerate(bar):
            budget.before_fold(fold, took)
            fold_started = time.perf_counter()
            with budget.fold(len(chosen) - position - 1):
                outputs[fold] = fit_fold(fold, *fold_indices(folds, fold, ordered))
            took.append(time.perf_counter() - fold_started)
            _report_fold(fold, n_folds, fold_indices(folds, fold)[1], outputs[fold], score, main_metric, took[-1])
        return _assemble(folds, outputs, score, main_metric, started, trained=chosen, decisions=decisions,
                         ordered=ordered)
    trained, took = [], []
    for position, fold in enumerate(bar):
        train_index, valid_index = fold_indices(folds, fold, ordered)
        budget.before_fold(fold, took)  # a time budget (budget.py): a fold that would not fit is not started
        claim = distributed.from_main(lambda: _claim(store, fold, valid_index))
        if claim != "train":
            continue
        try:
            fold_started = time.perf_counter()
            with budget.fold(len(chosen) - position - 1):
                output = fit_fold(fold, train_index, valid_index)
            took.append(time.perf_counter() - fold_started)
            if distributed.is_main():
                seconds = took[-1]
                save_fold(store, fold, valid_index, output, seconds)
                _report_fold(fold, n_folds, valid_index, output, score, main_metric, seconds)
        finally:
            if distributed.is_main():
                resume.release_fold(store, fold)
        trained.append(fold)
    if not distributed.is_main():
        return KFoldResult(None, None, [], {}, time.perf_counter() - started, assembled=False)
    resume.begin_assembly(store)  # held until resume.release(store), after the run's files are written
    pending = {fold: holder for fold in range(n_folds) if (holder := resume.fold_holder(store, fold))}
    if pending:
        return KFoldResult(None, None, [], {}, time.perf_counter() - started, pending=pending, assembled=False)
    outputs = {}
    for fold in range(n_folds):
        output = load_fold(store, fold, fold_indices(folds, fold)[1])
        if output is not None:
            outputs[fold] = output
    if not outputs:
        raise UserError(f"{store}: no fold of the run has finished")
    return _assemble(folds, outputs, score, main_metric, started, trained, decisions=decisions, ordered=ordered)


_FOLD_LISTENERS: list[Callable[[int, int, float], None]] = []


@contextlib.contextmanager
def fold_listener(listener: Callable[[int, int, float], None]):
    """Within the block, listener(fold, n_folds, score of the main metric) is called after each
    fold this process trains and stores (pipelines/sweep.py reports them to Optuna's pruner); an
    exception it raises stops the run there, its finished folds kept for a resume."""
    _FOLD_LISTENERS.append(listener)
    try:
        yield
    finally:
        _FOLD_LISTENERS.remove(listener)


def _report_fold(fold: int, n_folds: int, valid_index: np.ndarray, output: FoldOutput, score, main_metric: str,
                 seconds: float) -> None:
    """The one line (stdout) for a fold this process trained: 'fold 2/5: rmse_log 0.12345, kept epoch 14, 12.3 s';
    then the fold listeners."""
    if not distributed.is_main():
        return
    figures = score(valid_index, np.asarray(output.valid_prediction))
    epochs = output.info.get("best_epochs", output.info.get("best_epoch"))
    progress.say(progress.fold_line(fold, n_folds, main_metric, float(figures[main_metric]), seconds, epochs))
    for listener in list(_FOLD_LISTENERS):
        listener(fold, n_folds, float(figures[main_metric]))


def _claim(store: Path, fold: int, valid_index: np.ndarray) -> str:
    """"train" (this process now holds the fold's lock), "done" (finished, by anyone) or "busy"
    (another process trains it now)."""
    if not resume.lock_fold(store, fold):
        return "busy"
    if load_fold(store, fold, valid_index) is not None:
        resume.release_fold(store, fold)
        return "done"
    return "train"


def _assemble(folds: np.ndarray, outputs: dict, score, main_metric: str, started: float,
              trained: list[int], decisions=None, ordered: bool = False) -> KFoldResult:
    """The run's result from the folds' outputs: OOF predictions, fold-averaged test predictions
    (in time order, the latest fold's: the model trained on the most rows, and the most recent),
    per-fold scores and the CV over every row of those folds."""
    chosen = sorted(outputs)
    oof = None
    test_sum, fold_scores, resumed, resumed_seconds, predictions = None, [], [], 0.0, {}
    for fold in chosen:  # the predictions first: decisions may depend on every fold's
        valid_index = np.flatnonzero(folds == fold)
        output = outputs[fold]
        if fold not in trained:
            resumed.append(fold)
            resumed_seconds += output.seconds
        prediction = predictions[fold] = np.asarray(output.valid_prediction)
        if oof is None:
            oof = np.full((len(folds),) + prediction.shape[1:], np.nan, dtype=np.float64)
        oof[valid_index] = prediction
        if output.test_prediction is not None:
            test = np.asarray(output.test_prediction, dtype=np.float64)
            test_sum = test if test_sum is None else test_sum + test
    scored = np.flatnonzero(np.isin(folds, chosen))
    if decisions is not None:
        score = decisions(oof, folds)
    for fold in chosen:
        valid_index = np.flatnonzero(folds == fold)
        fold_scores.append({"fold": fold, "rows": int(len(valid_index)),
                            **score(valid_index, predictions[fold]), **outputs[fold].info})
    cv = score(scored, oof[scored])
    values = [s[main_metric] for s in fold_scores]
    cv.update({f"{main_metric}_fold_mean": float(np.mean(values)),
               f"{main_metric}_fold_std": float(np.std(values)),
               "rows_scored": int(len(scored))})
    test_mean = None if test_sum is None else test_sum / len(chosen)
    if ordered and outputs[chosen[-1]].test_prediction is not None:
        test_mean = np.asarray(outputs[chosen[-1]].test_prediction, dtype=np.float64)
    return KFoldResult(oof_prediction=oof, test_prediction=test_mean, fold_scores=fold_scores,
                       cv=cv, seconds=time.perf_counter() - started, resumed_folds=resumed,
                       resumed_seconds=resumed_seconds)


def pending_message(run_dir: Path, result: KFoldResult) -> str:
    """What a process that finished its folds says while other processes still train the rest."""
    pending = ", ".join(f"{fold} (pid {pid})" for fold, pid in sorted(result.pending.items()))
    return (f"run {Path(run_dir).name}: this process's folds are finished and stored; still being trained by "
            f"other processes: fold {pending}. The run's oof.csv, CV and leaderboard row are written by the "
            f"last process to finish")


def save_fold(store: Path, fold: int, valid_index: np.ndarray, output: FoldOutput, seconds: float = 0.0) -> None:
    """A fold's predictions, exact (in their own dtype), as the mark that the fold is finished."""
    from safetensors.numpy import save_file

    arrays = {"valid_index": np.ascontiguousarray(valid_index, dtype=np.int64),
              "valid": np.ascontiguousarray(output.valid_prediction)}
    if output.test_prediction is not None:
        arrays["test"] = np.ascontiguousarray(output.test_prediction)
    folder = Path(store) / f"fold{fold}"
    atomic.write_with(folder / PREDICTIONS, lambda tmp: save_file(
        arrays, str(tmp), metadata={"fold": str(fold), "info": json.dumps(output.info), "seconds": repr(seconds)}))
    train_state.clear(folder / "last")


def load_fold(store: Path, fold: int, valid_index: np.ndarray) -> FoldOutput | None:
    """The stored output of a finished fold, or None when the fold still has to be trained."""
    from safetensors import safe_open

    path = Path(store) / f"fold{fold}" / PREDICTIONS
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="numpy") as handle:
            arrays = {key: handle.get_tensor(key) for key in handle.keys()}
            meta = handle.metadata() or {}
            info, seconds = json.loads(meta["info"]), float(meta.get("seconds", 0.0))
    except Exception as exc:  # safetensors raises its own error types
        raise UserError(f"{path}: cannot read the stored fold predictions ({exc}); "
                        f"delete the file to retrain fold {fold}, or rerun with --restart") from None
    if not np.array_equal(arrays["valid_index"], valid_index):
        raise UserError(f"{path}: fold {fold} was trained on other rows than this command's fold {fold}; "
                        f"rerun with --restart")
    return FoldOutput(arrays["valid"], arrays.get("test"), info, seconds)


def finished_fold_dirs(run_dir: Path) -> list[Path]:
    """The fold<k>/ folders whose training finished, for predict: those holding their stored
    predictions (an interrupted, resumable fold has none); every fold<k>/ for runs made before
    predictions were stored."""
    folders = sorted((p for p in Path(run_dir).glob("fold*") if p.is_dir()), key=lambda p: p.name)
    finished = [p for p in folders if (p / PREDICTIONS).exists()]
    return finished if finished else folders
