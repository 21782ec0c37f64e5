"""Competition metrics. Each takes true values and predictions as 1-D arrays."""

from __future__ import annotations

import numpy as np


def rmse(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def rmse_log(price_true, price_pred) -> float:
    """House Prices: RMSE between log(predicted) and log(true) price."""
    price_pred = np.clip(np.asarray(price_pred, float), 1.0, None)
    return rmse(np.log(np.asarray(price_true, float)), np.log(price_pred))


def log_loss(label, prob, eps: float = 1e-15) -> float:
    """Binary log loss of P(label = 1)."""
    label = np.asarray(label, float)
    prob = np.clip(np.asarray(prob, float), eps, 1 - eps)
    return float(-np.mean(label * np.log(prob) + (1 - label) * np.log(1 - prob)))


def accuracy(label, prob, threshold: float = 0.5) -> float:
    return float(np.mean((np.asarray(prob) > threshold) == (np.asarray(label) > 0.5)))


def roc_auc(label, prob) -> float:
    from sklearn.metrics import roc_auc_score

    label = np.asarray(label)
    if len(np.unique(label)) < 2:
        return float("nan")
    return float(roc_auc_score(label, prob))
