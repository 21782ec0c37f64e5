"""Run reports on small runs (the Ames houses laid out as Kaggle's files; drawn Dogs vs. Cats
look-alikes): the plots are written, are real PNGs, the Markdown shows them, and the numbers in
it agree with the run's own files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from drawn_images import draw
from pipelines import registry as leaderboard, report
from pipelines.cli import main
from pipelines.competitions.dogs_vs_cats import report as dogs_report
from pipelines.competitions.house_prices import report as house_report

HOUSE_PLOTS = ["learning_curves.png", "oof_pred_vs_true.png", "oof_residuals.png"]
DOGS_PLOTS = ["learning_curves.png", "confusion_matrix.png", "calibration.png", "confident_mistakes.png"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """One project home for the module's runs (each run trains once)."""
    root = tmp_path_factory.mktemp("report-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPELINES_HOME", str(root))
        yield root


@pytest.fixture(scope="module")
def house_run(project, house_data) -> Path:
    assert main(["train", "house-prices", "--config", "d2l-linear", "--data", str(house_data), "--name", "h",
                 "--device", "cpu", "--quiet", "--set", "epochs=5", "--set", "folds=3"]) == 0
    return project / "runs" / "house-prices" / "h"


DOGS_COUNTS = {"cat": 240, "dog": 160}  # unequal, so a confusion matrix with swapped rows or columns reads differently
MISLABELLED = 5                          # every 5th picture shows the other animal: mistakes are certain


def _dogs_data(root: Path) -> Path:
    """240 cats and 160 dogs drawn at 64 px (every 5th of them drawn as the other animal, as a
    hard or mislabelled photo, so the out-of-fold predictions hold mistakes however well the
    network learns), 6 test images."""
    rng = np.random.default_rng(1)
    (root / "train").mkdir(parents=True)
    (root / "test1").mkdir(parents=True)
    for label, (kind, count) in enumerate(DOGS_COUNTS.items()):
        for n in range(count):
            shown = 1 - label if n % MISLABELLED == MISLABELLED - 1 else label
            draw(shown, rng, (64, 64)).save(root / "train" / f"{kind}.{n}.jpg", quality=90)
    for n in range(1, 7):
        draw(n % 2, rng, (64, 64)).save(root / "test1" / f"{n}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def dogs_run(project, tmp_path_factory) -> Path:
    data = _dogs_data(tmp_path_factory.mktemp("dogs-data"))
    # lenet-modern learns in 6 short epochs at 16 px: both columns of the confusion matrix are
    # filled (the mislabelled fifth keeps mistakes in both rows), unlike d2l's lenet, which can
    # stay at one class.
    assert main(["train", "dogs-vs-cats", "--config", "lenet-modern", "--data", str(data), "--name", "d",
                 "--device", "cpu", "--quiet", "--set", "folds=2", "--set", "epochs=6",
                 "--set", "batch_size=32", "--set", "image_size=16"]) == 0
    return project / "runs" / "dogs-vs-cats" / "d"


def assert_real_png(path: Path) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    assert len(data) > 8_000, f"{path}: only {len(data)} bytes"
    with Image.open(path) as image:
        image.verify()  # the whole file decodes (CRCs, chunks)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 300 and image.height >= 250, image.size
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 5, f"{path}: a blank picture"


def referenced_images(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def markdown_table_after(markdown: str, heading: str) -> list[list[str]]:
    """Rows (cells) of the first Markdown table after the line starting with `heading`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # past the header and the separator


# --------------------------------------------------------------------------- House Prices

def test_house_report_plots_are_written_and_shown(house_run):
    folder = house_run / "report"
    markdown = (folder / "report.md").read_text()
    for name in HOUSE_PLOTS:
        assert_real_png(folder / name)
    assert sorted(referenced_images(markdown)) == sorted(HOUSE_PLOTS)
    run = json.loads((house_run / "run.json").read_text())
    assert f"CV rmse_log: **{run['cv']:.5f}**" in markdown
    # one learning-curve row per fold checkpoint, with the epochs each ran
    curves = markdown_table_after(markdown, "![learning curves")
    assert [row[0] for row in curves] == ["fold0 member0", "fold1 member0", "fold2 member0"]
    assert all(row[1] == "5" for row in curves)


def test_house_worst_residuals_match_oof(house_run):
    oof = pd.read_csv(house_run / "oof.csv")
    residual = np.log(np.clip(oof["oof_SalePrice"], 1.0, None)) - np.log(oof["SalePrice"])
    expected = oof["Id"].to_numpy()[np.argsort(-np.abs(residual.to_numpy()))[:house_report.WORST]]
    rows = markdown_table_after((house_run / "report" / "report.md").read_text(), "Largest residuals")
    assert [int(r[0]) for r in rows] == expected.tolist()
    assert float(rows[0][4]) == pytest.approx(residual[residual.abs().idxmax()], abs=1e-4)


def test_report_verb_rewrites_and_leaderboard_links_it(house_run, capsys):
    (house_run / "report" / "oof_residuals.png").unlink()
    capsys.readouterr()
    assert main(["report", "house-prices", "--run", "h"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {house_run / 'report' / 'report.md'}"
    assert_real_png(house_run / "report" / "oof_residuals.png")
    assert main(["leaderboard", "house-prices", "--markdown"]) == 0
    assert "| [h](runs/house-prices/h/report/report.md) |" in capsys.readouterr().out


def test_report_verb_unknown_run_is_a_user_error(project, capsys):
    assert main(["report", "house-prices", "--run", "nope"]) == 2
    assert "no finished run 'nope'" in capsys.readouterr().err


def test_no_history_says_so_instead_of_plotting(house_run, project):
    copy = project / "runs" / "house-prices" / "h-no-history"
    shutil.copytree(house_run, copy)
    for meta_path in copy.glob("fold*/member*/meta.json"):
        meta = json.loads(meta_path.read_text())
        meta["history"] = []
        meta_path.write_text(json.dumps(meta))
    path = report.write(copy)
    markdown = path.read_text()
    assert "No per-epoch history" in markdown
    assert not (copy / "report" / "learning_curves.png").exists()  # the copied stale plot is gone
    assert "learning_curves.png" not in markdown
    assert_real_png(copy / "report" / "oof_pred_vs_true.png")


def test_a_failing_report_does_not_lose_the_run(home, house_data, monkeypatch, capsys):
    def broken(run_dir):
        raise RuntimeError("disk full\nsecond line")

    monkeypatch.setattr(report, "write", broken)
    assert main(["train", "house-prices", "--config", "d2l-linear", "--data", str(house_data), "--name", "x",
                 "--device", "cpu", "--quiet", "--set", "epochs=1", "--set", "folds=2"]) == 0
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if line.startswith("warning: run report not written")]
    assert len(warning) == 1 and "disk full second line" in warning[0]
    assert "CV rmse_log" in captured.out
    assert (home / "runs" / "house-prices" / "x" / "run.json").exists()
    assert [row["run"] for row in leaderboard.read()] == ["x"]


# --------------------------------------------------------------------------- Dogs vs. Cats

def test_dogs_report_plots_are_written_and_shown(dogs_run):
    folder = dogs_run / "report"
    markdown = (folder / "report.md").read_text()
    for name in DOGS_PLOTS:
        assert_real_png(folder / name)
    assert sorted(referenced_images(markdown)) == sorted(DOGS_PLOTS)
    assert "## Most confident mistakes" in markdown


def test_dogs_confusion_matrix_counts_match_oof(dogs_run):
    oof = pd.read_csv(dogs_run / "oof.csv")
    assert oof["oof_p_dog"].notna().all()
    predicted_dog = oof["oof_p_dog"] > 0.5
    expected = np.array([[int(((oof["label"] == t) & (predicted_dog == p)).sum()) for p in (False, True)]
                         for t in (0, 1)])
    # the check has power: swapped rows, swapped columns or a transposed matrix would not match
    for wrong in (expected[::-1], expected[:, ::-1], expected.T):
        assert not np.array_equal(wrong, expected)
    markdown = (dogs_run / "report" / "report.md").read_text()
    rows = markdown_table_after(markdown, "Confusion matrix")
    assert [r[0] for r in rows] == ["cat", "dog"]
    counts = np.array([[int(r[1]), int(r[2])] for r in rows])
    np.testing.assert_array_equal(counts, expected)
    total = sum(DOGS_COUNTS.values())
    assert counts.sum() == len(oof) == total
    np.testing.assert_array_equal(counts.sum(axis=1), list(DOGS_COUNTS.values()))
    run = json.loads((dogs_run / "run.json").read_text())
    assert np.trace(counts) / total == pytest.approx(run["accuracy"])


def test_dogs_mistakes_and_calibration_tables_match_oof(dogs_run):
    oof = pd.read_csv(dogs_run / "oof.csv")
    markdown = (dogs_run / "report" / "report.md").read_text()
    p, label = oof["oof_p_dog"].to_numpy(), oof["label"].to_numpy()
    wrong = (p > 0.5).astype(int) != label
    rows = markdown_table_after(markdown, "![most confident mistakes]")
    assert len(rows) == min(dogs_report.MISTAKES, int(wrong.sum()))
    by_key = dict(zip(oof["key"], zip(p, label)))
    confidence = [abs(by_key[r[0]][0] - 0.5) for r in rows]
    assert all(((by_key[r[0]][0] > 0.5) != bool(by_key[r[0]][1])) for r in rows)  # each one is a mistake
    assert confidence == sorted(confidence, reverse=True)
    assert confidence[0] == pytest.approx(np.abs(p[wrong] - 0.5).max())
    calibration = markdown_table_after(markdown, "Expected calibration error")
    assert len(calibration) == dogs_report.CALIBRATION_BINS and sum(int(r[1]) for r in calibration) == len(oof)


def test_dogs_grid_is_skipped_with_a_note_without_the_image_cache(dogs_run, project, capsys):
    cache = project / "data" / "dogs-vs-cats" / "cache" / "16" / "train"
    aside = cache.with_name("train-aside")
    cache.rename(aside)
    try:
        assert main(["report", "dogs-vs-cats", "--run", "d"]) == 0
    finally:
        aside.rename(cache)
    markdown = (dogs_run / "report" / "report.md").read_text()
    assert "Thumbnail grid skipped: no decoded image cache" in markdown
    assert not (dogs_run / "report" / "confident_mistakes.png").exists()
    assert sorted(referenced_images(markdown)) == sorted(set(DOGS_PLOTS) - {"confident_mistakes.png"})
    assert len(markdown_table_after(markdown, "## Most confident mistakes")) > 0  # the table stays
