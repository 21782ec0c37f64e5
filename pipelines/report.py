"""A run's report: report.md with PNGs beside it, in <run_dir>/report/.

Everything is drawn from what the run left on disk (run.json, metrics.json, oof.csv and
the fold checkpoints' meta.json), so a report can be written again at any time:

  * every run: the CV and per-fold figures, and learning curves per fold from the
    checkpoints' per-epoch history (training loss, validation loss and metric, best epoch
    marked), as d2l's animator draws them;
  * then the competition's own sections (Competition.report_sections, e.g. residuals for a
    regression; confusion matrix, calibration and the most confident mistakes for a binary
    image task), drawn with the helpers here (subplots, save, md_table, fmt).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from . import atomic, competition, hints
from .errors import UserError
from .paths import REPORT_FOLDER as FOLDER, report_path  # noqa: F401  (where a run's report.md is)

DPI = 90


def subplots(*args, **kwargs):
    """(figure, axes) drawn by Agg into files: no pyplot, so no window, no global figure state,
    and no change to the backend of a program (or notebook) that calls write()."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=kwargs.pop("figsize", None))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(*args, **kwargs)


def save(fig, folder: Path, name: str) -> str:
    atomic.write_with(folder / name, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    return name


def md_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def fmt(value, digits: int = 5) -> str:
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
    lines += md_table(["fold", *keys], [[f["fold"], *(fmt(f.get(k), 1 if "seconds" in k else 5) for k in keys)]
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
    fig, axes = subplots(1, 2, figsize=(11, 4.2), squeeze=False)
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
        table.append([label, len(history), best or "", fmt(np.nanmean(seconds), 2),
                      *(fmt(last.get(k)) for k in losses + others)])
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
    name = save(fig, out, "learning_curves.png")
    lines += [f"![learning curves per fold]({name})", "",
              "One colour per fold (paler lines: further seeds of the same fold). Training loss is the mean "
              "minibatch loss over the epoch, in training mode (dropout and augmentation on), in the config's "
              "loss on the model's target scale; validation figures are computed after each epoch on the "
              "held-out fold. Dots mark the epoch whose weights were kept. A training metric is not recorded "
              "(it would cost a pass over the training rows every epoch).", ""]
    lines += md_table(["checkpoint", "epochs run", "kept epoch", "s / epoch", *(f"last {k}" for k in losses + others)],
                       table)
    skipped = len(found) - len(with_history)
    if skipped:
        lines += ["", f"{skipped} checkpoint(s) have no per-epoch history."]
    return lines + [""]


# --------------------------------------------------------------------------- entry points

def _competition_sections(run_dir: Path, run: dict, out: Path) -> list[str]:
    """The sections the run's competition draws after the shared ones."""
    name = run.get("competition")
    try:
        sections = competition.load(str(name)).report_sections
    except UserError:
        sections = None
    if sections is None:
        return [f"No competition-specific section for {name!r}.", ""]
    return list(sections(run_dir, run, out))


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
    lines += _competition_sections(run_dir, run, out)
    path = report_path(run_dir)
    atomic.write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


def write_after_training(run_dir: str | Path) -> Path | None:
    """write(), for the end of `train`: a failure prints one warning and never loses the run. Then
    the run goes to the tracker (--track: tracking.py), report and all."""
    from . import tracking

    try:
        path = write(run_dir)
    except Exception as exc:  # the run is already recorded; the report can be rewritten with `report`
        print(f"warning: run report not written ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
              f"the run is fine; retry with `{hints.pipelines(f'report {Path(run_dir).parent.name} --run {Path(run_dir).name}')}`",
              file=sys.stderr)
        path = None
    else:
        print(f"report: {path}")
    tracking.after_training(run_dir)
    return path
