"""`compare` (runs side by side: config differences, CV and per-fold scores, the fold-by-fold pairing
with the first run, a PNG) and `--run best` (runs.resolve_run: the best CV with test predictions,
for submit, predict, report and compare), on real runs of House Prices and a multiclass spec
competition, and on runs written by hand (Dogs vs. Cats, other folds, higher-is-better metrics)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from iteration_runs import HOUSE, trained, copy_home, run_record, toy_run, train_runs
from pipelines import blending as blend, competition, compare, runs, specs
from pipelines.cli import main
from pipelines.errors import UserError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.usefixtures("own_registry")


@pytest.fixture
def real(trained, home):
    return copy_home(trained, home)


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- compare

def test_compare_two_trained_runs(real, capsys):
    code, out, err = cli(capsys, "compare", HOUSE, "a", "b")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "compare house-prices: a, b (rmse_log, lower is better)"
    # (a) only the key the runs differ on: alpha (folds=3 and comps=0 are the same in both)
    start = lines.index("config values that differ (-: the run has no such key):")
    assert lines[start + 1].split() == ["key", "a", "b"]
    assert lines[start + 2].split() == ["alpha", "0.0005", "0.001"]
    assert lines[start + 3] == ""
    # (b) each run's CV and its per-fold scores, as run.json and metrics.json say
    a, b = run_record(real / "runs" / HOUSE / "a"), run_record(real / "runs" / HOUSE / "b")
    row_a = next(line.split() for line in lines if line.split()[:2] == ["a", "lasso"])
    assert row_a[2] == f"{a['cv']:.5f}" and row_a[4:] == [f"{s:.5f}" for s in a["fold_scores"]]
    # (c) the same folds.csv: paired with a, direction-aware
    diff = np.array(b["fold_scores"]) - np.array(a["fold_scores"])
    assert "paired with a, fold by fold (same folds.csv; difference = run - a, lower is better):" in lines
    row_b = next(line.split() for line in lines if line.split()[:2] == ["b", "3"])
    assert row_b[2] == f"{diff.mean():+.5f}"
    assert [int(x) for x in row_b[4:7]] == [int((diff < 0).sum()), int((diff > 0).sum()), int((diff == 0).sum())]
    # (d) the PNG
    png = real / "runs" / HOUSE / "compare" / "a-vs-b.png"
    assert lines[-1] == f"plot: {png}" and png.read_bytes()[:8] == PNG_MAGIC


def test_compare_a_spec_competition_with_best_and_a_blend(real, trained, capsys):
    spec = trained["penguins"].spec_path
    code, out, err = cli(capsys, "compare", spec, "p1", "best")
    assert code == 0, err
    p1, p2 = run_record(real / "runs" / "penguins" / "p1"), run_record(real / "runs" / "penguins" / "p2")
    best = "p2" if p2["cv"] < p1["cv"] else "p1"
    assert best == "p2"  # alpha=0.1 fits these 84 penguins better than the default 1.0
    assert out.startswith(f"--run best: p2 (CV logloss {p2['cv']:.5f}, config linear; the best of 2 finished run(s) ")
    assert "compare penguins: p1, p2 (logloss, lower is better)" in out
    assert any(line.split() == ["alpha", "1", "0.1"] for line in out.splitlines())
    assert "paired with p1" in out
    # a blend is a run: it shares its members' folds, so it pairs with them
    blend.blend("penguins", ["p1", "p2"], "mean", "bl")
    code, out, err = cli(capsys, "compare", spec, "bl", "p1", "p2")
    assert code == 0, err
    assert "paired with bl" in out
    assert ["config", "blend-mean", "linear", "linear"] in [line.split() for line in out.splitlines()]
    assert (real / "runs" / "penguins" / "compare" / "bl-vs-p1-vs-p2.png").exists()


def test_compare_when_folds_differ_and_greater_is_better(home, capsys):
    toy_run(HOUSE, "x", [0.80, 0.70, 0.90], greater_is_better=True, metric="auc", lr=0.01)
    toy_run(HOUSE, "y", [0.85, 0.75, 0.84], greater_is_better=True, metric="auc", lr=0.02, hidden=[128, 64])
    code, out, err = cli(capsys, "compare", HOUSE, "x", "y")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "compare house-prices: x, y (auc, higher is better)"
    assert ["hidden", "[64]", "[128,64]"] in [line.split() for line in lines]
    assert ["lr", "0.01", "0.02"] in [line.split() for line in lines]
    row = next(line.split() for line in lines if line.split()[:2] == ["y", "3"])
    assert row == ["y", "3", "+0.01333", "0.05185", "2", "1", "0"]  # y wins folds 0 and 1 (higher), loses fold 2

    toy_run(HOUSE, "z", [0.82, 0.71, 0.88], greater_is_better=True, metric="auc", lr=0.01,
            fold_of_row=(np.arange(12) + 1) % 3)
    code, out, err = cli(capsys, "compare", HOUSE, "x", "z")
    assert code == 0, err
    assert "config values: the same in every run" in out
    [line] = [line for line in out.splitlines() if line.startswith("folds differ")]
    assert line == ("folds differ (z's folds.csv assigns rows to folds differently from x's): no fold-by-fold "
                    "pairing; their CVs compare only roughly")
    assert "paired with" not in out
    assert (home / "runs" / HOUSE / "compare" / "x-vs-z.png").read_bytes()[:8] == PNG_MAGIC


def test_compare_dogs_vs_cats_runs(home, capsys):
    toy_run("dogs-vs-cats", "cnn", [0.30, 0.28, 0.35], metric="log_loss", config="cnn-small")
    toy_run("dogs-vs-cats", "probe", [0.04, 0.05, 0.03], metric="log_loss", config="effnet-lite0-probe")
    code, out, err = cli(capsys, "compare", "dogs-vs-cats", "cnn", "probe")
    assert code == 0, err
    assert ["config", "cnn-small", "effnet-lite0-probe"] in [line.split() for line in out.splitlines()]
    row = next(line.split() for line in out.splitlines() if line.split()[:2] == ["probe", "3"])
    assert row[2] == "-0.27000" and row[4:] == ["3", "0", "0"]  # lower log loss wins every fold


@pytest.mark.parametrize("argv, message", [
    (["a"], "compare needs at least 2 runs of house-prices, got 1"),
    (["a", "nope"], "no finished run 'nope' for house-prices"),
    (["a", "a"], "run a (a) is named twice"),
])
def test_compare_refuses_bad_runs(home, capsys, argv, message):
    toy_run(HOUSE, "a", [0.1, 0.2, 0.3])
    code, out, err = cli(capsys, "compare", HOUSE, *argv)
    assert code == 2 and err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1


def test_compare_refuses_a_run_of_another_competition(home, capsys):
    toy_run(HOUSE, "a", [0.1, 0.2, 0.3])
    other = toy_run("dogs-vs-cats", "d", [0.1, 0.2, 0.3], metric="log_loss")
    code, out, err = cli(capsys, "compare", HOUSE, "a", other)
    assert code == 2 and err.strip() == f"error: run {other} ({other}) is a dogs-vs-cats run, not house-prices"


# --------------------------------------------------------------------------- --run best

def test_best_is_the_best_cv_with_test_predictions(home, capsys):
    toy_run(HOUSE, "good", [0.12, 0.12, 0.12])
    toy_run(HOUSE, "better-no-test", [0.10, 0.10, 0.10], test=False)        # nothing to submit
    toy_run(HOUSE, "one-fold", [0.05], planned_folds=5)                      # one fold of five: not a CV
    toy_run(HOUSE, "blend-mean-1", [0.11, 0.11, 0.11], config="blend-mean")  # blends count
    assert runs.resolve_run(HOUSE, "best") == "blend-mean-1"
    assert capsys.readouterr().out.startswith("--run best: blend-mean-1 (CV rmse_log 0.11000, config blend-mean; "
                                              "the best of 2 finished run(s) with test predictions")
    assert runs.resolve_run(HOUSE, "good") == "good"  # any other name is passed through


def test_best_is_direction_aware(home, capsys):
    toy_run("churn", "low", [0.70, 0.70, 0.70], metric="auc", greater_is_better=True)
    toy_run("churn", "high", [0.90, 0.90, 0.90], metric="auc", greater_is_better=True)
    assert runs.resolve_run("churn", "best", quiet=True) == "high"


def test_a_run_named_best_comes_first(home, capsys):
    toy_run(HOUSE, "best", [0.30, 0.30, 0.30])
    toy_run(HOUSE, "really-best", [0.10, 0.10, 0.10])
    assert runs.resolve_run(HOUSE, "best") == "best"
    assert "a run is named 'best'; using it" in capsys.readouterr().out


def test_best_without_candidates_is_one_line(home, capsys):
    toy_run(HOUSE, "no-test", [0.1, 0.1, 0.1], test=False)
    code, out, err = cli(capsys, "submit", HOUSE, "--run", "best")
    assert code == 2 and err.startswith("error: --run best: no finished run of house-prices in ")
    assert "has test predictions (test_predictions.csv)" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(UserError, match="--run best: no finished run"):
        compare.load_runs(HOUSE, ["no-test", "best"])


def test_submit_predict_and_report_take_best(real, trained, house_data, capsys):
    a, b = (run_record(real / "runs" / HOUSE / name) for name in ("a", "b"))
    best = "a" if a["cv"] <= b["cv"] else "b"
    code, out, err = cli(capsys, "submit", HOUSE, "--run", "best")
    assert code == 0, err
    assert out.startswith(f"--run best: {best} (CV rmse_log ")
    submitted = real / "submissions" / HOUSE / f"{best}.csv"
    assert submitted.exists() and not (real / "submissions" / HOUSE / "best.csv").exists()
    code, out, err = cli(capsys, "report", HOUSE, "--run", "best")
    assert code == 0 and f"wrote {real / 'runs' / HOUSE / best / 'report' / 'report.md'}" in out
    penguins = trained["penguins"]
    code, out, err = cli(capsys, "predict", penguins.spec_path, "--run", "best", "--test",
                         penguins.folder / "test.csv", "--out", real / "p.csv", "--device", "cpu")
    assert code == 0, err
    assert out.startswith("--run best: p2 ") and len(pd.read_csv(real / "p.csv")) == penguins.test_rows


def test_make_submit_passes_run_best_through():
    """`make submit RUN=best` is `submit C --run best` (dry run: make prints the command)."""
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("make") is None:
        pytest.skip("no make")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(["make", "-n", "-o", "setup", "-o", ".venv/.installed", "submit", "COMP=house-prices",
                           "RUN=best"], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "-m pipelines submit house-prices --run best" in done.stdout
