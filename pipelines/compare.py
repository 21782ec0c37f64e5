"""Runs side by side (`compare`), and CV against Kaggle's public scores (`leaderboard --public`).

    python -m pipelines compare COMPETITION RUN RUN [RUN ...]

prints, from what the runs left on disk (run.json, metrics.json, folds.csv):
  * the config values that differ between the runs (a value a run does not have: "-");
  * each run's CV and its per-fold scores;
  * when all runs have the same folds.csv, each run paired fold by fold with the first: the mean
    per-fold difference and how many folds each side wins (direction-aware); else one line saying
    the folds differ;
and writes one PNG, runs/<competition>/compare/<run>-vs-<run>.png: the per-fold scores, and the
per-fold differences from the first run (or, with different folds, each CV and its fold spread).
A run is a name under runs/<competition>/, a run folder, or `best` (runs.resolve_run). Blends
are runs too.

    python -m pipelines leaderboard COMPETITION --public

prints every submitted run with its CV and Kaggle public score, the Pearson and Spearman
correlations between the two, warns when the public order disagrees with the CV order, and writes
runs/<competition>/compare/public-scores.png (CV against public, runs labelled).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import hints, registry as leaderboard, paths, runs
from .errors import UserError
from .report import save, subplots

FOLDER = "compare"              # runs/<competition>/compare/: the PNGs compare writes
PUBLIC_PNG = "public-scores.png"  # never a compare's name: those always hold "-vs-"
CELL = 24                       # a config value's cell is cut to this many characters
PARTIAL_KEYS = 12               # more keys than this missing from some run: listed, not tabled
RANK_AGREEMENT = 0.5            # --public warns below this Spearman correlation


@dataclass
class Run:
    name: str
    run_dir: Path
    record: dict                # run.json
    folds: dict[int, float]     # fold number -> the metric on that fold


def fold_scores(run_dir: Path, record: dict) -> dict[int, float]:
    """fold number -> score, from metrics.json's folds (their fold numbers: a run of `--folds 2,3`
    scores folds 2 and 3), else run.json's fold_scores in order."""
    metric = record.get("metric")
    try:
        folds = json.loads((run_dir / "metrics.json").read_text()).get("folds")
        found = {int(f["fold"]): float(f[metric]) for f in folds}
        if found:
            return found
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    return {i: float(s) for i, s in enumerate(record.get("fold_scores") or [])}


def load_runs(competition: str, specs: list[str]) -> list[Run]:
    """The runs to compare, each checked: finished (run.json), of this competition, named once."""
    if len(specs) < 2:
        raise UserError(f"compare needs at least 2 runs of {competition}, got {len(specs)}: "
                        f"{hints.pipelines(f'compare {competition} RUN RUN [RUN ...]')}")
    loaded: list[Run] = []
    for spec in specs:
        name = runs.resolve_run(competition, spec)
        run_dir = paths.find_run(competition, name)
        try:
            record = runs.load_run(run_dir)
        except (OSError, ValueError) as exc:
            raise UserError(f"run {spec}: {run_dir / 'run.json'} is not readable ({exc})") from None
        if not isinstance(record, dict) or "cv" not in record or "metric" not in record:
            raise UserError(f"run {spec}: {run_dir / 'run.json'} has no CV (cv, metric)")
        if record.get("competition") != competition:
            raise UserError(f"run {spec} ({run_dir}) is a {record.get('competition')} run, not {competition}")
        if any(r.run_dir.resolve() == run_dir.resolve() for r in loaded):
            raise UserError(f"run {spec} ({run_dir.name}) is named twice; compare different runs")
        loaded.append(Run(run_dir.name, run_dir, record, fold_scores(run_dir, record)))
    return loaded


# --------------------------------------------------------------------------- what differs

def _cut(text: str, width: int = CELL) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def config_differences(records: list[dict]) -> tuple[list[tuple[str, list[str]]], dict[str, list[str]]]:
    """(rows, only) for the config values not the same in all runs. rows: (key, one cell per run):
    the config's name first (as "config"), then the keys of run.json's config_values, sorted; "-"
    where a run has no such key. When more than PARTIAL_KEYS keys are missing from some run (a blend
    against a trained run, two model families), those keys are rows only where the runs that have
    them differ on them: only[run] lists the keys each run has that not every run has."""
    values = [dict(r.get("config_values") or {}) for r in records]
    for value in values:
        value.pop("name", None)  # the config's name: shown as "config"
    rows = []
    configs = [str(r.get("config", "-")) for r in records]
    if len(set(configs)) > 1:
        rows.append(("config", configs))
    everywhere = set.intersection(*(set(v) for v in values))
    partial = sorted(set().union(*values) - everywhere)
    collapse = len(partial) > PARTIAL_KEYS
    missing = object()
    for key in sorted(set().union(*values)):
        seen = [v.get(key, missing) for v in values]
        text = [json.dumps(v, sort_keys=True, default=str) for v in seen if v is not missing]
        if key in everywhere and len(set(text)) == 1:
            continue
        if collapse and key not in everywhere and len(set(text)) == 1:
            continue  # listed in `only`, unless the runs that have it differ on it
        rows.append((key, ["-" if v is missing else _cut(leaderboard.short_value(v)) for v in seen]))
    only = {}
    if collapse:
        for record, value in zip(records, values):
            mine = [k for k in partial if k in value]
            if mine:
                only[str(record.get("run"))] = mine
    return rows, only


def _table(header: list[str], body: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    line = lambda cells: indent + "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths)).rstrip()
    return [line(header)] + [line(r) for r in body]


def folds_differ(loaded: list[Run]) -> str | None:
    """None when every run's folds.csv is the first run's (same ids, same fold numbers, same order);
    else why not, naming the first run that differs."""
    import pandas as pd

    frames = []
    for run in loaded:
        path = run.run_dir / "folds.csv"
        try:
            frames.append(pd.read_csv(path, dtype=str))
        except (OSError, ValueError) as exc:
            return f"{run.name} has no readable folds.csv ({path}: {type(exc).__name__})"
    first = frames[0]
    for run, frame in zip(loaded[1:], frames[1:]):
        if list(frame.columns) != list(first.columns) or len(frame) != len(first):
            return f"{run.name}'s folds.csv has {len(frame)} rows, {loaded[0].name}'s {len(first)}"
        if not frame.equals(first):
            return f"{run.name}'s folds.csv assigns rows to folds differently from {loaded[0].name}'s"
    return None


def paired(base: Run, other: Run, greater_is_better: bool) -> dict:
    """other against base on the folds both scored: the mean and spread of other - base, and how
    many folds each wins."""
    common = sorted(set(base.folds) & set(other.folds))
    diff = np.array([other.folds[k] - base.folds[k] for k in common], float)
    better = int(np.sum(diff > 0)) if greater_is_better else int(np.sum(diff < 0))
    worse = int(np.sum(diff < 0)) if greater_is_better else int(np.sum(diff > 0))
    return {"folds": common, "diff": diff, "mean": float(diff.mean()) if len(diff) else float("nan"),
            "std": float(diff.std()) if len(diff) else float("nan"), "better": better, "worse": worse,
            "ties": len(common) - better - worse}


def png_name(names: list[str]) -> str:
    joined = "-vs-".join(names)
    if len(joined) <= 150:
        return f"{joined}.png"
    digest = hashlib.sha256(joined.encode()).hexdigest()[:8]
    return f"{'-vs-'.join(names[:3])}-vs-{len(names) - 3}-more-{digest}.png"


def compare(competition: str, specs: list[str]) -> tuple[list[str], Path]:
    """The lines `compare` prints and the PNG it wrote."""
    loaded = load_runs(competition, specs)
    first = loaded[0].record
    metric, gib = str(first["metric"]), bool(first.get("greater_is_better"))
    direction = "higher is better" if gib else "lower is better"
    names = [r.name for r in loaded]
    lines = [f"compare {competition}: {', '.join(names)} ({metric}, {direction})", ""]

    differences, only = config_differences([r.record for r in loaded])
    if differences:
        lines.append("config values that differ (-: the run has no such key):")
        lines += _table(["key", *names], [[key, *cells] for key, cells in differences])
    elif not only:
        lines.append("config values: the same in every run")
    for name, keys in only.items():
        shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
        lines.append(f"  keys only some runs have, {name}: {len(keys)} ({shown})")
    lines.append("")

    all_folds = sorted(set().union(*(r.folds for r in loaded)))
    lines.append(f"CV and per-fold {metric}:")
    body = [[r.name, str(r.record.get("config", "")), f"{float(r.record['cv']):.5f}",
             f"{float(r.record.get('cv_std', float('nan'))):.5f}",
             *(f"{r.folds[k]:.5f}" if k in r.folds else "-" for k in all_folds)] for r in loaded]
    lines += _table(["run", "config", "CV", "fold std", *(f"fold {k}" for k in all_folds)], body)
    lines.append("")

    why = folds_differ(loaded)
    pairs = {}
    if why is None:
        base = loaded[0]
        pairs = {r.name: paired(base, r, gib) for r in loaded[1:]}
        lines.append(f"paired with {base.name}, fold by fold (same folds.csv; difference = run - {base.name}, "
                     f"{direction}):")
        body = [[name, str(len(p["folds"])), f"{p['mean']:+.5f}", f"{p['std']:.5f}",
                 str(p["better"]), str(p["worse"]), str(p["ties"])] for name, p in pairs.items()]
        lines += _table(["run", "folds", "mean diff", "sd of diff", f"better than {base.name}",
                         "worse", "ties"], body)
    else:
        lines.append(f"folds differ ({why}): no fold-by-fold pairing; their CVs compare only roughly")
    path = _plot(competition, loaded, metric, direction, pairs)
    lines += ["", f"plot: {path}"]
    return lines, path


def _plot(competition: str, loaded: list[Run], metric: str, direction: str, pairs: dict) -> Path:
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    colors = matplotlib.colormaps["tab10"]
    fig, axes = subplots(1, 2, figsize=(11, 4.2), squeeze=False)
    left, right = axes[0, 0], axes[0, 1]
    for i, run in enumerate(loaded):
        folds = sorted(run.folds)
        left.plot(folds, [run.folds[k] for k in folds], "o-", color=colors(i % 10), label=run.name, alpha=0.85)
    left.set_title(f"{metric} per fold ({direction})", fontsize=9)
    left.set_xlabel("fold")
    left.legend(fontsize=7, loc="best")
    left.grid(True, alpha=0.3)
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    if pairs:
        base = loaded[0].name
        for i, (name, p) in enumerate(pairs.items(), start=1):
            right.plot(p["folds"], p["diff"], "o-", color=colors(i % 10), label=f"{name} - {base}")
        right.axhline(0.0, color="black", linewidth=0.8)
        right.set_title(f"per-fold difference from {base} ({direction})", fontsize=9)
        right.set_xlabel("fold")
        right.xaxis.set_major_locator(MaxNLocator(integer=True))
        right.legend(fontsize=7, loc="best")
    else:
        cvs = [float(r.record["cv"]) for r in loaded]
        spread = [float(r.record.get("cv_std", 0.0) or 0.0) for r in loaded]
        right.errorbar(range(len(loaded)), cvs, yerr=spread, fmt="o", capsize=4)
        right.set_xticks(range(len(loaded)), [r.name for r in loaded], rotation=20, fontsize=7)
        right.set_title(f"CV {metric} +- fold std (folds differ: not paired)", fontsize=9)
    right.grid(True, alpha=0.3)
    fig.tight_layout()
    folder = paths.runs_dir(competition) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder / save(fig, folder, png_name([r.name for r in loaded]))


def command(args) -> int:
    """The `compare` verb."""
    lines, _ = compare(args.competition, args.runs)
    print("\n".join(lines))
    return 0


# --------------------------------------------------------------------------- CV against the public board

def _ranks(values: np.ndarray, greater_is_better: bool) -> np.ndarray:
    """1 = best; ties share their mean rank."""
    import pandas as pd

    return pd.Series(values).rank(ascending=not greater_is_better, method="average").to_numpy()


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _fmt(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:+.3f}"


def public_vs_cv(competition: str, config: str | None = None) -> list[str]:
    """The lines `leaderboard COMPETITION --public` prints (and the PNG it writes)."""
    rows = [r for r in leaderboard.ranked(leaderboard.read(), competition) if r.get("kaggle")]
    if config is not None:
        rows = [r for r in rows if r.get("config") == config]
    scored = [r for r in rows if r.get("public") is not None]
    of = f" of config {config}" if config else ""
    if len(scored) < 2:
        return [f"{len(scored)} of the {len(rows)} submitted run(s) of {competition}{of} have a public score: "
                f"comparing CV with the public board needs at least 2; upload with "
                f"`{hints.submit(competition, 'RUN', kaggle=True)}`, read new scores with "
                f"`{hints.pipelines(f'kaggle-scores {competition}')}`"]
    gib = bool(scored[0].get("greater_is_better"))
    metric = scored[0].get("metric", "")
    cv = np.array([float(r["cv"]) for r in scored])
    public = np.array([float(r["public"]) for r in scored])
    cv_rank, public_rank = _ranks(cv, gib), _ranks(public, gib)
    rank_of = {r["run"]: (c, p) for r, c, p in zip(scored, cv_rank, public_rank)}
    direction = "higher is better" if gib else "lower is better"
    lines = [f"CV against Kaggle's public score, {competition}{of} ({metric}, {direction}): "
             f"{len(rows)} submitted run(s), {len(scored)} scored", ""]
    body = []
    for r in rows:
        ranks = rank_of.get(r["run"])
        body.append([str(r["run"]), str(r.get("config", "")), leaderboard.params_text(r, 30), f"{float(r['cv']):.5f}",
                     f"{float(r['public']):.5f}" if r.get("public") is not None else
                     str((r.get("kaggle") or {}).get("status", "")),
                     f"{ranks[0]:g}" if ranks else "-", f"{ranks[1]:g}" if ranks else "-"])
    lines += _table(["run", "config", "params", "CV", "public", "CV rank", "public rank"], body, indent="")
    pearson, spearman = _pearson(cv, public), _pearson(cv_rank, public_rank)
    lines += ["", f"correlation of CV and public score over {len(scored)} runs: Pearson {_fmt(pearson)}, "
                  f"Spearman {_fmt(spearman)}"]
    best_cv = scored[int(np.argmin(cv_rank))]["run"]
    best_public = [r["run"] for r, p in zip(scored, public_rank) if p == public_rank.min()]
    trouble = []
    if best_cv not in best_public:
        trouble.append(f"the best CV ({best_cv}) is not the best public score ({', '.join(best_public)})")
    if np.isfinite(spearman) and spearman < RANK_AGREEMENT:
        trouble.append(f"rank correlation {spearman:+.2f} is below {RANK_AGREEMENT}")
    path = _public_plot(competition, scored, cv, public, metric, direction)
    lines.append(f"plot: {path}")
    if trouble:
        lines.append(f"warning: the public leaderboard orders these runs differently from CV ({'; '.join(trouble)}). "
                     f"Trust your CV: the public score is measured on a small share of the test rows, and the "
                     f"private leaderboard, the one that counts, is scored on the other rows; pick by CV.")
    return lines


def _public_plot(competition: str, scored: list[dict], cv: np.ndarray, public: np.ndarray, metric: str,
                 direction: str) -> Path:
    fig, ax = subplots(figsize=(6.4, 5.2))
    ax.scatter(cv, public, color="tab:blue", zorder=3)
    for r, x, y in zip(scored, cv, public):
        ax.annotate(str(r["run"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    low, high = float(min(cv.min(), public.min())), float(max(cv.max(), public.max()))
    pad = (high - low) * 0.05 or abs(high) * 0.05 or 0.05
    ax.plot([low - pad, high + pad], [low - pad, high + pad], "--", color="grey", linewidth=0.8, label="public = CV")
    ax.set_xlabel(f"CV {metric}")
    ax.set_ylabel(f"public {metric}")
    ax.set_title(f"{competition}: CV against the public leaderboard ({direction})", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    folder = paths.runs_dir(competition) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder / save(fig, folder, PUBLIC_PNG)
