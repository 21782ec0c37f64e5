"""Model families for spec competitions: a registry from a config's `model` to an entry that fits,
predicts, saves and loads, each with its own config keys (plus the common ones).

- `linear`: ridge, lasso or elastic net (`penalty`; regression), logistic regression with the same
  penalties (binary, multiclass); saved as its coefficients in safetensors, predicted with numpy
  (no scikit-learn object is kept).
- `lightgbm`: gradient-boosted trees, a fixed number of rounds, optionally huber or l1 loss
  (`objective`) and a linear model in each leaf (`linear_tree`); saved in LightGBM's text format.
- `catboost`: CatBoost's oblivious trees, a fixed number of iterations; saved in its .cbm format.
- `mlp`: a torch MLP trained by pipelines.training.fit on a standardised target (regression; mse
  or huber `loss`), with BCE (binary) or cross entropy (multiclass); saved as safetensors.
- `tabm`: TabM (networks.py; k MLPs sharing their weights but for per-member scalings), plain
  or with piecewise-linear embeddings of the numeric columns (`num_embeddings: pwl`), trained as
  the MLP is, the members' losses averaged; it predicts the mean of the members' predictions.

The networks keep the last epoch and never stop early by default (`keep: last`, `patience: 0`):
the fold's validation rows are the rows its CV scores, and picking an epoch on them would flatter
the CV.

Every family takes `seeds_per_fold` (task.py: that many models per fold that differ only by
seed, averaged in the model space) and `target` (task.py: what a regression model is fitted on).

Every entry predicts in the competition's model space: the (transformed) regression target,
P(positive) for binary, an (n, classes) probability matrix for multiclass. A new family is one
class registered here plus a config in configs/tabular/; nothing else changes.

Configs are YAML files in configs/tabular/, validated against the family's schema on load: an
unknown key is an error naming the closest valid key, or the family the key belongs to.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import yaml

from .. import atomic, budget, checkpoint, config as configs
from ..errors import UserError
from . import estimators

if TYPE_CHECKING:
    import torch

    from ..train_state import Resume

CONFIG_FOLDER = "tabular"  # configs/tabular/<name>.yaml


@dataclass(frozen=True)
class Problem:
    """What a fold model needs to know about the target."""
    task: str              # regression | binary | multiclass
    n_classes: int = 0     # multiclass: how many classes (the width of the prediction matrix)

    @property
    def outputs(self) -> int:
        return self.n_classes if self.task == "multiclass" else 1


# --------------------------------------------------------------------------- configs

@dataclass
class TabularConfig:
    """The keys every family has: the run's folds and seed, models per fold, the regression
    target's transform, and the fold preprocessing (preprocess.py)."""
    name: str = configs.option("custom")
    model: str = configs.option("mlp")
    folds: int = configs.option(5, min=2, max=20)
    seed: int = configs.option(42)
    seeds_per_fold: int = configs.option(1, min=1, max=20)
    # regression: fit log1p(target) or the target itself; auto: log1p when the metric is rmsle
    target: str = configs.option("auto", choices=["auto", "raw", "log1p"])
    missing_indicator: bool = configs.option(True)
    scaling: str = configs.option("standard", choices=["standard", "none"])
    clip_quantile: float = configs.option(0.0, min=0.0, max=0.2)
    max_levels: int = configs.option(30, min=1, max=1000)
    min_level_count: int = configs.option(3, min=1)


@dataclass
class LinearConfig(TabularConfig):
    model: str = configs.option("linear", choices=["linear"])
    penalty: str = configs.option("ridge", choices=list(estimators.PENALTIES))
    alpha: float = configs.option(1.0, min=0.0)  # the penalty's strength; logistic regression's 1 / C
    l1_ratio: float = configs.option(0.5, min=0.0, max=1.0)  # elasticnet: the L1 share
    max_iter: int = configs.option(2000, min=1)


@dataclass
class LightGBMConfig(TabularConfig):
    model: str = configs.option("lightgbm", choices=["lightgbm"])
    scaling: str = configs.option("none", choices=["standard", "none"])  # trees do not care
    n_estimators: int = configs.option(400, min=1)   # rounds, fixed: never chosen on the scored rows
    lr: float = configs.option(0.03, min=0.0)
    num_leaves: int = configs.option(15, min=2)
    min_child_samples: int = configs.option(20, min=1)
    subsample: float = configs.option(0.8, min=0.1, max=1.0)
    colsample: float = configs.option(0.8, min=0.01, max=1.0)
    l2: float = configs.option(1.0, min=0.0)         # lambda_l2 on leaf values
    # regression's loss: auto is squared error; huber and l1 limit the pull of outliers
    objective: str = configs.option("auto", choices=["auto", "huber", "l1"])
    linear_tree: bool = configs.option(False)        # a linear model in each leaf
    linear_lambda: float = configs.option(0.0, min=0.0)  # L2 on those linear models
    # one thread by default: on small tables it is as fast, and on a machine whose cores are busy two
    # threads were 10x slower (OpenMP threads waiting on each other; docs/results.md)
    threads: int = configs.option(1, min=1)
    # early_stopping > 0: n_estimators is a ceiling, and training stops after that many rounds without
    # a better loss on stop_fraction of the fold's training rows, held aside from fitting (never the
    # fold's validation rows, which the CV scores)
    early_stopping: int = configs.option(0, min=0)
    stop_fraction: float = configs.option(0.1, min=0.02, max=0.5)
    # refit (with early_stopping): then fit again on all the fold's training rows, for the rounds the
    # stop chose scaled by the rows added (1 / (1 - stop_fraction))
    refit: bool = configs.option(False)


@dataclass
class CatBoostConfig(TabularConfig):
    model: str = configs.option("catboost", choices=["catboost"])
    scaling: str = configs.option("none", choices=["standard", "none"])  # trees do not care
    n_estimators: int = configs.option(1000, min=1)  # iterations, fixed
    lr: float = configs.option(0.05, min=0.0)
    depth: int = configs.option(6, min=1, max=16)
    l2: float = configs.option(3.0, min=0.0)          # l2_leaf_reg
    subsample: float = configs.option(0.8, min=0.1, max=1.0)   # Bernoulli row sampling (1: none)
    colsample: float = configs.option(1.0, min=0.01, max=1.0)  # rsm: the share of columns per split
    threads: int = configs.option(1, min=1)
    # regression's loss: auto is squared error (RMSE); l1 is absolute error (MAE), whose optimum is the median
    objective: str = configs.option("auto", choices=["auto", "l1"])
    early_stopping: int = configs.option(0, min=0)                   # as LightGBM's
    stop_fraction: float = configs.option(0.1, min=0.02, max=0.5)
    refit: bool = configs.option(False)


@dataclass
class ForestConfig(TabularConfig):
    model: str = configs.option("forest", choices=["forest"])
    scaling: str = configs.option("none", choices=["standard", "none"])  # trees do not care
    kind: str = configs.option("extra", choices=["extra", "random"])    # extremely randomised trees, or a random forest
    n_estimators: int = configs.option(300, min=1)
    # the share of columns tried per split; auto: all of them (regression), their square root (classification)
    max_features: str = configs.option("auto", choices=["auto", "sqrt", "all", "half"])
    # rows per leaf; 0: one leaf row per 2,000 training rows, at least 1 (bounds a fold model's size)
    min_samples_leaf: int = configs.option(0, min=0)


@dataclass
class MLPConfig(TabularConfig):
    model: str = configs.option("mlp", choices=["mlp"])
    clip_quantile: float = configs.option(0.01, min=0.0, max=0.2)
    hidden: list[int] = configs.option([256, 256], min=1)
    dropout: float = configs.option(0.1, min=0.0, max=0.95)
    skip_linear: bool = configs.option(True)         # a linear map from inputs to outputs beside the MLP
    epochs: int = configs.option(30, min=1)
    batch_size: int = configs.option(128, min=1)
    optimizer: str = configs.option("adamw", choices=["adam", "adamw", "sgd"])
    lr: float = configs.option(1e-3, min=0.0)
    weight_decay: float = configs.option(1e-4, min=0.0)
    schedule: str = configs.option("cosine", choices=["cosine", "constant"])
    warmup_epochs: float = configs.option(0.0, min=0.0)
    # keep: last and patience: 0 train a fixed number of epochs; best or patience choose the epoch on
    # the fold's validation rows, the rows its CV scores (an optimistic CV)
    patience: int = configs.option(0, min=0)
    keep: str = configs.option("last", choices=["best", "last"])
    loss: str = configs.option("mse", choices=["mse", "huber", "l1"])  # regression, on the standardised target


@dataclass
class TabMConfig(MLPConfig):
    model: str = configs.option("tabm", choices=["tabm"])
    hidden: list[int] = configs.option([256, 256], min=1)  # len(hidden) blocks of one width
    skip_linear: bool = configs.option(False)
    tabm_k: int = configs.option(16, min=1, max=256)       # members
    num_embeddings: str = configs.option("none", choices=["none", "pwl"])
    n_bins: int = configs.option(48, min=2, max=512)       # pwl: quantile bins per numeric column
    d_embedding: int = configs.option(8, min=1, max=256)   # pwl: dimensions per numeric column


# --------------------------------------------------------------------------- families

class Family:
    """One registry entry. fit returns (fitted, info); info's best_epoch and history go into the
    fold's meta.json. valid_figures(prediction) scores model-space predictions of the validation
    rows (for a network's learning curves)."""
    name: str
    config: type
    description: str

    def check(self, cfg, where: str) -> None:
        """A config the schema accepts but the family cannot train: one line (before a run exists)."""

    def fit(self, cfg, problem: Problem, x: np.ndarray, y: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
            seed: int, device: torch.device, resume: Resume | None, desc: str,
            valid_figures: Callable[[np.ndarray], dict]) -> tuple[object, dict]:
        raise NotImplementedError

    def predict(self, fitted, x: np.ndarray, device: torch.device) -> np.ndarray:
        raise NotImplementedError

    def save(self, fitted, folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors for the fold's model.safetensors, meta for its meta.json); may write its own file."""
        raise NotImplementedError

    def load(self, cfg, problem: Problem, folder: Path, tensors: dict[str, torch.Tensor], meta: dict,
             device: torch.device):
        raise NotImplementedError


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # exact-enough and overflow-free


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class LinearModel:
    coef: np.ndarray       # (outputs, features)
    intercept: np.ndarray  # (outputs,)
    task: str

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, dtype=np.float64) @ self.coef.T + self.intercept
        if self.task == "regression":
            return z[:, 0]
        return _sigmoid(z[:, 0]) if self.task == "binary" else _softmax(z)


class Linear(Family):
    name, config = "linear", LinearConfig
    description = "ridge, lasso or elastic net (regression); logistic regression (binary, multiclass)"

    def fit(self, cfg, problem, x, y, x_valid, y_valid, seed, device, resume, desc, valid_figures):
        x = np.asarray(x, dtype=np.float64)
        if problem.task == "regression":
            model = estimators.linear_regression(cfg.penalty, cfg.alpha, cfg.l1_ratio, cfg.max_iter, seed)
            estimators.fit_quietly(model, x, y)
            return LinearModel(model.coef_.reshape(1, -1), np.atleast_1d(model.intercept_), problem.task), {}
        model = estimators.fit_quietly(
            estimators.logistic_regression(cfg.penalty, cfg.alpha, cfg.l1_ratio, cfg.max_iter, seed), x, y)
        coef, intercept = model.coef_, model.intercept_
        if problem.task == "multiclass":
            coef, intercept = self._all_classes(model.classes_, coef, intercept, problem.n_classes)
        return LinearModel(coef, intercept, problem.task), {}

    @staticmethod
    def _all_classes(seen, coef, intercept, n_classes):
        """One row per class of the competition, also for classes missing from the fold's training
        rows (a tiny class): those get a very negative intercept, so probability ~0."""
        if len(seen) == 2:  # scikit-learn's binary form: P(seen[1]) = sigmoid(w x + b) = softmax([0, w x + b])
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([[0.0], intercept])
        full_coef = np.zeros((n_classes, coef.shape[1]))
        full_intercept = np.full(n_classes, -30.0)
        full_coef[np.asarray(seen)] = coef
        full_intercept[np.asarray(seen)] = intercept
        return full_coef, full_intercept

    def predict(self, fitted, x, device):
        return fitted.predict(x)

    def save(self, fitted, folder):
        return {"coef": np.ascontiguousarray(fitted.coef, dtype=np.float64),
                "intercept": np.ascontiguousarray(fitted.intercept, dtype=np.float64)}, {}

    def load(self, cfg, problem, folder, tensors, meta, device):
        try:
            coef, intercept = checkpoint.as_numpy(tensors["coef"]), checkpoint.as_numpy(tensors["intercept"])
        except KeyError as exc:
            raise UserError(f"{folder}: checkpoint has no {exc.args[0]!r} tensor for a linear model") from None
        if coef.ndim != 2 or coef.shape[0] != problem.outputs or intercept.shape != (problem.outputs,):
            raise UserError(f"{folder}: linear weights of shape {tuple(coef.shape)} do not fit a {problem.task} "
                            f"model with {problem.outputs} output(s)")
        return LinearModel(coef, intercept, problem.task)


class LightGBM(Family):
    name, config = "lightgbm", LightGBMConfig
    description = "LightGBM gradient-boosted trees"
    FILE = "model.lgb.txt"

    def fit(self, cfg, problem, x, y, x_valid, y_valid, seed, device, resume, desc, valid_figures):
        import lightgbm as lgb

        regression = "regression" if cfg.objective == "auto" else cfg.objective
        objective = {"regression": {"objective": regression}, "binary": {"objective": "binary"},
                     "multiclass": {"objective": "multiclass", "num_class": problem.n_classes}}[problem.task]
        params = estimators.lightgbm_params(objective, cfg.lr, cfg.num_leaves, cfg.min_child_samples, cfg.colsample,
                                            cfg.subsample, cfg.l2, seed, cfg.threads, cfg.linear_tree,
                                            cfg.linear_lambda)
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if not cfg.early_stopping:
            return lgb.train(params, lgb.Dataset(x, y), num_boost_round=cfg.n_estimators,
                             callbacks=[_LightGBMBudget(SHARE_LAST)]), {}
        fit_rows, stop_rows = stopping_split(y, problem, cfg.stop_fraction, seed)
        data = lgb.Dataset(x[fit_rows], y[fit_rows])
        booster = lgb.train(params, data, num_boost_round=cfg.n_estimators,
                            valid_sets=[lgb.Dataset(x[stop_rows], y[stop_rows], reference=data)],
                            callbacks=[_LightGBMBudget(SHARE_FIRST if cfg.refit else SHARE_LAST),
                                       lgb.early_stopping(cfg.early_stopping, verbose=False)])
        rounds = int(booster.best_iteration or cfg.n_estimators)
        if cfg.refit:
            rounds = refit_rounds(rounds, cfg.stop_fraction)
            booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=rounds,
                                callbacks=[_LightGBMBudget(SHARE_LAST)])
        return booster, {"best_epoch": rounds}

    def predict(self, fitted, x, device):
        return np.asarray(fitted.predict(np.asarray(x, dtype=np.float64)), dtype=np.float64)

    def save(self, fitted, folder):
        atomic.write_text(Path(folder) / self.FILE, fitted.model_to_string())
        return {}, {"model_file": self.FILE}

    def load(self, cfg, problem, folder, tensors, meta, device):
        import lightgbm as lgb

        path = Path(folder) / self.FILE
        if not path.exists():
            raise UserError(f"{path}: LightGBM model file missing")
        try:
            return lgb.Booster(model_str=path.read_text())
        except lgb.basic.LightGBMError as exc:
            raise UserError(f"{path}: not a LightGBM model ({str(exc).splitlines()[0]})") from None


def stopping_split(y: np.ndarray, problem: Problem, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows to fit, rows for early stopping) of a fold's training rows: a seeded `fraction` of them
    held aside, per class for classification (a class with one row stays in the fitted rows)."""
    rng = np.random.default_rng(seed)
    if problem.task == "regression":
        groups = [np.arange(len(y))]
    else:
        labels = np.asarray(y, dtype=np.int64)
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    held = []
    for rows in groups:
        count = int(round(len(rows) * fraction)) if len(rows) > 1 else 0
        held.append(rng.permutation(rows)[:count])
    stop = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    if not len(stop):
        stop = np.sort(rng.permutation(len(y))[:1])
    return np.setdiff1d(np.arange(len(y)), stop), stop


def refit_rounds(rounds: int, stop_fraction: float) -> int:
    """The rounds of a refit on all the training rows: those early stopping chose on 1 - stop_fraction
    of them, scaled by the rows added."""
    return max(1, int(round(rounds / (1.0 - stop_fraction))))


# Under a time budget a fold's boosting ends at these fractions of the fold's share of the time
# (budget.share_spent), keeping the trees it has: the early-stopping fit of a refit config at the
# first, a refit or a fit with nothing after it at the last (the rest is for predicting and saving).
SHARE_FIRST, SHARE_LAST = 0.45, 0.9


class _LightGBMBudget:
    """A LightGBM callback: OutOfTime at the deadline (budget.py); at `fraction` of the fold's share
    of the time it ends the boosting as early stopping does, keeping the trees up to the best round
    on the early-stopping rows (every round without them)."""
    def __init__(self, fraction: float):
        self.fraction, self.best, self.began = fraction, None, None
        self.order = 5   # before early stopping's callback (30): LightGBM runs them by this

    def __call__(self, env) -> None:
        import lightgbm as lgb

        budget.check("lightgbm")
        self.began = self.began or time.monotonic()
        results = env.evaluation_result_list or []
        if results:
            score, higher = results[0][2], results[0][3]
            if self.best is None or (score > self.best[1] if higher else score < self.best[1]):
                self.best = (env.iteration, score, results)
        if budget.share_spent(self.fraction, self.began):
            iteration, _, best = self.best if self.best is not None else (env.iteration, None, results)
            raise lgb.callback.EarlyStopException(iteration, best)


class _CatBoostBudget:
    """A CatBoost callback: at `fraction` of the fold's share of the time it ends the boosting with
    the trees it has (the best on the early-stopping rows, with use_best_model); at the deadline
    too, and raise_if_stopped() then raises OutOfTime after fit returns (CatBoost's callbacks can
    only ask it to stop)."""

    def __init__(self, fraction: float = SHARE_LAST):
        self.stopped, self.fraction, self.began = False, fraction, None

    def after_iteration(self, info) -> bool:
        left = budget.left()
        self.stopped = left is not None and left <= 0
        self.began = self.began or time.monotonic()
        return not (self.stopped or budget.share_spent(self.fraction, self.began))

    def raise_if_stopped(self) -> None:
        if self.stopped:
            raise budget.OutOfTime("catboost: out of time")


@dataclass
class CatBoostModel:
    model: object
    seen: list[int]   # classification: the classes of the fold's training rows, in the model's order
    problem: Problem

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.problem.task == "regression":
            return np.asarray(self.model.predict(x), dtype=np.float64)
        prob = np.ones((len(x), 1)) if len(self.seen) == 1 else np.asarray(self.model.predict_proba(x), np.float64)
        full = np.zeros((len(x), max(self.problem.n_classes, 2)))
        full[:, self.seen] = prob
        return full[:, 1] if self.problem.task == "binary" else full


class CatBoost(Family):
    name, config = "catboost", CatBoostConfig
    description = "CatBoost oblivious trees"
    FILE = "model.cbm"

    def fit(self, cfg, problem, x, y, x_valid, y_valid, seed, device, resume, desc, valid_figures):
        def build(iterations: int):
            loss = "MAE" if problem.task == "regression" and cfg.objective == "l1" else None
            return estimators.catboost_model(problem.task, iterations, cfg.lr, cfg.depth, cfg.l2, cfg.subsample,
                                             cfg.colsample, seed, cfg.threads, loss)

        model = build(cfg.n_estimators)
        x = x_all = np.asarray(x, dtype=np.float64)
        y = y_all = np.asarray(y, dtype=np.float64 if problem.task == "regression" else np.int64)
        seen = [] if problem.task == "regression" else sorted({int(v) for v in y})
        if problem.task == "regression" or len(seen) > 1:
            stopping = _CatBoostBudget(SHARE_FIRST if cfg.early_stopping and cfg.refit else SHARE_LAST)
            options: dict = {"callbacks": [stopping]}
            if cfg.early_stopping:
                fit_rows, stop_rows = stopping_split(y, problem, cfg.stop_fraction, seed)
                if problem.task != "regression" and len(np.unique(y[fit_rows])) < len(seen):
                    fit_rows = np.arange(len(y))  # a class only in the held-aside rows: fit on all of them
                options.update(eval_set=(x[stop_rows], y[stop_rows]), early_stopping_rounds=cfg.early_stopping,
                               use_best_model=True)
                x, y = x[fit_rows], y[fit_rows]
            model.fit(x, y, **options)
            stopping.raise_if_stopped()
            if cfg.early_stopping and cfg.refit:
                rounds = refit_rounds(int(model.get_best_iteration() or 0) + 1, cfg.stop_fraction)
                model, stopping = build(rounds), _CatBoostBudget(SHARE_LAST)
                model.fit(x_all, y_all, callbacks=[stopping])
                stopping.raise_if_stopped()
            if problem.task != "regression":
                seen = [int(c) for c in model.classes_]
        info = {}
        if cfg.early_stopping and model.is_fitted():
            info["best_epoch"] = int(model.tree_count_) if cfg.refit else int(model.get_best_iteration() or 0) + 1
        return CatBoostModel(model, seen, problem), info

    def predict(self, fitted, x, device):
        return fitted.predict(x)

    def save(self, fitted, folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if fitted.problem.task == "regression" or len(fitted.seen) > 1:
            atomic.write_with(folder / self.FILE, lambda tmp: fitted.model.save_model(str(tmp), format="cbm"))
        return {}, {"model_file": self.FILE, "classes_seen": fitted.seen}

    def load(self, cfg, problem, folder, tensors, meta, device):
        from catboost import CatBoostClassifier, CatBoostError, CatBoostRegressor

        seen = [int(c) for c in meta.get("classes_seen", [])]
        if problem.task != "regression" and len(seen) == 1:
            return CatBoostModel(None, seen, problem)
        path = Path(folder) / self.FILE
        if not path.exists():
            raise UserError(f"{path}: CatBoost model file missing")
        model = CatBoostRegressor() if problem.task == "regression" else CatBoostClassifier()
        try:
            model.load_model(str(path), format="cbm")
        except CatBoostError as exc:
            message = (str(exc).strip().splitlines() or ["unreadable"])[-1]
            raise UserError(f"{path}: not a CatBoost model ({message})") from None
        return CatBoostModel(model, seen, problem)


@dataclass
class ForestModel:
    """A fitted forest as plain arrays, every tree's nodes end to end (saved as tensors, no pickle):
    `offsets[t]` is tree t's root; a leaf has left == -1; `value` is a leaf's prediction (the
    regression value, or the class shares of the fold's training classes `seen`)."""
    left: np.ndarray       # (nodes,) int64, absolute node numbers
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray  # float64: a row goes left when its float32 value <= threshold (scikit-learn's rule)
    value: np.ndarray      # (nodes, outputs) float64
    offsets: np.ndarray    # (trees,) int64
    seen: list[int]
    problem: Problem

    @classmethod
    def from_estimator(cls, model, problem: Problem, seen: list[int]) -> "ForestModel":
        parts, offsets, start = [], [], 0
        for tree in (e.tree_ for e in model.estimators_):
            value = np.asarray(tree.value[:, 0, :], dtype=np.float64)
            if problem.task != "regression":  # class shares, whatever scikit-learn stores (counts or shares)
                value = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-300)
            leaf = tree.children_left == -1
            parts.append((np.where(leaf, -1, tree.children_left + start), np.where(leaf, -1, tree.children_right + start),
                          np.where(leaf, 0, tree.feature), tree.threshold.astype(np.float64), value))
            offsets.append(start)
            start += tree.node_count
        left, right, feature, threshold, value = (np.concatenate(a) for a in zip(*parts))
        return cls(left.astype(np.int64), right.astype(np.int64), feature.astype(np.int64), threshold, value,
                   np.asarray(offsets, dtype=np.int64), seen, problem)

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).astype(np.float64)
        rows = np.arange(len(x))
        total = np.zeros((len(x), self.value.shape[1]))
        for root in self.offsets:  # one tree at a time: all rows descend level by level
            node = np.full(len(x), root, dtype=np.int64)
            inner = self.left[node] != -1
            while inner.any():
                at = node[inner]
                goes_left = x[rows[inner], self.feature[at]] <= self.threshold[at]
                node[inner] = np.where(goes_left, self.left[at], self.right[at])
                inner = self.left[node] != -1
            total += self.value[node]
        mean = total / len(self.offsets)
        if self.problem.task == "regression":
            return mean[:, 0]
        full = np.zeros((len(x), max(self.problem.n_classes, 2)))
        full[:, self.seen] = mean
        return full[:, 1] if self.problem.task == "binary" else full

    ARRAYS = ("left", "right", "feature", "threshold", "value", "offsets")


class Forest(Family):
    name, config = "forest", ForestConfig
    description = "extremely randomised trees or a random forest (scikit-learn)"

    def fit(self, cfg, problem, x, y, x_valid, y_valid, seed, device, resume, desc, valid_figures):
        x = np.asarray(x, dtype=np.float32)
        regression = problem.task == "regression"
        y = np.asarray(y, dtype=np.float64 if regression else np.int64)
        model = estimators.forest(cfg.kind, regression, cfg.n_estimators, cfg.max_features,
                                  cfg.min_samples_leaf or max(1, len(x) // 2000), seed)
        budget.check("a forest")
        model.fit(x, y)
        return ForestModel.from_estimator(model, problem, [] if regression else [int(c) for c in model.classes_]), {}

    def predict(self, fitted, x, device):
        return fitted.predict(x)

    def save(self, fitted, folder):
        return ({name: np.ascontiguousarray(getattr(fitted, name)) for name in ForestModel.ARRAYS},
                {"classes_seen": fitted.seen})

    def load(self, cfg, problem, folder, tensors, meta, device):
        missing = [name for name in ForestModel.ARRAYS if name not in tensors]
        if missing:
            raise UserError(f"{folder}: checkpoint has no {missing[0]!r} tensor for a forest")
        arrays = {name: checkpoint.as_numpy(tensors[name]) for name in ForestModel.ARRAYS}
        seen = [int(c) for c in meta.get("classes_seen", [])]
        width = 1 if problem.task == "regression" else len(seen)
        if arrays["value"].ndim != 2 or arrays["value"].shape[1] != width:
            raise UserError(f"{folder}: forest leaves of shape {tuple(arrays['value'].shape)} do not fit a "
                            f"{problem.task} model with {width} output(s)")
        return ForestModel(**arrays, seen=seen, problem=problem)


class NeedsTorch(Family):
    """A network family (neural.py), registered by name, config and checks; its code, and torch,
    are imported when it fits, predicts, saves or loads."""

    def __init__(self, name: str, config: type, description: str, check: Callable | None = None):
        self.name, self.config, self.description, self._check = name, config, description, check

    def check(self, cfg, where: str) -> None:
        if self._check is not None:
            self._check(cfg, where)
        self.code()   # torch is installed (one line otherwise), before any run exists

    def code(self) -> Family:
        try:
            from . import neural
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in ("torch", "tabm", "rtdl_num_embeddings"):
                from ..device import NEEDS_TORCH

                raise UserError(f"model {self.name} needs {exc.name.split('.')[0]}, which is not installed: "
                                f"{NEEDS_TORCH}") from None
            raise
        return neural.FAMILIES[self.name]

    def fit(self, *args, **kwargs):
        return self.code().fit(*args, **kwargs)

    def predict(self, *args, **kwargs):
        return self.code().predict(*args, **kwargs)

    def save(self, *args, **kwargs):
        return self.code().save(*args, **kwargs)

    def load(self, *args, **kwargs):
        return self.code().load(*args, **kwargs)


def _one_width(cfg, where: str) -> None:
    if len(set(cfg.hidden)) != 1:
        raise UserError(f"{where}: tabm's blocks share one width; hidden: {cfg.hidden} has several")


REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
    REGISTRY[family.name] = family
    return family


for _family in (Linear(), LightGBM(), CatBoost(), Forest(),
                NeedsTorch("mlp", MLPConfig, "a torch MLP (with a linear skip) trained by pipelines.training.fit"),
                NeedsTorch("tabm", TabMConfig, "TabM: k MLPs sharing their weights (BatchEnsemble), plain or with "
                                               "piecewise-linear embeddings", _one_width)):
    register(_family)


def get(name: str, where: str = "config") -> Family:
    if name not in REGISTRY:
        close = difflib.get_close_matches(str(name), list(REGISTRY), n=1, cutoff=0.4)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"{where}: model: {name!r} is not one of {', '.join(REGISTRY)}{hint}")
    return REGISTRY[name]


# --------------------------------------------------------------------------- loading configs

def build_config(values: dict, where: str):
    """A config from its mapping: the schema of its `model`'s family, validated."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping of keys to values")
    if values.get("model") is None:
        raise UserError(f"{where}: model: missing (one of {', '.join(REGISTRY)})")
    family = get(values["model"], where)
    own = {f.name for f in fields(family.config)}
    if family.name == "linear" and "l2" in values:
        raise UserError(f"{where}: unknown key 'l2': linear's strength is now alpha (l2: {values['l2']} is "
                        f"alpha: {values['l2']}, with penalty: ridge, the default)")
    for key in values:
        if key in own:
            continue
        owners = [name for name, other in REGISTRY.items() if key in {f.name for f in fields(other.config)}]
        if owners:
            raise UserError(f"{where}: unknown key {key!r}: it is a key of model {' and '.join(owners)}, and this "
                            f"config's model is {family.name}")
        break  # configs.build names the closest valid key
    cfg = configs.build(family.config, values, where)
    family.check(cfg, where)
    return cfg


def saved_config(values: dict, where: str):
    """The config a checkpoint's meta.json holds, written by this version or an earlier one: a linear
    run made before `alpha` named its strength `l2` (the same ridge, the same logistic regression)."""
    if isinstance(values, dict) and values.get("model") == "linear" and "l2" in values:
        values = {k: v for k, v in values.items() if k != "l2"} | {"alpha": values["l2"]}
    return build_config(values, where)


REGRESSION_ONLY = {"target": "auto", "objective": "auto", "loss": "mse"}


def check_task(cfg, task: str, where: str) -> None:
    """Keys that change a regression's target or loss, set on a classification task: one line."""
    if task == "regression":
        return
    for key, default in REGRESSION_ONLY.items():
        if getattr(cfg, key, default) != default:
            raise UserError(f"{where}: {key}: {getattr(cfg, key)} is for regression; this competition is {task} "
                            f"(leave {key} at {default})")


def load_config(name_or_path: str, overrides: dict | None = None):
    """configs/tabular/<name>.yaml (or a YAML path), with --set overrides, validated."""
    path = configs.config_path(CONFIG_FOLDER, name_or_path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{line} is not valid YAML") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a mapping of keys to values")
    values = {**values, **(overrides or {})}
    values.setdefault("name", path.stem)
    return build_config(values, str(path))
