"""The tabular presets' portfolios (`train SPEC --preset best|fast`, pipelines/presets.py).

Each member is a config of configs/tabular/ with the settings chosen for the preset; the members
run cheapest first, so that a short budget still ends with the strong, fast ones, and the slow
networks use what is left. The trees' rounds follow the data (early stopping); what does not fit
the budget on a large table is left out by the budget itself. How each setting was chosen, on
which tables, and what it scored leave-one-table-out: docs/decisions.md ("The best preset").
"""

from __future__ import annotations

from pathlib import Path

from ..presets import Member, Plan
from .spec import Spec

# Gradient-boosted trees: early stopping on a held-aside tenth of each fold's training rows, then a
# refit on all of them (models.py: early_stopping, refit)
LIGHTGBM = Member("lightgbm", "lightgbm", {"n_estimators": 5000, "lr": 0.02, "num_leaves": 15, "min_child_samples": 10,
                                           "colsample": 0.5, "early_stopping": 200, "refit": True})
CATBOOST = Member("catboost", "catboost", {"n_estimators": 2000, "lr": 0.08, "early_stopping": 100, "refit": True})
EXTRATREES = Member("extratrees", "forest")
LINEAR = Member("linear", "linear")
MLP = Member("mlp", "mlp")
TABM = Member("tabm-pwl", "tabm-pwl")

BEST = (LINEAR, LIGHTGBM, CATBOOST, EXTRATREES, MLP, TABM)
ROUNDS = 5  # at most: time to spare trains the best preset's members again with new folds (presets.Plan)
FAST = (LINEAR, LIGHTGBM, CATBOOST)
# a competition scored by absolute error (`mae`): the members that can fit it do (its optimum is the
# median, squared error's the mean; on a skewed target they differ)
ABSOLUTE = {"lightgbm": {"objective": "l1"}, "catboost": {"objective": "l1"}, "mlp": {"loss": "l1"},
            "tabm-pwl": {"loss": "l1"}}


def for_metric(members: tuple[Member, ...], metric: str) -> tuple[Member, ...]:
    if metric != "mae":
        return members
    return tuple(Member(m.name, m.config, {**m.overrides, **ABSOLUTE.get(m.name, {})}) for m in members)


def portfolio(spec: Spec, preset: str, data: str | Path | None) -> Plan:
    from .cli import SpecVerbs

    SpecVerbs(spec).data_dir(str(data) if data else None)  # one line when the data is not there
    if preset == "best":
        return Plan(for_metric(BEST, spec.metric), method="weights", rounds=ROUNDS)
    return Plan(for_metric(FAST, spec.metric), method="weights")
