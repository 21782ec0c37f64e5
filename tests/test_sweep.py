"""`sweep`: an Optuna search whose trials are real runs; pruning on per-fold scores; a killed
sweep resumes; two processes share one SQLite study; the best trial is re-run on other fold
seeds with the runner-up; bad search specs are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from pipelines import sweep
from pipelines.cli import main
from pipelines.errors import UserError
from tabular_data import layout

ROOT = Path(__file__).resolve().parent.parent
LASSO = ["--config", "lasso", "--set", "comps=0", "--set", "folds=3"]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def study(home: Path, competition: str, name: str):
    url = f"sqlite:///{home / 'runs' / competition / 'sweeps' / name / 'study.db'}"
    return optuna.load_study(study_name=name, storage=url)


def _cli(home: Path, *argv, env: dict | None = None, wait: bool = True):
    environment = {**os.environ, "PIPELINES_HOME": str(home), "PIPELINES_QUIET": "1", "OMP_NUM_THREADS": "1",
                   "PYTHONPATH": str(ROOT), **(env or {})}
    command = [sys.executable, "-m", "pipelines", *map(str, argv)]
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600)


# --------------------------------------------------------------------------- the search space

def test_search_dimensions_parse():
    lr, hidden, epochs, flag = sweep.parse_search(["lr=1e-4:1e-2:log", "hidden=[[64], [128, 64]]", "epochs=20:200",
                                                   "skip_linear=[true, false]"])
    assert (lr.kind, lr.low, lr.high, lr.log) == ("float", 1e-4, 1e-2, True)
    assert hidden.kind == "categorical" and hidden.choices == ([64], [128, 64])
    assert (epochs.kind, epochs.low, epochs.high, epochs.log) == ("int", 20, 200, False)
    assert flag.choices == (True, False)
    trial = optuna.trial.FixedTrial({"lr": 1e-3, "hidden": json.dumps([128, 64]), "epochs": 50,
                                     "skip_linear": json.dumps(False)})
    assert [d.suggest(trial) for d in (lr, hidden, epochs, flag)] == [1e-3, [128, 64], 50, False]


def test_a_space_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("lr: 1e-4:1e-2:log\ndropout: [0.1, 0.3, 0.5]\n")
    lr, dropout = sweep.load_space(path)
    assert lr.log and dropout.choices == (0.1, 0.3, 0.5)


@pytest.mark.parametrize("argv, message", [
    (["--search", "lr=0.1"], "expected LOW:HIGH, LOW:HIGH:log or a list"),
    (["--search", "lr=0:1:log"], "a log range needs a low end above 0"),
    (["--search", "lr=0.1:0.01"], "the low end 0.1 must be below the high end 0.01"),
    (["--search", "lr=a:b"], "'a' is not a number"),
    (["--search", "hidden=[[64]]"], "needs at least two values"),
    (["--search", "alpha=1e-4:1e-2", "--search", "alpha=[1, 2]"], "alpha is searched twice"),
    (["--search", "alpha=1e-4:1e-2", "--set", "alpha=0.1"], "alpha is both searched (--search) and fixed (--set)"),
    (["--search", "seed=1:9"], "seed is not a search dimension"),
    ([], "nothing to search"),
    (["--search", "alpha=1e-4:1e-2", "--trials", "0"], "--trials must be at least 1"),
    (["--search", "alpha=1e-4:1e-2", "--rerun-seeds", "seven"], "--rerun-seeds 'seven'"),
    (["--space", "no/such/space.yaml"], "search space file no/such/space.yaml not found"),
])
def test_bad_search_is_one_line(home, capsys, argv, message):
    code, _, err = run(capsys, "sweep", "house-prices", "--config", "lasso", *argv)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (home / "runs").exists() or not list((home / "runs").rglob("study.db"))


def test_a_key_outside_the_family_fails_the_sweep_in_one_line(home, house_data, capsys):
    code, _, err = run(capsys, "sweep", "house-prices", *LASSO, "--search", "num_leaves=4:16", "--trials", "3",
                       "--data", house_data)
    assert code == 2 and "key 'num_leaves' does not apply to model: lasso" in err
    assert "sweep lasso-sweep: no trial finished (0 pruned, 1 failed)" in err   # stopped after the first


# --------------------------------------------------------------------------- a sweep

def test_a_sweep_trains_real_runs_prunes_and_picks_honestly(home, house_data, capsys, monkeypatch):
    monkeypatch.setattr(sweep, "PRUNE_STARTUP", 2)     # prune early enough for a small sweep
    monkeypatch.setattr(sweep, "PRUNE_PERCENTILE", 50.0)
    code, out, err = run(capsys, "sweep", "house-prices", *LASSO, "--search", "alpha=1e-5:3:log", "--trials", "8",
                         "--seed", "0", "--rerun-seeds", "7", "--data", house_data, "--name", "s")
    assert code == 0, err
    trials = study(home, "house-prices", "s").get_trials()
    states = [t.state for t in trials]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert len(complete) + len(pruned) == 8 and pruned, states
    for t in complete:   # every completed trial is a recorded run with its values in its config
        saved = json.loads((home / "runs" / "house-prices" / t.user_attrs["run"] / "run.json").read_text())
        assert saved["config_values"]["alpha"] == pytest.approx(t.params["alpha"]) and saved["cv"] == t.value
        assert saved["config_values"]["folds"] == 3 and saved["config_values"]["comps"] == 0
    for t in pruned:     # stopped after its second fold, its finished folds kept for a resume
        folder = home / "runs" / "house-prices" / t.user_attrs["run"]
        assert not (folder / "run.json").exists() and len(list(folder.glob("fold*/predictions.safetensors"))) == 2
        assert f"pruned after 2 of 3 folds" in out
    registry = [json.loads(line) for line in (home / "runs" / "registry.jsonl").read_text().splitlines()]
    assert {r["run"] for r in registry if "kind" not in r} >= {t.user_attrs["run"] for t in complete}

    summary = json.loads((home / "runs" / "house-prices" / "sweeps" / "s" / "sweep.json").read_text())
    best = min(complete, key=lambda t: t.value)
    runner = sorted(complete, key=lambda t: t.value)[1]
    assert summary["winner"] == best.user_attrs["run"] and summary["winner_cv"] == best.value
    assert summary["runner_up"] == runner.user_attrs["run"]
    assert summary["trials"]["pruned"] == len(pruned) and summary["rerun_seeds"] == [7]
    rerun = json.loads((home / "runs" / "house-prices" / f"{summary['winner']}-seed7" / "run.json").read_text())
    assert rerun["config_values"]["seed"] == 7 and rerun["config_values"]["alpha"] == pytest.approx(best.params["alpha"])
    assert summary["rerun_cvs"] == [rerun["cv"]] and summary["rerun_mean"] == rerun["cv"]
    folds7 = pd.read_csv(home / "runs" / "house-prices" / f"{summary['winner']}-seed7" / "folds.csv")
    folds42 = pd.read_csv(home / "runs" / "house-prices" / summary["winner"] / "folds.csv")
    assert (folds7["fold"] != folds42["fold"]).any()   # other folds, the point of the re-run
    assert len(summary["runner_up_rerun_cvs"]) == 1
    assert "re-run on fold seeds 7" in out and ("the winner holds" in out or "WARNING" in out)
    assert sweep.winner_holds(summary) == (summary["rerun_mean"] <= summary["runner_up_rerun_mean"])

    # the same command again: the study is finished, nothing is trained again
    code, out, err = run(capsys, "sweep", "house-prices", *LASSO, "--search", "alpha=1e-5:3:log", "--trials", "8",
                         "--seed", "0", "--rerun-seeds", "7", "--data", house_data, "--name", "s")
    assert code == 0 and "trial   " not in out and len(study(home, "house-prices", "s").get_trials()) == len(trials)
    # another search under the same name is refused
    code, _, err = run(capsys, "sweep", "house-prices", *LASSO, "--search", "alpha=1e-3:1:log", "--trials", "8",
                       "--data", house_data, "--name", "s")
    assert code == 2 and "was started with other settings (space" in err


def test_a_spec_competition_sweeps(home, tmp_path, capsys):
    laid = layout("penguins", tmp_path / "penguins")
    code, out, err = run(capsys, "sweep", laid.spec_path, "--config", "linear", "--search", "alpha=0.01:100:log",
                         "--trials", "3", "--rerun-seeds", "none", "--data", laid.folder, "--seed", "1")
    assert code == 0, err
    summary = json.loads((home / "runs" / "penguins" / "sweeps" / "linear-sweep" / "sweep.json").read_text())
    assert summary["metric"] == "logloss" and summary["rerun_cvs"] == [] and summary["trials"]["complete"] >= 2
    assert "no re-runs" in out


def test_a_trial_that_drew_the_winners_values_is_not_its_runner_up(home, tmp_path, capsys):
    """Two trials drew num_leaves=4 (one run); the runner-up is the best trial with other values, and the
    compare hint names two different runs."""
    laid = layout("penguins", tmp_path / "penguins")
    code, out, err = run(capsys, "sweep", laid.spec_path, "--config", "lightgbm", "--search", "num_leaves=[4, 4, 8]",
                         "--trials", "4", "--rerun-seeds", "none", "--data", laid.folder, "--seed", "0",
                         "--set", "n_estimators=20")
    assert code == 0, err
    summary = json.loads((home / "runs" / "penguins" / "sweeps" / "lightgbm-sweep" / "sweep.json").read_text())
    assert summary["runner_up"] != summary["winner"]
    (hint,) = [line for line in out.splitlines() if line.startswith("next:")]
    assert len(set(hint.split()[-2:])) == 2 or summary["runner_up"] is None, hint


# --------------------------------------------------------------------------- resume and workers

MLP = ["--config", "mlp", "--set", "folds=2", "--set", "epochs=3", "--set", "hidden=[8]", "--set", "drop_outliers=false"]


def test_a_killed_sweep_resumes_its_running_trial(home, house_data):
    argv = ["sweep", "house-prices", *MLP, "--search", "lr=1e-3:1e-2:log", "--trials", "2", "--seed", "3",
            "--rerun-seeds", "none", "--data", house_data, "--name", "k"]
    killed = _cli(home, *argv, env={"PIPELINES_TEST_KILL_AT": "fold=1,epoch=2,step=1"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    (orphan,) = study(home, "house-prices", "k").get_trials()
    assert orphan.state == optuna.trial.TrialState.RUNNING
    folder = home / "runs" / "house-prices" / orphan.user_attrs["run"]
    assert (folder / "fold0" / "predictions.safetensors").exists() and not (folder / "run.json").exists()

    done = _cli(home, *argv)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 trial(s) left running by a stopped process are tried again" in done.stdout
    trials = study(home, "house-prices", "k").get_trials()
    retried = [t for t in trials if t.user_attrs.get("retry_of") == orphan.number]
    assert len(retried) == 1 and retried[0].params == orphan.params
    assert retried[0].state == optuna.trial.TrialState.COMPLETE and retried[0].user_attrs["run"] == folder.name
    saved = json.loads((folder / "run.json").read_text())
    assert 0 in saved["resumed_folds"]   # fold 0 was kept from the killed attempt (fold 1 resumed mid-way)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 2


def test_two_processes_share_one_sqlite_study(home, house_data):
    argv = ["sweep", "house-prices", *LASSO, "--search", "alpha=1e-4:1e-1:log", "--trials", "6",
            "--rerun-seeds", "none", "--data", house_data, "--name", "shared"]
    first = _cli(home, *argv, "--seed", "1", wait=False)
    second = _cli(home, *argv, "--seed", "2", wait=False)
    outputs = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, [o[1][-1500:] for o in outputs]
    trials = study(home, "house-prices", "shared").get_trials()
    finished = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert 6 <= len(finished) <= 7   # the last trial each process started may both finish
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    # both processes trained trials: each printed at least one of its own
    assert all("trial " in out for out, _ in outputs)
    for t in finished:
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert (home / "runs" / "house-prices" / t.user_attrs["run"] / "run.json").exists()


def test_dogs_vs_cats_sweeps_a_cheap_config(home, dogs_data, capsys):
    code, out, err = run(capsys, "sweep", "dogs-vs-cats", "--config", "lenet-modern", "--set", "folds=2",
                         "--set", "epochs=1", "--set", "batch_size=16", "--search", "lr=1e-3:1e-2:log",
                         "--trials", "2", "--rerun-seeds", "7", "--data", dogs_data, "--device", "cpu", "--seed", "0")
    assert code == 0, err
    summary = json.loads((home / "runs" / "dogs-vs-cats" / "sweeps" / "lenet-modern-sweep" / "sweep.json").read_text())
    assert summary["metric"] == "log_loss" and not summary["greater_is_better"]
    assert summary["trials"]["complete"] == 2 and len(summary["rerun_cvs"]) == 1
    assert (home / "runs" / "dogs-vs-cats" / f"{summary['winner']}-seed7" / "run.json").exists()
