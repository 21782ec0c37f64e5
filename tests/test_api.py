"""The Python API (pipelines/api.py): the verbs as typed functions that return runs and paths, the
layer the command line goes through, leaving no global state behind."""

from __future__ import annotations

import argparse
import os

import pandas as pd
import pytest
import torch

import pipelines as pl
from pipelines import api
from pipelines.cli import build_parser, main
from pipelines.errors import UserError
from pipelines.tabular import spec as specs
from tabular_data import held_out_score, layout


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    return layout("penguins", tmp_path_factory.mktemp("api") / "penguins")


def test_a_notebook_trains_blends_predicts_and_submits(home, penguins):
    first = pl.train(penguins.spec_path, "linear", data=penguins.folder, name="lin", overrides={"folds": 3})
    assert isinstance(first, pl.Run) and first.name == "lin" and first.folder == home / "runs" / "penguins" / "lin"
    assert first.metric == "logloss" and 0 < first.cv < 0.5 and len(first.fold_scores) == 3
    assert len(first.oof) == penguins.train_rows and len(first.test_predictions) == penguins.test_rows
    assert "CV logloss" in repr(first)
    # from here on the competition's name alone, as on the command line
    second = pl.train("penguins", "lightgbm", data=penguins.folder, name="lgb",
                      overrides={"folds": 3, "n_estimators": 50})
    both = pl.blend("penguins", [first.name, second.name], method="mean", name="both")
    assert both.name == "both" and both.info["blend"]["members"][0]["run"] == "lin"

    path = pl.submit("penguins", "both")
    assert path == home / "submissions" / "penguins" / "both.csv" and path.exists()
    spec, sample = specs.load(penguins.spec_path), pd.read_csv(penguins.folder / "sample_submission.csv")
    assert held_out_score(spec, pd.read_csv(path), penguins.answers_path) < \
        held_out_score(spec, sample, penguins.answers_path)
    # predict: a blend's members predict the test file, combined as the blend combined them
    again = pl.predict("penguins", "both", penguins.folder / "test.csv", home / "again.csv")
    assert again.read_text() == path.read_text()

    board = pl.leaderboard("penguins")
    assert set(board["run"]) == {"lin", "lgb", "both"}
    assert list(board["cv"]) == sorted(board["cv"])   # log loss: best (lowest) first
    assert pl.run("penguins", "best").name == board["run"].iloc[0]


def test_quiet_and_deterministic_hold_for_the_call_only(home, penguins, monkeypatch):
    monkeypatch.delenv("PIPELINES_QUIET", raising=False)
    was = torch.are_deterministic_algorithms_enabled()
    pl.train(penguins.spec_path, "linear", data=penguins.folder, name="q", overrides={"folds": 2},
             quiet=True, deterministic=True)
    assert "PIPELINES_QUIET" not in os.environ and torch.are_deterministic_algorithms_enabled() == was
    assert main(["leaderboard", "penguins", "--quiet"]) == 0
    assert "PIPELINES_QUIET" not in os.environ   # --quiet used to stay set in the process


def test_errors_are_one_line_user_errors(home, penguins):
    with pytest.raises(UserError) as exc:
        pl.train("no-such-competition")
    assert "\n" not in str(exc.value) and "unknown competition" in str(exc.value)
    with pytest.raises(UserError) as exc:
        pl.submit(penguins.spec_path, "ghost")
    assert "ghost" in str(exc.value)
    with pytest.raises(TypeError):
        api._args("train", "penguins", False, epochs=3)   # not a train option: a bug, not a user error


@pytest.mark.parametrize("verb", sorted(api.DEFAULTS))
def test_the_api_passes_every_option_the_command_line_has(verb):
    """The handlers get the same arguments from the API as from `python -m pipelines VERB`."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[verb]
    options = {a.dest for a in sub._actions if a.dest not in ("help", "competition", "quiet")}
    assert options == set(api.DEFAULTS[verb])
