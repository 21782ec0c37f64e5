"""House Prices' section of a run's report (pipelines/report.py writes the shared part): predicted
vs true price and the residuals, on the out-of-fold predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...report import md_table, save, subplots
from .competition import ID, TARGET

WORST = 10               # rows in the worst-residual table


def sections(run_dir: Path, run: dict, out: Path) -> list[str]:
    """The out-of-fold section: predicted vs true price, the residuals, the largest ones."""
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

    fig, ax = subplots(figsize=(6, 6))
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
    scatter = save(fig, out, "oof_pred_vs_true.png")

    fig, (left, right) = subplots(1, 2, figsize=(11, 4))
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
    residuals = save(fig, out, "oof_residuals.png")

    lines += [f"![predicted vs true]({scatter})", "", f"![residuals]({residuals})", ""]
    unscored = len(oof) - len(scored)
    if unscored:
        lines += [f"{unscored} training rows have no out-of-fold prediction (their folds were not trained).", ""]
    low_count = int(np.sum(raw < 1.0))
    if low_count:
        lines += [f"{low_count} predictions below 1 were clipped to 1 (as the metric scores them).", ""]
    lines += [f"Largest residuals (log(predicted) - log(true)), {WORST} houses:", ""]
    lines += md_table([ID, "fold", f"true {TARGET}", f"predicted {TARGET}", "residual"],
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
