"""The classical estimators any tabular competition can use, built one way: the linear family
(ridge, lasso, elastic net; logistic regression with the same penalties), LightGBM's parameters
(optionally with a linear model in each leaf), CatBoost, and scikit-learn's forests. The families of models.py and House
Prices' models (competitions/house_prices/estimators.py) both build theirs here."""

from __future__ import annotations

import warnings

import numpy as np

PENALTIES = ("ridge", "lasso", "elasticnet")


def linear_regression(penalty: str, alpha: float, l1_ratio: float, max_iter: int, seed: int):
    """An unfitted scikit-learn regressor: Ridge, Lasso or ElasticNet with strength alpha."""
    from sklearn.linear_model import ElasticNet, Lasso, Ridge

    if penalty == "lasso":
        return Lasso(alpha=alpha, max_iter=max_iter, random_state=seed)
    if penalty == "elasticnet":
        return ElasticNet(alpha=alpha, l1_ratio=l1_ratio, max_iter=max_iter, random_state=seed)
    return Ridge(alpha=alpha)


def logistic_regression(penalty: str, alpha: float, l1_ratio: float, max_iter: int, seed: int):
    """An unfitted logistic regression with C = 1 / alpha: lbfgs for ridge's L2, saga for L1 and the
    elastic net (the solver scikit-learn has for them with more than two classes)."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    c = 1.0 / alpha if alpha > 0 else 1e12
    if penalty == "ridge":
        return LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    ratio = 1.0 if penalty == "lasso" else l1_ratio
    if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 8):  # l1_ratio alone says the penalty
        return LogisticRegression(C=c, max_iter=max_iter, random_state=seed, solver="saga", l1_ratio=ratio)
    return LogisticRegression(C=c, max_iter=max_iter, random_state=seed, solver="saga", penalty="elasticnet",
                              l1_ratio=ratio)


def fit_quietly(model, x: np.ndarray, y: np.ndarray):
    """Fit, without scikit-learn's convergence warnings (max_iter is the config's to raise)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)


def lightgbm_params(objective: dict, lr: float, num_leaves: int, min_child_samples: int, colsample: float,
                    subsample: float, l2: float, seed: int, threads: int, linear_tree: bool = False,
                    linear_lambda: float = 0.0) -> dict:
    """LightGBM's parameters: deterministic, row-wise, 255 bins; bagging every round when subsample < 1;
    linear_tree fits a ridge-penalised (linear_lambda) linear model in each leaf."""
    params = {**objective, "learning_rate": lr, "num_leaves": num_leaves, "max_depth": -1,
              "min_data_in_leaf": min_child_samples, "feature_fraction": colsample,
              "bagging_fraction": subsample, "bagging_freq": 1 if subsample < 1 else 0, "lambda_l2": l2,
              "max_bin": 255, "seed": seed, "deterministic": True, "force_row_wise": True,
              "num_threads": threads, "verbose": -1}
    if linear_tree:
        params.update(linear_tree=True, linear_lambda=linear_lambda)
    return params


def catboost_model(task: str, iterations: int, lr: float, depth: int, l2: float, subsample: float,
                   colsample: float, seed: int, threads: int, loss: str | None = None):
    """An unfitted CatBoost model (oblivious trees): RMSE (regression), Logloss (binary) or MultiClass;
    Bernoulli row sampling at `subsample` (none at 1.0), rsm = colsample, the share of columns per split."""
    from catboost import CatBoostClassifier, CatBoostRegressor

    sampling = {"bootstrap_type": "Bernoulli", "subsample": subsample} if subsample < 1 else {"bootstrap_type": "No"}
    common = dict(iterations=iterations, learning_rate=lr, depth=depth, l2_leaf_reg=l2, rsm=colsample,
                  random_seed=seed, thread_count=threads, verbose=False, allow_writing_files=False, **sampling)
    if task == "regression":
        return CatBoostRegressor(loss_function=loss or "RMSE", **common)
    return CatBoostClassifier(loss_function=loss or ("Logloss" if task == "binary" else "MultiClass"), **common)


def forest(kind: str, regression: bool, trees: int, max_features: str, min_samples_leaf: int, seed: int):
    """An unfitted scikit-learn forest, one thread: extremely randomised trees (`extra`, no bootstrap)
    or a random forest (`random`); max_features auto is all columns for regression, their square root
    for classification."""
    from sklearn import ensemble

    shares = {"auto": 1.0 if regression else "sqrt", "sqrt": "sqrt", "all": 1.0, "half": 0.5}
    kinds = {("extra", True): ensemble.ExtraTreesRegressor, ("extra", False): ensemble.ExtraTreesClassifier,
             ("random", True): ensemble.RandomForestRegressor, ("random", False): ensemble.RandomForestClassifier}
    return kinds[kind, regression](n_estimators=trees, max_features=shares[max_features],
                                   min_samples_leaf=min_samples_leaf, random_state=seed, n_jobs=1)
