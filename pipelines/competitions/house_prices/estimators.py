"""Classical House Prices models in the same k-fold engine as the MLP.

- lasso / elasticnet / ridge: scikit-learn linear models on the fold's preprocessed matrix
  (winsorised, log1p of skewed columns, scaled: robust scaling with `scaling: robust`).
  Saved as their coefficients (safetensors), so prediction needs no pickle and no sklearn.
- gbm: LightGBM gradient-boosted trees (optionally with a linear model in each leaf,
  `linear_tree`), saved in LightGBM's own text format.
- catboost: CatBoost's oblivious trees on the same matrix, saved in CatBoost's own binary
  format (.cbm), loaded without pickle.

Every estimator predicts the log price directly (the target is always log for these).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ... import atomic
from ...errors import UserError
from ...tabular import estimators

LINEAR = ("lasso", "elasticnet", "ridge")
TREES = ("gbm", "catboost")
CLASSICAL = LINEAR + TREES
GBM_FILE = "model.lgb.txt"
CATBOOST_FILE = "model.cbm"


# the config keys each classical model reads (task.py adds the data keys every model shares); lr is a
# tree model's learning rate, weight_decay its L2 on leaf values (l2_leaf_reg for catboost)
KEYS = {
    "lasso": {"alpha", "max_iter"},
    "elasticnet": {"alpha", "l1_ratio", "max_iter"},
    "ridge": {"alpha"},
    "gbm": {"n_estimators", "lr", "num_leaves", "min_child_samples", "subsample", "colsample", "weight_decay",
            "gbm_objective", "linear_tree", "linear_lambda"},
    "catboost": {"n_estimators", "lr", "depth", "weight_decay", "subsample", "colsample"},
}


class LinearEstimator:
    def __init__(self, coef: np.ndarray, intercept: float):
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.coef + self.intercept

    def state(self) -> dict[str, torch.Tensor]:
        return {"coef": torch.from_numpy(self.coef.copy()),
                "intercept": torch.tensor([self.intercept], dtype=torch.float64)}


class TreeEstimator:
    def __init__(self, booster):
        self.booster = booster

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.booster.predict(np.asarray(x, dtype=np.float64))


class CatBoostEstimator:
    def __init__(self, model):
        self.model = model

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(np.asarray(x, dtype=np.float64)), dtype=np.float64)


def fit(cfg, x: np.ndarray, y: np.ndarray, seed: int):
    """Fit the configured classical model on (x, log price)."""
    x = np.asarray(x, dtype=np.float64)
    if cfg.model in LINEAR:
        model = estimators.linear_regression(cfg.model, cfg.alpha, cfg.l1_ratio, cfg.max_iter, seed)
        estimators.fit_quietly(model, x, y)
        return LinearEstimator(model.coef_, model.intercept_)
    if cfg.model == "gbm":
        import lightgbm as lgb

        params = estimators.lightgbm_params({"objective": cfg.gbm_objective}, cfg.lr, cfg.num_leaves,
                                            cfg.min_child_samples, cfg.colsample, cfg.subsample, cfg.weight_decay,
                                            seed, threads=2, linear_tree=cfg.linear_tree,
                                            linear_lambda=cfg.linear_lambda)
        booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=cfg.n_estimators)
        return TreeEstimator(booster)
    if cfg.model == "catboost":
        model = estimators.catboost_model("regression", cfg.n_estimators, cfg.lr, cfg.depth, cfg.weight_decay,
                                          cfg.subsample, cfg.colsample, seed, threads=2)
        model.fit(x, y)
        return CatBoostEstimator(model)
    raise UserError(f"model: {cfg.model!r} is not a classical model ({', '.join(CLASSICAL)})")


def save(folder: Path, estimator) -> dict[str, torch.Tensor]:
    """What goes into the fold checkpoint's safetensors; trees also write their library's own model file."""
    if isinstance(estimator, LinearEstimator):
        return estimator.state()
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(estimator, CatBoostEstimator):
        atomic.write_with(folder / CATBOOST_FILE, lambda tmp: estimator.model.save_model(str(tmp), format="cbm"))
        return {}
    atomic.write_text(folder / GBM_FILE, estimator.booster.model_to_string())
    return {}


def load(cfg, folder: Path, state: dict[str, torch.Tensor]):
    if cfg.model in LINEAR:
        try:
            return LinearEstimator(state["coef"].numpy(), float(state["intercept"].numpy()[0]))
        except KeyError as exc:
            raise UserError(f"{folder}: checkpoint has no {exc.args[0]!r} tensor for a {cfg.model} model") from None
    if cfg.model == "catboost":
        return _load_catboost(folder / CATBOOST_FILE)
    import lightgbm as lgb

    path = folder / GBM_FILE
    if not path.exists():
        raise UserError(f"{path}: LightGBM model file missing")
    try:
        return TreeEstimator(lgb.Booster(model_str=path.read_text()))
    except lgb.basic.LightGBMError as exc:
        raise UserError(f"{path}: not a LightGBM model ({str(exc).splitlines()[0]})") from None


def _load_catboost(path: Path) -> CatBoostEstimator:
    from catboost import CatBoostError, CatBoostRegressor

    if not path.exists():
        raise UserError(f"{path}: CatBoost model file missing")
    try:
        return CatBoostEstimator(CatBoostRegressor().load_model(str(path), format="cbm"))
    except CatBoostError as exc:
        message = (str(exc).strip().splitlines() or ["unreadable"])[-1]
        raise UserError(f"{path}: not a CatBoost model ({message})") from None
