"""How the best preset's portfolio was chosen: every candidate setting on every selection table,
then each setting chosen leave-one-table-out (docs/decisions.md, "The best preset").

  .venv/bin/python benchmarks/portfolio.py measure OUT [--tables ...] [--candidates ...]
      trains each candidate (5-fold CV, as a normal run) on each table of tests/tabular_data.SELECTION
      and appends one JSON line per (table, candidate) to OUT/measure.jsonl: CV, held-out score,
      wall time; a pair already there is skipped, so it resumes
  .venv/bin/python benchmarks/portfolio.py select OUT
      for each table left out: the variant of each family chosen on the other tables (best mean
      rank of CV), then the portfolio (PORTFOLIOS) whose nested-weights blend has the best mean rank
      of CV on the other tables; its blend's CV and held-out score on the left-out table, beside the
      shipped lightgbm default's and the best single candidate's (chosen there by CV)

Under a time limit (what the preset meets; the members that finish depend on it):

  .venv/bin/python benchmarks/portfolio.py budget OUT --time 60 [--tables ...]
      runs `train SPEC --preset best --time-limit T` on each table (selection and the first final
      collection, DEVELOPMENT) and appends to OUT/budget-T.jsonl each finished member's CV and
      held-out score, and, for each of BUDGET_PORTFOLIOS, the nested-weights blend of its members
      that finished (CV, held-out) and its best run by CV (held-out); `result`: the preset's own
      run (with time to spare, the blend of its members' repeats; `five+et` is its first round)
  .venv/bin/python benchmarks/portfolio.py budget-select OUT --time 60
      leave one table out: the portfolio and the rule (submit the blend, or the best run by CV)
      with the best mean rank of held-out score on the other tables, scored on the left-out one

  .venv/bin/python benchmarks/portfolio.py fillers OUT --time 60 --portfolio five+et+rf
      members that would use a longer budget (FILLERS: the trees with more seeds per fold), each
      trained without a limit beside the preset's runs of `budget`, on the same folds; appends to
      OUT/fillers-T.jsonl the blends of the portfolio's finished members with and without them

Every candidate is counted in docs/decisions.md, whatever it scored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

# name: (family, config, overrides); every variant tried is here
CANDIDATES = {
    "linear": ("linear", "linear", {}),
    "lightgbm": ("lightgbm", "lightgbm", {}),
    "lgb-es": ("lightgbm", "lightgbm", {"n_estimators": 5000, "lr": 0.05, "num_leaves": 31, "early_stopping": 100}),
    "lgb-es-slow": ("lightgbm", "lightgbm", {"n_estimators": 5000, "lr": 0.02, "num_leaves": 15,
                                             "min_child_samples": 10, "colsample": 0.5, "early_stopping": 200}),
    "catboost": ("catboost", "catboost", {}),
    # tried first with n_estimators 5000, lr 0.05: on penguins it never stopped (4,997 rounds) and took
    # 116 s for 241 rows; dropped for its cost before the other tables (docs/decisions.md)
    "cat-es": ("catboost", "catboost", {"n_estimators": 2000, "lr": 0.08, "early_stopping": 100}),
    # added after the first eight were measured: early stopping, then a refit on all the fold's rows
    "lgb-refit": ("lightgbm", "lightgbm", {"n_estimators": 5000, "lr": 0.02, "num_leaves": 15, "min_child_samples": 10,
                                           "colsample": 0.5, "early_stopping": 200, "refit": True}),
    "cat-refit": ("catboost", "catboost", {"n_estimators": 2000, "lr": 0.08, "early_stopping": 100, "refit": True}),
    "mlp": ("mlp", "mlp", {}),
    # added 2026-12-07, after the first portfolio lost to AutoGluon on three final tables at 60 s
    "extratrees": ("forest", "forest", {}),
    "randomforest": ("forest", "forest", {"kind": "random"}),
    "tabm-pwl": ("tabm", "tabm-pwl", {}),
}


def _held_out(td, laid, spec, run_dir, out: Path, label: str) -> float:
    from pipelines.tabular import task

    predictions = task.read_predictions(run_dir / "test_predictions.csv", spec)
    submission = task.write_submission(spec, predictions, out / "submissions" / f"{label}.csv",
                                       laid.folder / "sample_submission.csv", classes=task.run_classes(run_dir))
    return td.held_out_score(spec, submission, laid.answers_path)


def measure(out: Path, tables: list[str], candidates: list[str]) -> None:
    os.environ["PIPELINES_HOME"] = str(out / "home")
    import pipelines as pl
    import tabular_data as td
    from pipelines.tabular import spec as specs

    log = out / "measure.jsonl"
    done = {(r["table"], r["candidate"]) for r in _rows(log)}
    for candidate in candidates:  # cheap candidates first, on every table
        _, config, overrides = CANDIDATES[candidate]
        for table in tables:
            if (table, candidate) in done:
                continue
            laid = td.layout(table, out / "data" / table)
            spec = specs.load(laid.spec_path)
            started = time.perf_counter()
            run = pl.train(str(laid.spec_path), config, data=laid.folder, name=candidate, overrides=overrides,
                           device="cpu", restart=True, quiet=True)
            row = {"table": table, "candidate": candidate, "task": spec.task, "metric": spec.metric,
                   "greater_is_better": spec.greater_is_better, "rows": laid.train_rows, "cv": run.cv,
                   "held_out": _held_out(td, laid, spec, run.folder, out, f"{table}-{candidate}"),
                   "wall_s": round(time.perf_counter() - started, 1)}
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def _rows(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def choose(rows: list[dict], tables: list[str]) -> dict[str, str]:
    """The variant of each family with the best mean rank of CV among that family's variants on `tables`."""
    import numpy as np

    chosen = {}
    families = sorted({CANDIDATES[r["candidate"]][0] for r in rows})
    for family in families:
        variants = [c for c, (f, _, _) in CANDIDATES.items() if f == family]
        ranks = {v: [] for v in variants}
        for table in tables:
            scores = {r["candidate"]: r["cv"] * (-1 if r["greater_is_better"] else 1)
                      for r in rows if r["table"] == table and r["candidate"] in variants}
            if len(scores) < len(variants):
                continue
            order = sorted(scores, key=scores.get)
            for v in variants:
                ranks[v].append(order.index(v))
        chosen[family] = min(variants, key=lambda v: (np.mean(ranks[v]) if ranks[v] else 1e9, variants.index(v)))
    return chosen


# The portfolios compared (each chosen leave-one-table-out like the variants): what a preset trains,
# given the variant chosen for each family
PORTFOLIOS = {
    "families": lambda chosen: [chosen[f] for f in ("linear", "lightgbm", "catboost", "mlp", "tabm") if f in chosen],
    "trees": lambda chosen: [chosen[f] for f in ("lightgbm", "catboost") if f in chosen],
    "everything": lambda chosen: list(CANDIDATES),
}


def _blend_scores(out: Path, table: str, members: list[str], cache: dict,
                  spec_changes: dict | None = None) -> tuple[float, float]:
    """(CV, held-out) of the nested weights blend of `members` on `table` (one member: its own)."""
    import pipelines as pl
    import tabular_data as td
    from pipelines.tabular import spec as specs

    key = (table, tuple(sorted(members)))
    if key not in cache:
        laid = td.layout(table, out / "data" / table, spec_changes=spec_changes)
        spec = specs.load(laid.spec_path)
        name = "blend-" + hashlib.md5("+".join(key[1]).encode()).hexdigest()[:10]
        made = pl.blend(str(laid.spec_path), members, method="weights", name=name, restart=True, quiet=True)
        cache[key] = (made.cv, _held_out(td, laid, spec, made.folder, out, f"{table}-{name}"))
    return cache[key]


def select(out: Path) -> None:
    import contextlib
    import io

    import numpy as np

    import tabular_data as td

    os.environ["PIPELINES_HOME"] = str(out / "home")
    rows = _rows(out / "measure.jsonl")
    tables = [t for t in td.SELECTION if any(r["table"] == t for r in rows)]
    sign = {t: next(-1 if r["greater_is_better"] else 1 for r in rows if r["table"] == t) for t in tables}
    cache: dict = {}
    # every portfolio's blend on every table, for the variants chosen without that table
    scores = {}
    for left_out in tables:
        chosen = choose(rows, [t for t in tables if t != left_out])
        for portfolio, members_of in PORTFOLIOS.items():
            members = [m for m in members_of(chosen)
                       if any(r["table"] == left_out and r["candidate"] == m for r in rows)]
            with contextlib.redirect_stdout(io.StringIO()):
                scores[(left_out, portfolio)] = (members, *_blend_scores(out, left_out, members, cache))
    results = []
    for left_out in tables:
        others = [t for t in tables if t != left_out]
        ranks = {p: [] for p in PORTFOLIOS}
        for t in others:
            order = sorted(PORTFOLIOS, key=lambda p: sign[t] * scores[(t, p)][1])
            for p in PORTFOLIOS:
                ranks[p].append(order.index(p))
        picked = min(PORTFOLIOS, key=lambda p: (np.mean(ranks[p]), list(PORTFOLIOS).index(p)))
        members, cv, held = scores[(left_out, picked)]
        mine = {r["candidate"]: r for r in rows if r["table"] == left_out}
        best = min(mine.values(), key=lambda r: sign[left_out] * r["cv"])
        row = {"table": left_out, "metric": mine["lightgbm"]["metric"], "portfolio": picked, "members": members,
               "cv": cv, "held_out": held, "default_cv": mine["lightgbm"]["cv"],
               "default_held_out": mine["lightgbm"]["held_out"], "best_single": best["candidate"],
               "best_single_cv": best["cv"], "best_single_held_out": best["held_out"],
               "every_portfolio": {p: scores[(left_out, p)][1:] for p in PORTFOLIOS}}
        results.append(row)
        print(json.dumps(row), flush=True)
    final = choose(rows, tables)
    (out / "select.json").write_text(json.dumps({"loo": results, "chosen_on_all": final}, indent=1))
    print("variants chosen on all tables:", final)
    print("\n| table | metric | portfolio (chosen without the table) | blend CV / held-out | lightgbm (shipped) "
          "CV / held-out | best single candidate CV / held-out |\n|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['table']} | {r['metric']} | {r['portfolio']}: {', '.join(r['members'])} | {r['cv']:.4f} / "
              f"{r['held_out']:.4f} | {r['default_cv']:.4f} / {r['default_held_out']:.4f} | {r['best_single']} "
              f"{r['best_single_cv']:.4f} / {r['best_single_held_out']:.4f} |")


# Sub-portfolios of the best preset's members (pipelines/tabular/presets.py), blended from one run of
# the whole preset per table; the members each trained with the others beside it
BUDGET_PORTFOLIOS = {
    "five": ("linear", "lightgbm", "catboost", "mlp", "tabm-pwl"),
    "five+et": ("linear", "lightgbm", "catboost", "extratrees", "mlp", "tabm-pwl"),
    "five+rf": ("linear", "lightgbm", "catboost", "mlp", "tabm-pwl", "randomforest"),
    "five+et+rf": ("linear", "lightgbm", "catboost", "extratrees", "mlp", "tabm-pwl", "randomforest"),
}
RULES = ("blend", "best-cv")


def budget(out: Path, seconds: float, tables: list[str], metric: str | None = None) -> None:
    import contextlib
    import io
    import subprocess

    import pipelines as pl
    import tabular_data as td
    from pipelines.tabular import spec as specs

    log = out / f"budget-{seconds:g}.jsonl"
    done = {r["table"] for r in _rows(log)}
    for table in tables:
        if table in done:
            continue
        if metric and td.TABLES[table].spec["task"] != "regression":
            continue
        changes = {"metric": metric} if metric else None
        laid = td.layout(table, out / "data" / table, spec_changes=changes)
        spec = specs.load(laid.spec_path)
        home = out / f"home-{seconds:g}" / table
        os.environ["PIPELINES_HOME"] = str(home)
        started = time.perf_counter()
        trained = subprocess.run([sys.executable, "-m", "pipelines", "train", str(laid.spec_path), "--data",
                                  str(laid.folder), "--preset", "best", "--time-limit", f"{seconds:g}", "--quiet"],
                                 cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        home.mkdir(parents=True, exist_ok=True)
        (home / "train.log").write_text(trained.stdout + trained.stderr)
        if trained.returncode != 0:
            raise SystemExit(f"{table}: train failed: {trained.stderr[-2000:]}")
        members = {}
        for member in BUDGET_PORTFOLIOS["five+et+rf"]:
            run_dir = home / "runs" / spec.name / f"preset-best-{member}"
            if (run_dir / "test_predictions.csv").exists() and json.loads((run_dir / "run.json").read_text()).get("cv"):
                members[member] = {"cv": pl.run(str(laid.spec_path), f"preset-best-{member}").cv,
                                   "held_out": _held_out(td, laid, spec, run_dir, out, f"{table}-{member}")}
        sign = -1 if spec.greater_is_better else 1
        portfolios = {}
        cache: dict = {}
        for name, wanted in BUDGET_PORTFOLIOS.items():
            finished = [m for m in wanted if m in members]
            with contextlib.redirect_stdout(io.StringIO()):
                cv, held = (_blend_scores(out, table, [f"preset-best-{m}" for m in finished], cache, changes)
                            if len(finished) > 1 else (members[finished[0]]["cv"], members[finished[0]]["held_out"]))
            best = min(finished, key=lambda m: sign * members[m]["cv"])
            best_cv, best_held = (cv, held) if sign * cv <= sign * members[best]["cv"] else (
                members[best]["cv"], members[best]["held_out"])
            portfolios[name] = {"members": finished, "cv": cv, "held_out": held, "best-cv": best_held,
                                "best_run": best if best_held != held or best_cv != cv else "blend"}
        # what the preset itself made: with time to spare, the blend of its members' repeats (whose
        # first round is the `five+et` blend above); rounds: the most repeats of a member
        result_dir = home / "runs" / spec.name / "preset-best"
        rounds = [int(m.group(1)) for p in result_dir.parent.glob("preset-best-r*-*")
                  if (m := re.fullmatch(r"preset-best-r(\d+)-.+", p.name))]
        result = {"cv": pl.run(str(laid.spec_path), "preset-best").cv, "rounds": max(rounds, default=1),
                  "held_out": _held_out(td, laid, spec, result_dir, out, f"{table}-result")}
        row = {"table": table, "metric": spec.metric, "greater_is_better": spec.greater_is_better,
               "rows": laid.train_rows, "wall_s": round(wall, 1), "members": members, "portfolios": portfolios,
               "result": result,
               "summary": [line for line in trained.stdout.splitlines() if line.startswith(("--preset", "  "))]}
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps({k: row[k] for k in ("table", "wall_s")}),
              {n: (round(v["cv"], 4), round(v["held_out"], 4), round(v["best-cv"], 4)) for n, v in portfolios.items()},
              flush=True)


# Members for the time a preset has left once its portfolio is done: the trees again, averaging more
# seeds per fold (each seed holds aside its own early-stopping rows)
FILLERS = {
    "lightgbm-seeds": ("lightgbm", "lightgbm", {**CANDIDATES["lgb-refit"][2], "seeds_per_fold": 5}),
    "catboost-seeds": ("catboost", "catboost", {**CANDIDATES["cat-refit"][2], "seeds_per_fold": 3}),
}


def fillers(out: Path, seconds: float, portfolio: str, tables: list[str]) -> None:
    import contextlib
    import io

    import pipelines as pl
    import tabular_data as td
    from pipelines.tabular import spec as specs

    log = out / f"fillers-{seconds:g}.jsonl"
    done = {r["table"] for r in _rows(log)}
    budgeted = {r["table"]: r for r in _rows(out / f"budget-{seconds:g}.jsonl")}
    for table in [t for t in tables if t in budgeted and t not in done]:
        laid = td.layout(table, out / "data" / table)
        spec = specs.load(laid.spec_path)
        os.environ["PIPELINES_HOME"] = str(out / f"home-{seconds:g}" / table)
        runs = {}
        for name, (_, config, overrides) in FILLERS.items():
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                run = pl.train(str(laid.spec_path), config, data=laid.folder, name=f"filler-{name}",
                               overrides=overrides, device="cpu", restart=True, quiet=True)
            runs[name] = {"cv": run.cv, "wall_s": round(time.perf_counter() - started, 1),
                          "held_out": _held_out(td, laid, spec, run.folder, out, f"{table}-filler-{name}")}
        base = [f"preset-best-{m}" for m in budgeted[table]["portfolios"][portfolio]["members"]]
        cache: dict = {}
        blends = {}
        with contextlib.redirect_stdout(io.StringIO()):
            blends["portfolio"] = _blend_scores(out, table, base, cache)
            blends["portfolio+fillers"] = _blend_scores(out, table, base + [f"filler-{n}" for n in FILLERS], cache)
        row = {"table": table, "metric": spec.metric, "greater_is_better": spec.greater_is_better,
               "fillers": runs, "blends": blends}
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


def budget_select(out: Path, seconds: float) -> None:
    import numpy as np
    from scipy.stats import rankdata

    rows = {r["table"]: r for r in _rows(out / f"budget-{seconds:g}.jsonl")}
    options = [(p, rule) for p in BUDGET_PORTFOLIOS for rule in RULES]

    def held(table: str, option: tuple) -> float:
        return rows[table]["portfolios"][option[0]]["held_out" if option[1] == "blend" else "best-cv"]

    def ranks(table: str) -> dict:  # 0 is best; ties share their mean rank
        sign = -1 if rows[table]["greater_is_better"] else 1
        return dict(zip(options, rankdata([sign * held(table, o) for o in options]) - 1))

    ranked = {t: ranks(t) for t in rows}
    print("| table | metric | chosen without it | its held-out there | the first preset's (five, best run by CV) |"
          "\n|---|---|---|---|---|")
    picks = []
    for left_out in rows:
        others = [t for t in rows if t != left_out]
        pick = min(options, key=lambda o: (np.mean([ranked[t][o] for t in others]), options.index(o)))
        picks.append(pick)
        print(f"| {left_out} | {rows[left_out]['metric']} | {pick[0]}, {pick[1]} | {held(left_out, pick):.4f} | "
              f"{held(left_out, ('five', 'best-cv')):.4f} |")
    print("\nchosen per left-out table:", sorted(set(picks)))
    for option in options:
        print(f"{option[0]:12s} {option[1]:8s} mean rank of held-out {np.mean([ranked[t][option] for t in rows]):.2f}"
              f" (0 best, of {len(options)})")


def main(argv: list[str]) -> int:
    import argparse

    import tabular_data as td

    parser = argparse.ArgumentParser(prog="benchmarks/portfolio.py")
    sub = parser.add_subparsers(dest="verb", required=True)
    m = sub.add_parser("measure")
    m.add_argument("out", type=Path)
    m.add_argument("--tables", nargs="+", default=list(td.SELECTION), choices=list(td.SELECTION))
    m.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    s = sub.add_parser("select")
    s.add_argument("out", type=Path)
    b = sub.add_parser("budget")
    b.add_argument("out", type=Path)
    b.add_argument("--time", type=float, required=True)
    b.add_argument("--tables", nargs="+", default=list(td.DEVELOPMENT), choices=list(td.TABLES))
    b.add_argument("--metric", choices=["rmse", "rmsle", "mae"],
                   help="score every regression table by this metric (the others are left out)")
    bs = sub.add_parser("budget-select")
    bs.add_argument("out", type=Path)
    bs.add_argument("--time", type=float, required=True)
    f = sub.add_parser("fillers")
    f.add_argument("out", type=Path)
    f.add_argument("--time", type=float, required=True)
    f.add_argument("--portfolio", required=True, choices=list(BUDGET_PORTFOLIOS))
    f.add_argument("--tables", nargs="+", default=list(td.DEVELOPMENT), choices=list(td.TABLES))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.verb == "fillers":
        fillers(args.out, args.time, args.portfolio, args.tables)
    elif args.verb == "measure":
        measure(args.out, args.tables, args.candidates)
    elif args.verb == "budget":
        budget(args.out, args.time, args.tables, args.metric)
    elif args.verb == "budget-select":
        budget_select(args.out, args.time)
    else:
        select(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
