"""Runs for the tests of the iteration workflow (compare, the leaderboard's params, notes and
--public, `--run best`): real ones, trained once per test module on small data and copied into each
test's home, and hand-written ones recorded with runs.record, the writer training uses."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pipelines import competition, folds as folding, paths, runs, specs
from pipelines.cli import main
from tabular_data import layout

HOUSE = "house-prices"
FAST_LASSO = ["--config", "lasso", "--device", "cpu", "--set", "folds=3", "--set", "comps=0"]


@dataclasses.dataclass
class ToyConfig:
    """A config schema for hand-written runs (no file of its name: params are its non-defaults)."""
    name: str = "toy"
    lr: float = 0.001
    hidden: list = dataclasses.field(default_factory=lambda: [64])
    folds: int = 3


def train_runs(root: Path, house_data: Path) -> dict:
    """A project home under root with real runs: House Prices lasso runs `a` (3 folds, comps=0) and
    `b` (the same with alpha=0.001, the same folds), penguins (a multiclass spec) linear runs `p1` and
    `p2` (alpha=0.1). Returns {"home", "penguins": the Layout}."""
    home = root / "home"
    saved = (os.environ.get("PIPELINES_HOME"), dict(competition._REGISTRY), set(specs._FROM_SPECS))
    os.environ["PIPELINES_HOME"] = str(home)
    try:
        penguins = layout("penguins", root / "data" / "penguins", rows=120)
        for argv in (["train", HOUSE, "--data", str(house_data), "--name", "a", *FAST_LASSO],
                     ["train", HOUSE, "--data", str(house_data), "--name", "b", *FAST_LASSO, "--set", "alpha=0.001"],
                     ["train", str(penguins.spec_path), "--data", str(penguins.folder), "--config", "linear",
                      "--name", "p1"],
                     ["train", str(penguins.spec_path), "--data", str(penguins.folder), "--config", "linear",
                      "--name", "p2", "--set", "alpha=0.1"]):
            assert main(argv) == 0, argv
    finally:
        if saved[0] is None:
            os.environ.pop("PIPELINES_HOME", None)
        else:
            os.environ["PIPELINES_HOME"] = saved[0]
        competition._REGISTRY.clear()
        competition._REGISTRY.update(saved[1])
        specs._FROM_SPECS.clear()
        specs._FROM_SPECS.update(saved[2])
    return {"home": home, "penguins": penguins}


def copy_home(trained: dict, home: Path) -> Path:
    """The trained runs copied into this test's home (tests write submissions, plots, registry rows)."""
    shutil.copytree(trained["home"] / "runs", home / "runs")
    return home


def toy_run(competition_name: str, name: str, scores, *, fold_of_row=None, greater_is_better=False,
            metric="rmse_log", test=True, planned_folds=None, config="toy", **values) -> Path:
    """A finished run written by hand: folds.csv, metrics.json, run.json and its registry row (through
    runs.record), and test_predictions.csv unless test is False. fold_of_row: folds.csv's fold per row
    (default: rows 0..11 over the scored folds in turn)."""
    run_dir = paths.new_run_dir(competition_name, name)
    scores = [float(s) for s in scores]
    if fold_of_row is None:
        fold_of_row = np.arange(12) % max(len(scores), 1)
    folding.save_folds(run_dir / "folds.csv", np.arange(1, len(fold_of_row) + 1), np.asarray(fold_of_row))
    result = SimpleNamespace(cv={metric: float(np.mean(scores)), f"{metric}_fold_std": float(np.std(scores))},
                             fold_scores=[{"fold": k, metric: s} for k, s in enumerate(scores)])
    cfg = ToyConfig(name=config, folds=planned_folds or len(scores), **values)
    runs.record(run_dir, competition=competition_name, config=cfg, result=result, metric=metric,
                greater_is_better=greater_is_better, wall_s=0.0, device="cpu", data={"train": "nowhere"})
    if test:
        (run_dir / "test_predictions.csv").write_text("Id,SalePrice\n1,100000.0\n")
    return run_dir


def run_record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory, house_data):
    """The real runs, trained once per test module that imports this fixture."""
    return train_runs(tmp_path_factory.mktemp("iteration"), house_data)
