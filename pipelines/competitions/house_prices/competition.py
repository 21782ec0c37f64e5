"""House Prices as a competition (pipelines.competition): registered when this package is imported.

Kept light (numpy only): the verbs (cli.py), the report section (report.py) and the
prediction from checkpoints (task.py, torch) are imported when first used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...competition import BlendSpace, Competition, DataLayout, Lazy, Metric, Submission, lazy_verbs, register
from ...metrics import rmse, rmse_log

NAME = "house-prices"
METRIC = "rmse_log"
ID, TARGET = "Id", "SalePrice"

SUBMISSION = Submission(columns=(ID, TARGET), format="value", value_ok=lambda v: v > 0,
                        value_rule="a finite positive price")


class LogPrice(BlendSpace):
    """Members are blended as log prices: weights and a non-negative least-squares stack fitted on
    the squared error of the log price (the metric), the mean a geometric mean of the prices."""
    space = mean_space = "log price"
    loss = "squared"
    oof_id, target, oof_value = ID, TARGET, "oof_" + TARGET
    test_id, test_value = ID, TARGET
    data_key, test_data_key = "train_sha", "test_sha"

    def link(self, values: np.ndarray) -> np.ndarray:
        return np.log(np.clip(values, 1.0, None))  # as metrics.rmse_log clips

    def unlink(self, z: np.ndarray) -> np.ndarray:
        return np.exp(z)

    def fit_target(self, truth: np.ndarray) -> np.ndarray:
        return np.log(truth)

    def scores(self, truth: np.ndarray, pred: np.ndarray, clip) -> dict:
        return {METRIC: rmse_log(truth, pred), "rmse": rmse(truth, pred)}

    def stack(self, z: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
        from sklearn.linear_model import LinearRegression

        model = LinearRegression(positive=True).fit(z, target)
        return np.asarray(model.coef_, float), float(model.intercept_)

    def test_frame(self, ids: np.ndarray, pred: np.ndarray, clip):
        import pandas as pd

        return pd.DataFrame({self.test_id: ids, self.test_value: pred})

    def predict_member(self, run_dir: Path, test: Path, device: str):
        """A trained run's predictions for a test CSV, from its fold checkpoints."""
        from . import task

        return task.predict(run_dir, test, device)

    def extra(self, cv: dict, first_run: dict) -> dict:
        return {"dataset": first_run["dataset"]} if "dataset" in first_run else {}


def portfolio(preset: str, data):
    """`train house-prices --preset best|fast`: best is `make blend-house` (lasso, gbm, catboost, tabm,
    their plain mean); fast is lasso and gbm. The plain mean fits nothing, and on two fold seeds it
    beat the nested fitted weights (docs/decisions.md, House Prices)."""
    from ...presets import Member, Plan

    names = ("lasso", "gbm", "catboost", "tabm") if preset == "best" else ("lasso", "gbm")
    return Plan(tuple(Member(name, name) for name in names), method="mean",
                note="the configs of make blend-house, their plain mean" if preset == "best" else "")


HOUSE_PRICES = register(Competition(
    name=NAME,
    title="House Prices",
    kaggle_slug="house-prices-advanced-regression-techniques",
    kind="tabular",
    task="regression",
    metric=Metric(METRIC, rmse_log, greater_is_better=False),
    data=DataLayout(present=("train.csv",)),
    id_column=ID,
    target_column=TARGET,
    submission=SUBMISSION,
    blend=LogPrice(),
    verbs=lazy_verbs(f"{__package__}.cli", "prepare", "train", "submit", "demo"),
    write_predicted=Lazy(f"{__package__}.cli:write_predicted"),
    default_config="tabm",
    test_input="test CSV",
    report_sections=Lazy(f"{__package__}.report:sections"),
    portfolio=portfolio,
))
