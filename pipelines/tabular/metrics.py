"""The metrics a spec can name, with the tasks they score and their direction.

Every function takes the encoded truth and the predictions in output space:
- regression: values, and predicted values;
- binary: 0/1 (1 = the positive class), and P(positive);
- multiclass: class indices (in the spec's class order: numbers as numbers, so an ordinal target's
  order for `qwk`), and an (n, classes) matrix of probabilities.

A metric scored on decisions (`needs: label`) decides as `decide` does: the most probable class, or
P(positive) > threshold for binary (0.5 unless the run chose one out of fold: `threshold`). `map@K`
scores the K most probable classes in order (a `ranked` submission).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import metrics as shared
from ..errors import UserError

EPS = 1e-15  # probabilities are clipped to [EPS, 1 - EPS] for log loss, as Kaggle and scikit-learn do


@dataclass(frozen=True)
class Metric:
    name: str
    function: Callable[[np.ndarray, np.ndarray], float]
    tasks: tuple[str, ...]
    greater_is_better: bool
    needs: str  # "value" (regression), "probability" (scored on probabilities), "label" (on decisions),
                # "ranked" (on the K most probable classes: map@K)
    # binary: the run chooses the decision threshold out of fold for this metric (else P > 0.5)
    tunes_threshold: bool = False

    def __call__(self, truth, prediction, threshold=0.5) -> float:
        if self.needs == "label":
            return float(self.function(np.asarray(truth), np.asarray(prediction), threshold))
        return float(self.function(np.asarray(truth), np.asarray(prediction)))


def rmse(truth, value) -> float:
    return shared.rmse(truth, value)


def rmsle(truth, value) -> float:
    """RMSE of log1p: predictions below 0 count as 0 (the metric is undefined below -1)."""
    return shared.rmse(np.log1p(np.asarray(truth, float)), np.log1p(np.clip(np.asarray(value, float), 0, None)))


def mae(truth, value) -> float:
    return float(np.mean(np.abs(np.asarray(truth, float) - np.asarray(value, float))))


def auc(truth, probability) -> float:
    return shared.roc_auc(truth, probability)


def logloss(truth, probability) -> float:
    """Binary (P(positive), 1-D) or multiclass (rows of class probabilities): the rows are clipped
    to [EPS, 1 - EPS] and renormalised, as Kaggle scores a multiclass submission."""
    probability = np.asarray(probability, float)
    if probability.ndim == 1:
        return shared.log_loss(truth, probability, eps=EPS)
    clipped = np.clip(probability, EPS, 1 - EPS)
    clipped /= clipped.sum(axis=1, keepdims=True)
    truth = np.asarray(truth, int)
    return float(-np.mean(np.log(clipped[np.arange(len(truth)), truth])))


def accuracy(truth, probability, threshold: float = 0.5) -> float:
    return float(np.mean(decide(probability, threshold) == np.asarray(truth, int)))


def decide(probability, threshold: float = 0.5) -> np.ndarray:
    """The predicted class index: P(positive) > threshold, or the most probable class."""
    probability = np.asarray(probability, float)
    return (probability > threshold).astype(int) if probability.ndim == 1 else probability.argmax(axis=1)


def r2(truth, value) -> float:
    """1 - residual sum of squares / total sum of squares (0 for predicting the mean)."""
    truth, value = np.asarray(truth, float), np.asarray(value, float)
    total = np.sum((truth - truth.mean()) ** 2)
    return float(1.0 - np.sum((truth - value) ** 2) / total) if total > 0 else float("nan")


def mape(truth, value) -> float:
    """Mean of |truth - value| / |truth|, a true 0 counted as machine epsilon (scikit-learn's rule)."""
    truth, value = np.asarray(truth, float), np.asarray(value, float)
    return float(np.mean(np.abs(truth - value) / np.maximum(np.abs(truth), np.finfo(np.float64).eps)))


def _confusion(truth, chosen, n: int) -> np.ndarray:
    counts = np.zeros((n, n))
    np.add.at(counts, (np.asarray(truth, int), np.asarray(chosen, int)), 1)
    return counts


def _classes(truth, probability) -> int:
    probability = np.asarray(probability, float)
    return 2 if probability.ndim == 1 else probability.shape[1]


def f1(truth, probability, threshold: float = 0.5) -> float:
    """F1 of the positive class (binary)."""
    counts = _confusion(truth, decide(probability, threshold), 2)
    return float(_from_counts("f1", counts[1, 1], counts[0, 1], counts[1, 0], counts[0, 0]))


def f1_macro(truth, probability, threshold: float = 0.5) -> float:
    """The unweighted mean of every class's F1 (a class never true nor chosen counts 0, as in scikit-learn)."""
    counts = _confusion(truth, decide(probability, threshold), _classes(truth, probability))
    tp = np.diag(counts)
    denominator = counts.sum(axis=0) + counts.sum(axis=1)
    return float(np.mean(np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)))


def mcc(truth, probability, threshold: float = 0.5) -> float:
    """Matthews correlation coefficient (its multiclass form, R_K); 0 when it is undefined."""
    counts = _confusion(truth, decide(probability, threshold), _classes(truth, probability))
    total, correct = counts.sum(), np.trace(counts)
    predicted, true = counts.sum(axis=0), counts.sum(axis=1)
    denominator = np.sqrt((total ** 2 - predicted @ predicted) * (total ** 2 - true @ true))
    return float((correct * total - predicted @ true) / denominator) if denominator > 0 else 0.0


def qwk(truth, probability, threshold: float = 0.5) -> float:
    """Quadratic weighted kappa between the true and the chosen class, the classes in their order
    (an ordinal target: 1 < 2 < ... as numbers); 1 is perfect, 0 chance."""
    n = _classes(truth, probability)
    observed = _confusion(truth, decide(probability, threshold), n)
    index = np.arange(n)
    weights = (index[:, None] - index[None, :]) ** 2 / max(n - 1, 1) ** 2
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / max(observed.sum(), 1)
    denominator = np.sum(weights * expected)
    return float(1.0 - np.sum(weights * observed) / denominator) if denominator > 0 else 0.0


def auc_ovr(truth, probability) -> float:
    """Multiclass AUC: the mean over classes of each class's AUC against the rest (scikit-learn's
    roc_auc_score, multi_class="ovr", average="macro"); a class absent from the rows is left out."""
    probability, truth = np.asarray(probability, float), np.asarray(truth, int)
    present = [c for c in range(probability.shape[1]) if 0 < np.sum(truth == c) < len(truth)]
    return float(np.mean([shared.roc_auc(truth == c, probability[:, c]) for c in present])) if present else float("nan")


def ranked(probability, k: int) -> np.ndarray:
    """The k most probable class indices of each row, most probable first (ties: the lower index)."""
    probability = np.asarray(probability, float)
    return np.argsort(-probability, axis=1, kind="stable")[:, :k]


def map_at(k: int) -> Callable:
    def score(truth, probability) -> float:
        """Mean average precision at k with one true class per row: 1 / its rank among the k
        predicted classes, 0 when it is not among them."""
        hits = ranked(probability, k) == np.asarray(truth, int)[:, None]
        return float(np.mean(np.sum(hits / np.arange(1, k + 1), axis=1)))
    return score


METRICS = {m.name: m for m in (
    Metric("rmse", rmse, ("regression",), False, "value"),
    Metric("rmsle", rmsle, ("regression",), False, "value"),
    Metric("mae", mae, ("regression",), False, "value"),
    Metric("auc", auc, ("binary",), True, "probability"),
    Metric("logloss", logloss, ("binary", "multiclass"), False, "probability"),
    Metric("accuracy", accuracy, ("binary", "multiclass"), True, "label"),
    Metric("r2", r2, ("regression",), True, "value"),
    Metric("mape", mape, ("regression",), False, "value"),
    Metric("f1", f1, ("binary",), True, "label", tunes_threshold=True),
    Metric("f1_macro", f1_macro, ("binary", "multiclass"), True, "label", tunes_threshold=True),
    Metric("mcc", mcc, ("binary", "multiclass"), True, "label", tunes_threshold=True),
    Metric("qwk", qwk, ("multiclass",), True, "label"),
    Metric("auc_ovr", auc_ovr, ("multiclass",), True, "probability"),
)}
MAP = re.compile(r"map@([1-9][0-9]?)$")  # map@K, K from 1 to 99: a ranked submission of K classes
# reported beside the spec's metric, so runs of one task compare on every figure
REPORTED = {"regression": ("rmse", "mae"), "binary": ("logloss", "auc", "accuracy"),
            "multiclass": ("logloss", "accuracy")}


def names(task: str | None = None) -> tuple[str, ...]:
    known = tuple(n for n, m in METRICS.items() if task is None or task in m.tasks)
    return known + (("map@K",) if task in (None, "multiclass") else ())


def map_k(name: str) -> int | None:
    """K of a map@K metric's name (how many classes a ranked submission lists); None for another metric."""
    matched = MAP.match(str(name))
    return int(matched.group(1)) if matched else None


def get(name: str) -> Metric:
    k = map_k(name)
    if k is not None:
        return Metric(name, map_at(k), ("multiclass",), True, "ranked")
    if name not in METRICS:
        close = difflib.get_close_matches(name, list(METRICS), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown metric {name!r}{hint}; known: {', '.join(METRICS)}")
    return METRICS[name]


def scores(task: str, main: str, truth, prediction, threshold=0.5) -> dict:
    """The spec's metric and the task's usual figures; rmsle only where the values allow it. Binary
    decisions are P(positive) > threshold (a number, or one per row)."""
    wanted = [main] + [n for n in REPORTED[task] if n != main]
    figures = {name: get(name)(truth, prediction, threshold) for name in wanted}
    if task == "regression" and main != "rmsle" and np.min(truth) >= 0:
        figures["rmsle"] = rmsle(truth, prediction)
    return figures


# --------------------------------------------------------------------------- thresholds chosen out of fold

def _from_counts(name: str, tp, fp, fn, tn):
    """A binary decision metric from confusion counts (arrays: one entry per candidate threshold)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        f1_positive = np.nan_to_num(2 * tp / (2 * tp + fp + fn))
        if name == "f1":
            return f1_positive
        if name == "f1_macro":
            return (f1_positive + np.nan_to_num(2 * tn / (2 * tn + fn + fp))) / 2
        denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        return np.nan_to_num((tp * tn - fp * fn) / denominator)  # mcc


def fit_threshold(metric: Metric, truth, probability) -> float:
    """The threshold t (a row is positive when P > t) that scores best on these rows: each cut
    between two neighbouring distinct probabilities is tried; among equal scores, the t nearest 0.5."""
    truth, probability = np.asarray(truth, int), np.asarray(probability, float)
    if len(truth) == 0:
        return 0.5
    values = np.unique(probability)[::-1]  # distinct, highest first
    # cut j: positive when P >= values[j], i.e. P > t for t between values[j + 1] and values[j]
    order = np.argsort(-probability, kind="stable")
    positives_above = np.cumsum(truth[order])
    last_of_value = np.searchsorted(-probability[order], -values, side="right") - 1
    tp = positives_above[last_of_value].astype(float)
    chosen = last_of_value + 1.0
    fp = chosen - tp
    fn, tn = truth.sum() - tp, (len(truth) - truth.sum()) - fp
    cuts = np.append((values[:-1] + values[1:]) / 2, min(values[-1] / 2, values[-1] - 1e-12))
    # and no positive at all: t at the highest probability
    tp, fp, fn, tn = (np.append(a, b) for a, b in zip((tp, fp, fn, tn), (0.0, 0.0, truth.sum(), len(truth) - truth.sum())))
    cuts = np.append(cuts, values[0])
    score = _from_counts(metric.name, tp, fp, fn, tn)
    best = np.flatnonzero(score >= score.max() - 1e-12)
    return float(cuts[best[np.argmin(np.abs(cuts[best] - 0.5))]])


def thresholds_out_of_fold(metric: Metric, truth, probability, folds) -> np.ndarray:
    """One threshold per row: each fold's rows get the threshold fitted on the other folds' rows
    only, so that a CV scored with them never scores a row its threshold was chosen on."""
    truth, probability, folds = np.asarray(truth, int), np.asarray(probability, float), np.asarray(folds)
    chosen = np.full(len(truth), 0.5)
    for fold in np.unique(folds):
        inside = folds == fold
        chosen[inside] = fit_threshold(metric, truth[~inside], probability[~inside])
    return chosen


def tunes_threshold(task: str, main: str) -> bool:
    return task == "binary" and get(main).tunes_threshold


def out_of_fold_decisions(task: str, main: str, truth, probability, folds):
    """(a threshold per row, chosen on the other folds; the threshold for new rows, chosen on all of
    them) for a binary metric that tunes its threshold; (None, None) otherwise. Rows without a
    prediction (folds not trained) are left at 0.5 and out of the fit."""
    if not tunes_threshold(task, main):
        return None, None
    truth, probability, folds = np.asarray(truth, int), np.asarray(probability, float), np.asarray(folds)
    scored = ~np.isnan(probability)
    per_row = np.full(len(truth), 0.5)
    per_row[scored] = thresholds_out_of_fold(get(main), truth[scored], probability[scored], folds[scored])
    return per_row, threshold_record(task, main, truth, probability)["threshold"]


def decisions_for(task: str, main: str, truth, output: Callable = np.asarray):
    """kfold.run's `decisions` for this metric (None when it decides at 0.5): given the assembled
    out-of-fold predictions (model space; `output` maps them to probabilities), the score function
    whose binary decisions use thresholds chosen out of fold."""
    if not tunes_threshold(task, main):
        return None
    truth = np.asarray(truth)

    def decisions(oof, folds):
        per_row, _ = out_of_fold_decisions(task, main, truth, output(oof), folds)
        return lambda index, prediction: scores(task, main, truth[index], output(prediction), per_row[index])
    return decisions


def threshold_record(task: str, main: str, truth, probability) -> dict:
    """What run.json records for the submission's decisions: {"threshold": t} when the metric tunes
    it (chosen on every out-of-fold row), else nothing (0.5)."""
    if not tunes_threshold(task, main):
        return {}
    probability = np.asarray(probability, float)
    scored = ~np.isnan(probability)
    return {"threshold": fit_threshold(get(main), np.asarray(truth, int)[scored], probability[scored])}
