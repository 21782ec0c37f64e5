"""Presets (pipelines/presets.py): a portfolio trained within a time budget and blended; the
budget itself (pipelines/budget.py); early stopping on held-aside rows; the portfolios of the
tabular and image specs and of the built-ins."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

import pipelines as pl
from pipelines import api, budget, presets
from pipelines.cli import main
from pipelines.errors import UserError
from pipelines.presets import Member, Plan
from pipelines.tabular import models
from tabular_data import layout


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    return layout("penguins", tmp_path_factory.mktemp("presets") / "penguins")


@pytest.fixture
def cheap_plan(monkeypatch):
    """The spec's portfolio swapped for three quick members (the real one is tested below)."""
    from pipelines.tabular import presets as tabular_presets

    plan = Plan((Member("linear", "linear", {"folds": 3}),
                 Member("lightgbm", "lightgbm", {"folds": 3, "n_estimators": 400, "early_stopping": 20}),
                 Member("slow", "mlp", {"folds": 3, "epochs": 1_000_000})), method="weights")
    monkeypatch.setattr(tabular_presets, "portfolio", lambda spec, preset, data: plan)
    monkeypatch.setenv("PIPELINES_PRESET_WORKERS", "1")
    return plan


# --------------------------------------------------------------------------- the budget

def test_the_budget_stops_work_after_its_deadline_and_only_inside_its_block():
    budget.check()                         # no deadline: nothing happens
    assert budget.left() is None
    with budget.until(time.monotonic() + 60):
        budget.check()
        assert 59 < budget.left() <= 60
        with budget.until(time.monotonic() + 600):   # an inner, later deadline does not extend the outer one
            assert budget.left() <= 60
        with budget.until(time.monotonic() - 1):
            with pytest.raises(budget.OutOfTime):
                budget.check()
        budget.before_fold(1, [10.0])      # folds of 10 s with a minute left: go on
        with pytest.raises(budget.OutOfTime, match="took 90 s each"):
            budget.before_fold(1, [90.0])
    assert budget.left() is None


def test_a_network_stops_once_its_epochs_say_the_rest_will_not_fit():
    budget.before_epoch(3, 10, [5.0] * 3)                 # no deadline: nothing happens
    with budget.until(time.monotonic() + 10):
        budget.before_epoch(0, 10, [])                    # nothing to go by yet
        with budget.fold(folds_after=4):
            budget.before_epoch(1, 10, [30.0])            # a slow first epoch alone (a cold start) is no guide
        budget.before_epoch(6, 10, [1.0] * 6)             # 4 epochs of 1 s, 10 s left
        with budget.fold(folds_after=2):
            with pytest.raises(budget.OutOfTime, match="about 24 s of epochs to go"):
                budget.before_epoch(6, 10, [1.0] * 6)     # and two folds of 10 epochs after this one


class Clock:
    """budget.py's clock, moved by hand."""

    def __init__(self, now=1000.0, step=0.0):
        self.now, self.step = now, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_each_fold_gets_an_equal_share_of_the_time_left(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(budget.time, "monotonic", clock)
    assert not budget.share_spent()                        # no budget: never
    with budget.until(clock.now + 90):
        assert not budget.share_spent()                    # no fold: never
        with budget.fold(folds_after=2):                   # 90 s for 3 folds: 30 s for this one
            clock.now += 13
            assert not budget.share_spent(0.45) and not budget.share_spent()
            clock.now += 1
            assert budget.share_spent(0.45) and not budget.share_spent()
            clock.now += 16
            assert budget.share_spent()
        with budget.fold(folds_after=1):                   # 60 s left for 2 folds
            clock.now += 29
            assert not budget.share_spent()
            clock.now += 1
            assert budget.share_spent()
        with budget.boosting_until(clock.now + 20):        # a member's share: 20 of the 30 s left
            with budget.fold(folds_after=1):               # 10 s for this fold
                clock.now += 9
                assert not budget.share_spent()
                clock.now += 1
                assert budget.share_spent() and budget.left() == pytest.approx(20)   # the deadline holds as it was
        with budget.fold(folds_after=0), budget.watch_cuts() as cuts:   # 20 s left for the last fold
            clock.now += 5                                 # a library's import: the share counts from its first round
            assert not budget.share_spent(0.5, since=clock.now) and not cuts
            clock.now += 6                                 # 11 of 20 s: half its share since the fold began,
            assert not budget.share_spent(0.5, since=clock.now - 6) and budget.share_spent(0.5)   # not since its first round
            assert len(cuts) == 1                          # said, for the preset's repeats


@pytest.mark.parametrize("model", ["lightgbm", "catboost"])
@pytest.mark.parametrize("refit", [False, True])
def test_boosting_ends_at_its_share_of_the_time_and_keeps_its_trees(monkeypatch, model, refit):
    """A fold that cannot reach its rounds in time is not lost: its boosting ends at its share (the
    early-stopping fit at 45%, the refit at 90%) with the trees it has, and the model predicts."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = x[:, 0] * 2 + rng.normal(scale=0.1, size=400)
    problem = models.Problem("regression", 0)
    cfg = models.build_config({"model": model, "n_estimators": 100_000, "lr": 0.001, "early_stopping": 100_000,
                               "refit": refit}, "test")
    family = models.get(model)
    clock = Clock(step=0.01)                               # every look at the clock costs 10 ms
    monkeypatch.setattr(budget.time, "monotonic", clock)
    with budget.until(clock.now + 20), budget.fold(folds_after=0), budget.watch_cuts() as cuts:
        fitted, info = family.fit(cfg, problem, x, y, x, y, 0, "cpu", None, "fold 0", lambda p: {})
        assert budget.left() > 0                           # ended before the deadline, not at it
    assert cuts                                            # and it says it was cut short
    trees = fitted.num_trees() if model == "lightgbm" else fitted.model.tree_count_
    assert 0 < trees < 100_000
    prediction = family.predict(fitted, x, "cpu")
    assert np.corrcoef(prediction, y)[0, 1] > 0.5


def test_a_member_gets_its_share_of_the_time_left_with_the_members_after_it():
    slot = presets.Slot(deadline=160.0, after=5, workers=2)   # 5 more members on 2 processes
    assert slot.member_deadline(100.0) == pytest.approx(100.0 + 60.0 / 3.5)
    assert presets.Slot(160.0, after=0, workers=2).member_deadline(100.0) == 160.0   # the last: all that is left
    assert presets.Slot(160.0, after=3, workers=1).member_deadline(100.0) == 115.0
    assert presets.Slot(160.0, after=3, workers=1).member_deadline(170.0) == 170.0   # past the deadline: none


def test_process_started_is_not_in_the_future():
    assert budget.process_started() <= time.monotonic()


# --------------------------------------------------------------------------- early stopping

def test_early_stopping_holds_aside_part_of_the_training_rows_per_class():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20 + [3])
    fit, stop = models.stopping_split(y, models.Problem("multiclass", 4), 0.1, seed=1)
    assert len(np.intersect1d(fit, stop)) == 0 and len(fit) + len(stop) == len(y)
    assert [int(np.sum(y[stop] == c)) for c in range(4)] == [5, 3, 2, 0]   # the one-row class stays fitted
    again = models.stopping_split(y, models.Problem("multiclass", 4), 0.1, seed=1)
    assert np.array_equal(stop, again[1])
    _, other = models.stopping_split(y, models.Problem("multiclass", 4), 0.1, seed=2)
    assert not np.array_equal(stop, other)


@pytest.mark.parametrize("model", ["lightgbm", "catboost"])
def test_early_stopping_stops_before_the_ceiling_on_held_aside_rows(home, penguins, model):
    run = pl.train(penguins.spec_path, model, data=penguins.folder, name=f"es-{model}",
                   overrides={"folds": 2, "n_estimators": 3000, "lr": 0.3, "early_stopping": 10}, quiet=True)
    kept = [int(__import__("json").loads((run.folder / f"fold{k}" / "meta.json").read_text())["best_epoch"])
            for k in range(2)]
    assert all(0 < k < 3000 for k in kept), kept
    assert run.cv < 0.3


# --------------------------------------------------------------------------- the preset

def test_a_preset_trains_its_members_blends_them_and_submit_takes_the_blend(home, penguins, cheap_plan, capsys):
    code = main(["train", str(penguins.spec_path), "--data", str(penguins.folder), "--preset", "best",
                 "--time-limit", "40"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "linear: CV logloss" in out and "lightgbm: CV logloss" in out
    assert "slow: stopped after" in out and "out of time" in out          # what did not fit is said
    blend = pl.run("penguins", "preset-best")
    assert [m["run"] for m in blend.info["blend"]["members"]] == ["preset-best-linear", "preset-best-lightgbm"]
    assert blend.info["blend"]["method"] == "weights"
    for member in ("linear", "lightgbm"):
        assert pl.run("penguins", f"preset-best-{member}").cv > 0       # each member is a normal run
    board = pl.leaderboard("penguins")
    assert "preset-best-slow" not in set(board["run"])                    # the stopped one is not recorded
    assert main(["submit", "penguins", "--run", "best"]) == 0
    submission = pd.read_csv(home / "submissions" / "penguins" / f"{board['run'].iloc[0]}.csv")
    assert len(submission) == penguins.test_rows


@pytest.mark.parametrize("table, changes", [
    ("concrete", {"metric": "rmse"}), ("concrete", {"metric": "mae"}), ("computers", {"metric": "rmsle"}),
    ("churn", {"metric": "auc"}), ("churn", {"metric": "logloss"}),
    ("churn", {"metric": "accuracy", "submission": "label"}),
    ("penguins", {"metric": "accuracy", "submission": "label"}), ("hpc", {"metric": "logloss"}),
])
def test_every_task_and_metric_gets_a_blend_and_a_submission(home, tmp_path, monkeypatch, table, changes):
    from pipelines.tabular import presets as tabular_presets

    plan = Plan((Member("linear", "linear", {"folds": 3}),
                 Member("lightgbm", "lightgbm", {"folds": 3, "n_estimators": 100})))
    monkeypatch.setattr(tabular_presets, "portfolio", lambda spec, preset, data: plan)
    monkeypatch.setenv("PIPELINES_PRESET_WORKERS", "1")
    laid = layout(table, tmp_path / table, rows=400, spec_changes=changes)
    blend = pl.train(laid.spec_path, preset="best", time_limit=300, data=laid.folder, quiet=True)
    assert blend.name == "preset-best" and blend.metric == changes["metric"]
    assert len(blend.info["blend"]["members"]) == 2
    submission = pd.read_csv(pl.submit(laid.spec["name"], "preset-best"))
    assert len(submission) == laid.test_rows


def test_time_to_spare_trains_the_weighed_members_again_on_new_folds_and_blends_their_averages(
        home, tmp_path, monkeypatch, capsys):
    from pipelines.tabular import presets as tabular_presets

    plan = Plan((Member("linear", "linear", {"folds": 3}),
                 Member("lightgbm", "lightgbm", {"folds": 3, "n_estimators": 50})), rounds=3)
    monkeypatch.setattr(tabular_presets, "portfolio", lambda spec, preset, data: plan)
    monkeypatch.setenv("PIPELINES_PRESET_WORKERS", "1")
    laid = layout("churn", tmp_path / "churn", rows=400)
    result = pl.train(laid.spec_path, preset="best", time_limit=300, data=laid.folder)
    out = capsys.readouterr().out
    first = pl.run("churn", "preset-best-r1")                             # the first round's blend
    weighed = [row["run"].removeprefix("preset-best-") for row in first.info["blend"]["members"] if row["weight"] > 0]
    assert weighed and "round 2, seed 2 (new folds)" in out and "round 3, seed 3 (new folds)" in out
    assert result.name == "preset-best" and result.info["blend"]["method"] == "weights"
    blended = [row["run"] for row in result.info["blend"]["members"]]
    assert blended == [f"preset-best-{m}-bag" if m in weighed else f"preset-best-{m}" for m in ("linear", "lightgbm")]
    bag = pl.run("churn", f"preset-best-{weighed[0]}-bag")
    assert bag.info["blend"]["method"] == "mean"
    assert [row["run"] for row in bag.info["blend"]["members"]] == [
        f"preset-best-{weighed[0]}", f"preset-best-r2-{weighed[0]}", f"preset-best-r3-{weighed[0]}"]
    folds = [pd.read_csv(pl.run("churn", row["run"]).folder / "folds.csv")["fold"].to_numpy()
             for row in bag.info["blend"]["members"]]
    assert (folds[0] != folds[1]).any() and (folds[1] != folds[2]).any()  # other fold assignments
    submitted = pd.read_csv(pl.submit("churn", "preset-best"))
    predicted = pd.read_csv(pl.predict("churn", "preset-best", laid.folder / "test.csv", tmp_path / "p.csv"))
    assert len(submitted) == laid.test_rows
    assert predicted.iloc[:, 1].to_numpy() == pytest.approx(submitted.iloc[:, 1].to_numpy(), abs=1e-6)

    original = api.preset_member                                          # a repeat whose boosting the time cut short
    monkeypatch.setattr(api, "preset_member", lambda *a, **k: {**(o := original(*a, **k)), "cut": "-r3-" in o["run"]})
    pl.train(laid.spec_path, preset="best", time_limit=300, data=laid.folder, name="cut")
    assert "left out of the averages, their boosting cut short by the time" in capsys.readouterr().out
    bagged = [row["run"] for row in pl.run("churn", f"cut-{weighed[0]}-bag").info["blend"]["members"]]
    assert bagged == [f"cut-{weighed[0]}", f"cut-r2-{weighed[0]}"]
    monkeypatch.setattr(api, "preset_member", original)

    monkeypatch.setattr(presets, "ROUND_MARGIN", 1e9)                     # nothing fits again: one blend, as before
    alone = pl.train(laid.spec_path, preset="best", time_limit=300, data=laid.folder, name="once")
    assert [m["run"] for m in alone.info["blend"]["members"]] == ["once-linear", "once-lightgbm"]
    assert "round 2" not in capsys.readouterr().out


def test_the_budget_is_the_whole_commands(home, penguins, cheap_plan, capsys):
    """A command that began long ago has no time left: nothing is trained, and it says so."""
    with pytest.raises(UserError, match="no member finished within --time-limit 20"):
        pl.train(penguins.spec_path, preset="best", time_limit=20, data=penguins.folder,
                 started=time.monotonic() - 30)
    assert "skipped, no time left" in capsys.readouterr().out


def test_a_data_error_that_stops_every_member_is_said_as_itself_not_as_time(home, penguins, cheap_plan, tmp_path):
    """Every member failing on the same bad row is that row's one line, not a hint to give more time."""
    import shutil

    folder = tmp_path / "bad"
    shutil.copytree(penguins.folder, folder)
    train = pd.read_csv(folder / "train.csv", dtype=str)
    train.iloc[3, 0] = train.iloc[1, 0]
    train.to_csv(folder / "train.csv", index=False)
    with pytest.raises(UserError) as error:
        pl.train(penguins.spec_path, preset="best", time_limit=60, data=folder)
    assert "appears twice" in str(error.value) and "more time" not in str(error.value)


def test_a_preset_in_parallel_processes_gives_the_same_members(home, penguins, cheap_plan, monkeypatch):
    plan = Plan(cheap_plan.members[:2])
    from pipelines.tabular import presets as tabular_presets

    monkeypatch.setattr(tabular_presets, "portfolio", lambda spec, preset, data: plan)
    alone = pl.train(penguins.spec_path, preset="fast", time_limit=120, data=penguins.folder, name="one")
    monkeypatch.setenv("PIPELINES_PRESET_WORKERS", "2")
    together = pl.train(penguins.spec_path, preset="fast", time_limit=120, data=penguins.folder, name="two")
    assert together.cv == pytest.approx(alone.cv, abs=1e-9)
    for member in ("linear", "lightgbm"):
        assert pl.run("penguins", f"two-{member}").cv == pl.run("penguins", f"one-{member}").cv


def test_the_real_tabular_portfolio_within_a_short_budget(home, penguins, capsys, monkeypatch):
    monkeypatch.setenv("PIPELINES_PRESET_WORKERS", "1")
    started = time.monotonic()
    code = main(["train", str(penguins.spec_path), "--data", str(penguins.folder), "--preset", "fast",
                 "--time-limit", "30"], started=started)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "--preset fast on penguins" in out
    finished = [line for line in out.splitlines() if line.startswith("  ") and ": CV logloss" in line]
    assert finished, out
    assert main(["submit", "penguins", "--run", "best"]) == 0


@pytest.mark.parametrize("argv, words", [
    (["--preset", "best", "--config", "linear"], "leave out --config and --set"),
    (["--preset", "best", "--set", "folds=3"], "leave out --config and --set"),
    (["--time-limit", "60"], "--time-limit goes with --preset"),
    (["--preset", "best", "--time-limit", "3"], "give at least 10 seconds"),
    (["--preset", "best", "--folds", "0"], "trains every fold"),
])
def test_preset_arguments_that_do_not_go_together_are_one_line(home, penguins, argv, words, capsys):
    assert main(["train", str(penguins.spec_path), "--data", str(penguins.folder), *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- portfolios

def test_the_built_ins_portfolios():
    best = pl.load("house-prices").portfolio("best", None)
    assert [m.config for m in best.members] == ["lasso", "gbm", "catboost", "tabm"] and best.method == "mean"
    assert [m.config for m in pl.load("dogs-vs-cats").portfolio("best", None).members] == ["effnet-lite2-int8"]
    assert [m.config for m in pl.load("dogs-vs-cats").portfolio("fast", None).members] == ["effnet-lite0-fast"]


def test_the_tabular_portfolio_runs_cheap_members_first(penguins):
    plan = pl.load(str(penguins.spec_path)).portfolio("best", penguins.folder)
    names = [m.name for m in plan.members]
    assert names[0] == "linear" and len(names) == len(set(names)) >= 3
    fast = pl.load(str(penguins.spec_path)).portfolio("fast", penguins.folder)
    assert set(m.name for m in fast.members) < set(names)


@pytest.mark.parametrize("side, config", [(8, "cnn"), (32, "cnn"), (96, "effnet-lite2-int8")])
def test_the_image_preset_follows_the_images_size(tmp_path, side, config):
    from PIL import Image

    from pipelines.images.presets import portfolio
    from pipelines.images.spec import load

    folder = tmp_path / "data"
    (folder / "train").mkdir(parents=True)
    (folder / "test").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (side, side + 4, 3), dtype=np.uint8)).save(folder / "train" / f"{i}.png")
    pd.DataFrame({"id": range(6), "label": ["a", "b"] * 3}).to_csv(folder / "train.csv", index=False)
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text("name: tiny\nkind: images\nid: id\ntarget: label\ntask: binary\nmetric: logloss\n"
                         "submission: probability\nlabels: train.csv\ntrain_images: train\ntest_images: test\n")
    plan = portfolio(load(spec_path), "best", folder)
    assert [m.config for m in plan.members] == [config] and f"{side} px" in plan.note
