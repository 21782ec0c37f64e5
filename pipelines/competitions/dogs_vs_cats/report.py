"""Dogs vs. Cats' section of a run's report (pipelines/report.py writes the shared part): confusion
matrix, calibration curve, and a grid of the most confident mistakes with their probabilities
(thumbnails from the decoded image cache)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ... import hints, paths
from ...errors import UserError
from ...report import fmt, md_table, save, subplots
from .competition import NAME

THRESHOLD = 0.5          # P(dog) > 0.5 is a dog, as metrics.accuracy decides
CALIBRATION_BINS = 10
MISTAKES = 16            # thumbnails in the confident-mistakes grid


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


def sections(run_dir: Path, run: dict, out: Path) -> list[str]:
    """The out-of-fold section: confusion matrix, calibration, the most confident mistakes."""
    oof = pd.read_csv(run_dir / "oof.csv")
    scored = oof[oof["oof_p_dog"].notna()].reset_index(drop=True)
    lines = ["## Out-of-fold predictions", ""]
    if scored.empty:
        return lines + ["No out-of-fold predictions in oof.csv.", ""]
    labels = scored["label"].to_numpy(int)
    prob = scored["oof_p_dog"].to_numpy(float)

    counts = confusion(labels, prob)
    fig, ax = subplots(figsize=(4.2, 3.8))
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
    matrix = save(fig, out, "confusion_matrix.png")

    table = calibration(labels, prob)
    filled = table[table["count"] > 0]
    ece = float(np.sum(filled["count"] * np.abs(filled["mean_p_dog"] - filled["dog_fraction"])) / len(prob))
    fig, (top, bottom) = subplots(2, 1, figsize=(5.5, 6.5), gridspec_kw={"height_ratios": [3, 1.3]},
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
    calib = save(fig, out, "calibration.png")

    accuracy = float(np.trace(counts) / counts.sum())
    lines += [f"![confusion matrix]({matrix})", "",
              f"Confusion matrix (rows: true class, columns: predicted class, dog when P(dog) > {THRESHOLD}); "
              f"accuracy {accuracy:.4f}:", ""]
    lines += md_table(["true \\ predicted", "cat", "dog"],
                       [["cat", counts[0, 0], counts[0, 1]], ["dog", counts[1, 0], counts[1, 1]]])
    lines += ["", f"![calibration curve]({calib})", "",
              f"Expected calibration error {ece:.4f} (unclipped OOF probabilities):", ""]
    lines += md_table(["P(dog) bin", "images", "mean P(dog)", "fraction dogs"],
                       [[r.bin, r.count, fmt(r.mean_p_dog, 3), fmt(r.dog_fraction, 3)] for r in table.itertuples()])
    unscored = len(oof) - len(scored)
    if unscored:
        lines += ["", f"{unscored} training images have no out-of-fold prediction (their folds were not trained)."]
    lines += ["", "## Most confident mistakes", ""]
    return lines + _mistakes(scored, labels, prob, run, out) + [""]


def _train_cache(run: dict):
    """The decoded training images at the run's size, or (None, why not)."""
    from . import data

    size = int(run.get("config_values", {}).get("image_size", 0))
    folder = paths.data_dir(NAME) / "cache" / str(size) / "train"
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
    rows = [[scored["key"].iloc[i], "dog" if labels[i] else "cat", fmt(prob[i], 4), int(scored["fold"].iloc[i])]
            for i in chosen]
    lines = md_table(["image", "true", "P(dog)", "fold"], rows) + [""]
    cache, note = _train_cache(run)
    if cache is None:
        return lines + [f"Thumbnail grid skipped: {note}; `{hints.prepare(NAME)}` builds it."]
    where = {key: i for i, key in enumerate(cache.keys)}
    found = [i for i in chosen if scored["key"].iloc[i] in where]
    if not found:
        return lines + ["Thumbnail grid skipped: none of these images is in the image cache."]
    cols = min(4, len(found))
    rows_n = math.ceil(len(found) / cols)
    fig, axes = subplots(rows_n, cols, figsize=(2.3 * cols, 2.6 * rows_n), squeeze=False)
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
    name = save(fig, out, "confident_mistakes.png")
    missing = len(chosen) - len(found)
    lines = [f"![most confident mistakes]({name})", ""] + lines
    if note:
        lines.append(f"Note: {note}.")
    if missing:
        lines.append(f"{missing} of these images are not in the image cache and are not drawn.")
    return lines
