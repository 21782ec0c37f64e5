"""The metrics a spec can name, with the tasks they score and their direction.

Every function takes the encoded truth and the predictions in output space:
- regression: values, and predicted values;
- binary: 0/1 (1 = the positive class), and P(positive);
- multiclass: class indices (in the spec's class order), and an (n, classes) matrix of probabilities.
"""

from __future__ import annotations

import difflib
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
    needs: str  # "value" (regression), "probability" (scored on probabilities), "label" (on decisions)

    def __call__(self, truth, prediction) -> float:
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


def accuracy(truth, probability) -> float:
    return float(np.mean(decide(probability) == np.asarray(truth, int)))


def decide(probability) -> np.ndarray:
    """The predicted class index: P(positive) > 0.5, or the most probable class."""
    probability = np.asarray(probability, float)
    return (probability > 0.5).astype(int) if probability.ndim == 1 else probability.argmax(axis=1)


METRICS = {m.name: m for m in (
    Metric("rmse", rmse, ("regression",), False, "value"),
    Metric("rmsle", rmsle, ("regression",), False, "value"),
    Metric("mae", mae, ("regression",), False, "value"),
    Metric("auc", auc, ("binary",), True, "probability"),
    Metric("logloss", logloss, ("binary", "multiclass"), False, "probability"),
    Metric("accuracy", accuracy, ("binary", "multiclass"), True, "label"),
)}
# reported beside the spec's metric, so runs of one task compare on every figure
REPORTED = {"regression": ("rmse", "mae"), "binary": ("logloss", "auc", "accuracy"),
            "multiclass": ("logloss", "accuracy")}


def names(task: str | None = None) -> tuple[str, ...]:
    return tuple(n for n, m in METRICS.items() if task is None or task in m.tasks)


def get(name: str) -> Metric:
    if name not in METRICS:
        close = difflib.get_close_matches(name, list(METRICS), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown metric {name!r}{hint}; known: {', '.join(METRICS)}")
    return METRICS[name]


def scores(task: str, main: str, truth, prediction) -> dict:
    """The spec's metric and the task's usual figures; rmsle only where the values allow it."""
    wanted = [main] + [n for n in REPORTED[task] if n != main]
    figures = {name: get(name)(truth, prediction) for name in wanted}
    if task == "regression" and main != "rmsle" and np.min(truth) >= 0:
        figures["rmsle"] = rmsle(truth, prediction)
    return figures
