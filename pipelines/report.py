"""A run's report: report.md with PNGs beside it, in <run_dir>/report/.

Everything is drawn from what the run left on disk (run.json, metrics.json, oof.csv and
the fold checkpoints' meta.json), so a report can be written again at any time:

  * every run: learning curves per fold from the checkpoints' per-epoch history (training
    loss, validation loss and metric, best epoch marked), as d2l's animator draws them;
  * House Prices: predicted vs true price and the residuals, on the out-of-fold predictions;
  * Dogs vs. Cats: confusion matrix, calibration curve, and a grid of the most confident
    mistakes with their probabilities (thumbnails from the decoded image cache).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import atomic, paths

FOLDER = "report"
MARKDOWN = "report.md"
HOUSE, DOGS = "house-prices", "dogs-vs-cats"
THRESHOLD = 0.5          # P(dog) > 0.5 is a dog, as metrics.accuracy decides
CALIBRATION_BINS = 10
MISTAKES = 16            # thumbnails in the confident-mistakes grid
WORST = 10               # rows in the worst-residual table
DPI = 90


def report_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / FOLDER / MARKDOWN


def _subplots(*args, **kwargs):
    """(figure, axes) drawn by Agg into files: no pyplot, so no window, no global figure state,
    and no change to the backend of a program (or notebook) that calls write()."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=kwargs.pop("figsize", None))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(*args, **kwargs)


def _save(fig, folder: Path, name: str) -> str:
    atomic.write_with(folder / name, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    return name


def _md_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _fmt(value, digits: int = 5) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(value):
        return "-"
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.{digits}f}"


# --------------------------------------------------------------------------- common

def _header(run: dict, metrics: dict) -> list[str]:
    metric = run["metric"]
    code = run.get("code", {})
    lines = [f"# Run report: {run['run']}", "",
             f"- competition: `{run['competition']}`, config `{run['config']}` "
             f"(hash {run.get('config_hash', '?')}), data `{run.get('dataset', Path(run['data']['train']).name)}`",
             f"- CV {metric}: **{run['cv']:.5f}** (out-of-fold, {metrics['cv'].get('rows_scored', '?')} rows), "
             f"fold std {run['cv_std']:.5f}",
             f"- {run['folds']} fold(s), {run['wall_s']:.1f} s on {run['device']}, {run['date']}, "
             f"code {code.get('commit', '?')}{' (uncommitted changes)' if code.get('dirty') else ''}"]
    extra = [k for k in ("accuracy", "roc_auc") if k in run]
    if extra:
        lines.append("- " + ", ".join(f"{k} {run[k]:.5f}" for k in extra))
    lines += ["", "## Folds", ""]
    folds = metrics.get("folds", [])
    keys = [k for k in folds[0] if isinstance(folds[0][k], (int, float)) and k not in ("fold",)] if folds else []
    lines += _md_table(["fold", *keys], [[f["fold"], *(_fmt(f.get(k), 1 if "seconds" in k else 5) for k in keys)]
                                         for f in folds])
    return lines + [""]


def _histories(run_dir: Path) -> list[tuple[str, dict]]:
    """(label, meta) of every fold checkpoint: fold<k>/meta.json or fold<k>/member<m>/meta.json."""
    found = []
    for meta_path in sorted(run_dir.glob("fold*/meta.json")) + sorted(run_dir.glob("fold*/member*/meta.json")):
        meta = json.loads(meta_path.read_text())
        label = meta_path.parent.relative_to(run_dir).as_posix().replace("/", " ")
        found.append((label, meta))
    return sorted(found, key=lambda item: (int(item[1].get("fold", 0)), item[0]))


def _loss_keys(history: list[dict]) -> tuple[list[str], list[str]]:
    keys = [k for k in history[0] if k not in ("epoch", "seconds")]
    losses = [k for k in keys if k == "train_loss" or k.endswith("_loss")]
    return losses, [k for k in keys if k not in losses]


def _curves(run_dir: Path, run: dict, out: Path) -> list[str]:
    lines = ["## Learning curves", ""]
    found = _histories(run_dir)
    with_history = [(label, meta) for label, meta in found if meta.get("history")]
    members = run.get("config_values", {}).get("members")
    if not found and members:  # a blend: fitted on its members' out-of-fold predictions, no epochs
        links = ", ".join(f"[{m}](../../{m}/report/report.md)" for m in members)
        return lines + [f"A blend has no training epochs; its members' curves are in their reports: {links}.", ""]
    if not found:
        return lines + ["No fold checkpoints found, so no learning curves.", ""]
    if not with_history:
        values = run.get("config_values", {})
        how = "this model"
        if values.get("recipe") == "features":
            how = f"the `{values.get('head')}` head"
            if values.get("head") == "logreg":
                how += " (scikit-learn's logistic regression)"
        return lines + [f"No per-epoch history: {how} is fitted in one go, not epoch by epoch, "
                        f"so there are no learning curves.", ""]
    import matplotlib
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    losses, others = _loss_keys(with_history[0][1]["history"])
    fig, axes = _subplots(1, 2, figsize=(11, 4.2), squeeze=False)
    panels = ((axes[0, 0], losses, "loss"), (axes[0, 1], others, "validation metric"))
    colors = matplotlib.colormaps["tab10" if len({m.get("fold") for _, m in with_history}) <= 10 else "tab20"]
    table = []
    for label, meta in with_history:
        history = meta["history"]
        epochs = [h["epoch"] for h in history]
        fold = int(meta.get("fold", 0))
        color = colors(fold % colors.N)
        alpha = 0.9 if int(meta.get("member", 0)) == 0 else 0.45
        best = meta.get("best_epoch")
        for ax, keys, _ in panels:
            for key in keys:
                values = [h.get(key, np.nan) for h in history]
                ax.plot(epochs, values, "-" if key.startswith("train") else "--", color=color, alpha=alpha,
                        linewidth=1.3)
                if best and best in epochs:
                    ax.plot([best], [values[epochs.index(best)]], "o", color=color, markersize=4)
        seconds = [h.get("seconds", np.nan) for h in history]
        last = history[-1]
        table.append([label, len(history), best or "", _fmt(np.nanmean(seconds), 2),
                      *(_fmt(last.get(k)) for k in losses + others)])
    for ax, keys, title in panels:
        values = [h[k] for _, m in with_history for h in m["history"] for k in keys
                  if isinstance(h.get(k), (int, float)) and np.isfinite(h[k])]
        if values and min(values) > 0 and max(values) / min(values) > 50:
            ax.set_yscale("log")
        ax.set_title(f"{title}: " + ", ".join(k.replace("_", " ") for k in keys), fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    folds = sorted({int(m.get("fold", 0)) for _, m in with_history})
    handles = [Line2D([], [], color=colors(f % colors.N), label=f"fold {f}") for f in folds]
    handles += [Line2D([], [], color="black", linestyle="-", label="train"),
                Line2D([], [], color="black", linestyle="--", label="validation"),
                Line2D([], [], color="black", marker="o", linestyle="", label="kept epoch")]
    axes[0, 1].legend(handles=handles, fontsize=7, loc="best", ncol=2 if len(folds) > 6 else 1)
    fig.tight_layout()
    name = _save(fig, out, "learning_curves.png")
    lines += [f"![learning curves per fold]({name})", "",
              "One colour per fold (paler lines: further seeds of the same fold). Training loss is the mean "
              "minibatch loss over the epoch, in training mode (dropout and augmentation on), in the config's "
              "loss on the model's target scale; validation figures are computed after each epoch on the "
              "held-out fold. Dots mark the epoch whose weights were kept. A training metric is not recorded "
              "(it would cost a pass over the training rows every epoch).", ""]
    lines += _md_table(["checkpoint", "epochs run", "kept epoch", "s / epoch", *(f"last {k}" for k in losses + others)],
                       table)
    skipped = len(found) - len(with_history)
    if skipped:
        lines += ["", f"{skipped} checkpoint(s) have no per-epoch history."]
    return lines + [""]


# --------------------------------------------------------------------------- House Prices

def _house(run_dir: Path, run: dict, out: Path) -> list[str]:
    from .competitions.house_prices.data import ID, TARGET

    oof = pd.read_csv(run_dir / "oof.csv")
    column = "oof_" + TARGET
    scored = oof[oof[column].notna()]
    lines = ["## Out-of-fold predictions", ""]
    if scored.empty:
        return lines + ["No out-of-fold predictions in oof.csv.", ""]
    true = scored[TARGET].to_numpy(float)
    raw = scored[column].to_numpy(float)
    predicted = np.clip(raw, 1.0, None)  # as metrics.rmse_log scores them
    residual = np.log(predicted) - np.log(true)
    folds = scored["fold"].to_numpy(int)

    fig, ax = _subplots(figsize=(6, 6))
    for fold in np.unique(folds):
        mask = folds == fold
        ax.scatter(true[mask], predicted[mask], s=6, alpha=0.5, label=f"fold {fold}")
    low, high = min(true.min(), predicted.min()), max(true.max(), predicted.max())
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="predicted = true")
    worst = np.argsort(-np.abs(residual))[:5]
    for i in worst:
        ax.annotate(str(scored[ID].iloc[i]), (true[i], predicted[i]), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _price_ticks(ax.xaxis, ax.yaxis)
    ax.set_xlabel(f"true {TARGET}")
    ax.set_ylabel(f"out-of-fold predicted {TARGET}")
    ax.set_title(f"OOF: predicted vs true (log-RMSE {np.sqrt(np.mean(residual ** 2)):.5f}, {len(true)} houses)",
                 fontsize=9)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    scatter = _save(fig, out, "oof_pred_vs_true.png")

    fig, (left, right) = _subplots(1, 2, figsize=(11, 4))
    left.scatter(predicted, residual, s=6, alpha=0.5, c=folds, cmap="tab10", vmin=0, vmax=9)
    left.axhline(0, color="black", linewidth=1)
    left.set_xscale("log")
    _price_ticks(left.xaxis)
    left.set_xlabel(f"out-of-fold predicted {TARGET}")
    left.set_ylabel("residual: log(predicted) - log(true)")
    left.set_title("residuals vs prediction", fontsize=9)
    left.grid(True, alpha=0.3)
    right.hist(residual, bins=60, color="tab:blue", alpha=0.8)
    right.axvline(0, color="black", linewidth=1)
    right.set_xlabel("residual: log(predicted) - log(true)")
    right.set_ylabel("houses")
    right.set_title(f"residuals: mean {residual.mean():+.4f}, std {residual.std():.4f}", fontsize=9)
    fig.tight_layout()
    residuals = _save(fig, out, "oof_residuals.png")

    lines += [f"![predicted vs true]({scatter})", "", f"![residuals]({residuals})", ""]
    unscored = len(oof) - len(scored)
    if unscored:
        lines += [f"{unscored} training rows have no out-of-fold prediction (their folds were not trained).", ""]
    low_count = int(np.sum(raw < 1.0))
    if low_count:
        lines += [f"{low_count} predictions below 1 were clipped to 1 (as the metric scores them).", ""]
    lines += [f"Largest residuals (log(predicted) - log(true)), {WORST} houses:", ""]
    lines += _md_table([ID, "fold", f"true {TARGET}", f"predicted {TARGET}", "residual"],
                       [[int(scored[ID].iloc[i]), int(folds[i]), f"{true[i]:,.0f}", f"{predicted[i]:,.0f}",
                         f"{residual[i]:+.4f}"] for i in np.argsort(-np.abs(residual))[:WORST]])
    return lines + [""]


def _price_ticks(*axes) -> None:
    """Prices on log axes as 50k, 100k, 200k, ... (matplotlib's 3x10^5 labels run into each other)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ticks = [v * 10 ** e for e in (3, 4, 5, 6) for v in (1, 2, 5)]
    for axis in axes:
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}k"))
        axis.set_minor_formatter(NullFormatter())


# --------------------------------------------------------------------------- Dogs vs. Cats

def confusion(labels: np.ndarray, prob: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """2x2 counts: rows true cat/dog, columns predicted cat/dog (dog when prob > threshold)."""
    predicted = (np.asarray(prob) > threshold).astype(int)
    labels = np.asarray(labels).astype(int)
    return np.array([[int(np.sum((labels == t) & (predicted == p))) for p in (0, 1)] for t in (0, 1)])


def calibration(labels: np.ndarray, prob: np.ndarray, bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Equal-width bins of P(dog): count, mean P(dog), fraction of dogs."""
    index = np.clip((np.asarray(prob) * bins).astype(int), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        rows.append({"bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}", "count": n,
                     "mean_p_dog": float(prob[mask].mean()) if n else np.nan,
                     "dog_fraction": float(labels[mask].mean()) if n else np.nan})
    return pd.DataFrame(rows)


def _dogs(run_dir: Path, run: dict, out: Path) -> list[str]:
    oof = pd.read_csv(run_dir / "oof.csv")
    scored = oof[oof["oof_p_dog"].notna()].reset_index(drop=True)
    lines = ["## Out-of-fold predictions", ""]
    if scored.empty:
        return lines + ["No out-of-fold predictions in oof.csv.", ""]
    labels = scored["label"].to_numpy(int)
    prob = scored["oof_p_dog"].to_numpy(float)

    counts = confusion(labels, prob)
    fig, ax = _subplots(figsize=(4.2, 3.8))
    ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(1, counts.max()))
    for t in (0, 1):
        for p in (0, 1):
            share = counts[t, p] / max(1, counts[t].sum())
            ax.text(p, t, f"{counts[t, p]}\n{share:.1%}", ha="center", va="center",
                    color="white" if counts[t, p] > 0.6 * counts.max() else "black")
    ax.set_xticks([0, 1], ["cat", "dog"])
    ax.set_yticks([0, 1], ["cat", "dog"])
    ax.set_xlabel("predicted (P(dog) > 0.5)")
    ax.set_ylabel("true")
    ax.set_title(f"OOF confusion matrix, {len(labels)} images", fontsize=9)
    fig.tight_layout()
    matrix = _save(fig, out, "confusion_matrix.png")

    table = calibration(labels, prob)
    filled = table[table["count"] > 0]
    ece = float(np.sum(filled["count"] * np.abs(filled["mean_p_dog"] - filled["dog_fraction"])) / len(prob))
    fig, (top, bottom) = _subplots(2, 1, figsize=(5.5, 6.5), gridspec_kw={"height_ratios": [3, 1.3]},
                                      sharex=True)
    top.plot([0, 1], [0, 1], color="black", linewidth=1, linestyle=":", label="perfectly calibrated")
    top.plot(filled["mean_p_dog"], filled["dog_fraction"], marker="o", label="OOF")
    top.set_ylabel("fraction of dogs")
    top.set_title(f"calibration ({CALIBRATION_BINS} bins), ECE {ece:.4f}", fontsize=9)
    top.grid(True, alpha=0.3)
    top.legend(fontsize=8)
    edges = np.linspace(0, 1, CALIBRATION_BINS * 2 + 1)
    bottom.hist([prob[labels == 0], prob[labels == 1]], bins=edges, label=["cats", "dogs"],
                color=["tab:orange", "tab:blue"])
    bottom.set_yscale("log")
    bottom.set_xlabel("out-of-fold P(dog)")
    bottom.set_ylabel("images")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    calib = _save(fig, out, "calibration.png")

    accuracy = float(np.trace(counts) / counts.sum())
    lines += [f"![confusion matrix]({matrix})", "",
              f"Confusion matrix (rows: true class, columns: predicted class, dog when P(dog) > {THRESHOLD}); "
              f"accuracy {accuracy:.4f}:", ""]
    lines += _md_table(["true \\ predicted", "cat", "dog"],
                       [["cat", counts[0, 0], counts[0, 1]], ["dog", counts[1, 0], counts[1, 1]]])
    lines += ["", f"![calibration curve]({calib})", "",
              f"Expected calibration error {ece:.4f} (unclipped OOF probabilities):", ""]
    lines += _md_table(["P(dog) bin", "images", "mean P(dog)", "fraction dogs"],
                       [[r.bin, r.count, _fmt(r.mean_p_dog, 3), _fmt(r.dog_fraction, 3)] for r in table.itertuples()])
    unscored = len(oof) - len(scored)
    if unscored:
        lines += ["", f"{unscored} training images have no out-of-fold prediction (their folds were not trained)."]
    lines += ["", "## Most confident mistakes", ""]
    return lines + _mistakes(scored, labels, prob, run, out) + [""]


def _train_cache(run: dict):
    """The decoded training images at the run's size, or (None, why not)."""
    from .competitions.dogs_vs_cats import data
    from .errors import UserError

    size = int(run.get("config_values", {}).get("image_size", 0))
    folder = paths.data_dir(DOGS) / "cache" / str(size) / "train"
    try:
        cache = data.load_cache(folder)
    except UserError as exc:
        return None, f"no decoded image cache at {folder} ({str(exc).split(': ', 1)[-1]})"
    note = None
    if cache.manifest.get("fingerprint") != run.get("data", {}).get("train_fingerprint"):
        note = ("the image cache was built from other sources than this run's, "
                "so images are looked up by file name")
    return cache, note


def _mistakes(scored: pd.DataFrame, labels: np.ndarray, prob: np.ndarray, run: dict, out: Path) -> list[str]:
    wrong = np.flatnonzero((prob > THRESHOLD).astype(int) != labels)
    if len(wrong) == 0:
        return ["No out-of-fold mistakes."]
    confidence = np.where(labels[wrong] == 1, 1 - prob[wrong], prob[wrong])  # probability put on the wrong class
    chosen = wrong[np.argsort(-confidence, kind="stable")][:MISTAKES]
    rows = [[scored["key"].iloc[i], "dog" if labels[i] else "cat", _fmt(prob[i], 4), int(scored["fold"].iloc[i])]
            for i in chosen]
    lines = _md_table(["image", "true", "P(dog)", "fold"], rows) + [""]
    cache, note = _train_cache(run)
    if cache is None:
        return lines + [f"Thumbnail grid skipped: {note}; `make prepare COMP={DOGS}` builds it."]
    where = {key: i for i, key in enumerate(cache.keys)}
    found = [i for i in chosen if scored["key"].iloc[i] in where]
    if not found:
        return lines + ["Thumbnail grid skipped: none of these images is in the image cache."]
    cols = min(4, len(found))
    rows_n = math.ceil(len(found) / cols)
    fig, axes = _subplots(rows_n, cols, figsize=(2.3 * cols, 2.6 * rows_n), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, found):
        key = scored["key"].iloc[i]
        ax.imshow(np.asarray(cache.images[where[key]]), interpolation="nearest" if cache.images.shape[1] < 96 else None)
        ax.set_title(f"{key}\ntrue {'dog' if labels[i] else 'cat'}, P(dog) {prob[i]:.3f}", fontsize=8,
                     color="tab:red")
    fig.suptitle(f"most confident out-of-fold mistakes ({len(wrong)} mistakes in all), "
                 f"{cache.images.shape[1]}px as the model saw them", fontsize=9)
    fig.tight_layout()
    name = _save(fig, out, "confident_mistakes.png")
    missing = len(chosen) - len(found)
    lines = [f"![most confident mistakes]({name})", ""] + lines
    if note:
        lines.append(f"Note: {note}.")
    if missing:
        lines.append(f"{missing} of these images are not in the image cache and are not drawn.")
    return lines


# --------------------------------------------------------------------------- entry points

def write(run_dir: str | Path) -> Path:
    """Write <run_dir>/report/report.md and its PNGs; returns the Markdown's path."""
    run_dir = Path(run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    out = run_dir / FOLDER
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # a rewritten report never shows a stale plot
        old.unlink()
    lines = _header(run, metrics) + _curves(run_dir, run, out)
    competition = run.get("competition")
    if competition == HOUSE:
        lines += _house(run_dir, run, out)
    elif competition == DOGS:
        lines += _dogs(run_dir, run, out)
    else:
        lines += [f"No competition-specific section for {competition!r}.", ""]
    path = report_path(run_dir)
    atomic.write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


def write_after_training(run_dir: str | Path) -> Path | None:
    """write(), for the end of `train`: a failure prints one warning and never loses the run."""
    try:
        path = write(run_dir)
    except Exception as exc:  # the run is already recorded; the report can be rewritten with `report`
        print(f"warning: run report not written ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
              f"the run is fine; retry with `python -m pipelines report COMPETITION --run {Path(run_dir).name}`",
              file=sys.stderr)
        return None
    print(f"report: {path}")
    return path
