"""The run registry resolved on read: one leaderboard row per (competition, run name), the newest
training's, and a Kaggle public score shown only with the training it was submitted from."""

from __future__ import annotations

import json

from pipelines import kaggle, registry as leaderboard
from pipelines.cli import main

FAST = ["--set", "epochs=2", "--set", "folds=2"]


def train(house_data, name, *extra):
    return main(["train", "house-prices", "--config", "mlp", "--data", str(house_data), "--name", name,
                 "--device", "cpu", *FAST, *extra])


def rows_named(name, competition="house-prices"):
    return [r for r in leaderboard.read() if (r["competition"], r["run"]) == (competition, name)]


def leaderboard_lines(name):
    return [line for line in leaderboard.show("house-prices").splitlines()[2:] if name in line.split()]


def kaggle_update(run_row, ref, status="complete", public=None, training_id=None):
    """What kaggle.submit / kaggle.refresh record for a submission of `run_row`."""
    extra = {} if training_id is None else {"training_id": training_id}
    return leaderboard.record_kaggle(run_row["competition"], run_row["run"], status=status, public=public,
                                     private=None, ref=ref, submitted="2026-05-01 12:00:00",
                                     message=kaggle.submission_message(run_row), **extra)


def fake_run(home, name, cv, training_id=None, **more):
    """A finished House Prices run as the registry and `submit` see it, without training one."""
    run_dir = home / "runs" / "house-prices" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    row = {"run": name, "competition": "house-prices", "config": "mlp", "config_hash": "h1", "metric": "rmse_log",
           "greater_is_better": False, "cv": cv, "cv_std": 0.01, "folds": 5, "wall_s": 1.0, "device": "cpu",
           "date": "2026-05-01T12:00:00", "dataset": "kaggle", "code": {"commit": "abc1234", "dirty": False},
           "data": {"train": "train.csv", "train_sha256": "d1"}, "path": str(run_dir), **more}
    if training_id is not None:
        row["training_id"] = training_id
    (run_dir / "run.json").write_text(json.dumps(row))
    leaderboard.append(row)
    return row


# --------------------------------------------------------------------------- real training

def test_restart_under_the_same_name_leaves_one_row_with_the_new_score(home, house_data):
    assert train(house_data, "r", "--folds", "0") == 0   # one fold of two: recorded, and quicker
    run_dir = home / "runs" / "house-prices" / "r"
    first = json.loads((run_dir / "run.json").read_text())
    assert train(house_data, "r", "--folds", "0", "--set", "epochs=3", "--restart") == 0
    second = json.loads((run_dir / "run.json").read_text())
    assert second["cv"] != first["cv"] and second["training_id"] != first["training_id"]

    # append-only: both run rows are still in the file ...
    lines = [json.loads(x) for x in (home / "runs" / "registry.jsonl").read_text().splitlines()]
    assert [(r["run"], r["training_id"]) for r in lines] == [("r", first["training_id"]),
                                                             ("r", second["training_id"])]
    # ... but the leaderboard shows the newest training's only
    [row] = rows_named("r")
    assert row["cv"] == second["cv"] and row["training_id"] == second["training_id"]
    [line] = leaderboard_lines("r")
    assert f"{second['cv']:.5f}" in line.split() and f"{first['cv']:.5f}" not in line.split()
    assert main(["leaderboard", "house-prices"]) == 0

    # another name trained with the same config and data is still recognisable as such
    assert train(house_data, "twin", "--folds", "0", "--set", "epochs=3") == 0
    [twin] = rows_named("twin")
    assert (twin["config_hash"], twin["data"]) == (row["config_hash"], row["data"])
    assert twin["training_id"] != row["training_id"]


def test_resumed_run_keeps_its_training_and_its_public_score(home, house_data):
    assert train(house_data, "p", "--folds", "0") == 0
    [partial] = rows_named("p")
    kaggle_update(partial, ref="11", public=0.2)
    assert train(house_data, "p") == 0                     # resumes: fold 1 trained, a new row recorded
    [row] = rows_named("p")
    assert row["folds"] == 2 and row["training_id"] == partial["training_id"]
    assert row["public"] == 0.2                            # the same training: its score stays
    assert train(house_data, "p", "--restart") == 0
    [row] = rows_named("p")
    assert row["training_id"] != partial["training_id"] and row.get("public") is None and "kaggle" not in row


# --------------------------------------------------------------------------- registry records

def test_public_score_of_the_old_training_is_not_attached_to_the_new_one(home):
    old = fake_run(home, "m", 0.15, training_id="t-old")
    kaggle_update(old, ref="100", public=0.16)
    assert rows_named("m")[0]["public"] == 0.16

    new = fake_run(home, "m", 0.12, training_id="t-new")   # --restart: run.json and a row replaced
    [row] = rows_named("m")
    assert row["cv"] == 0.12 and row.get("public") is None and "kaggle" not in row
    [line] = leaderboard_lines("m")
    assert "0.12000" in line.split() and "0.15000" not in line.split() and "0.16000" not in line.split()

    # kaggle-scores reading the old submission again records it for the old training, once
    before = len(leaderboard.read_lines())
    update = kaggle_update(old, ref="100", public=0.16)
    assert update["training_id"] == "t-old"
    assert len(leaderboard.read_lines()) == before        # identical to what is recorded: not appended
    update = kaggle_update(old, ref="", public=0.16, status="complete")   # no ref: found by its message
    assert update["training_id"] == "t-old" and rows_named("m")[0].get("public") is None

    # the new training's own submission is shown, pending then scored
    assert kaggle_update(new, ref="200", status="pending")["training_id"] == "t-new"
    assert rows_named("m")[0]["kaggle"]["status"] == "pending"
    kaggle_update(new, ref="200", public=0.13)
    [row] = rows_named("m")
    assert row["public"] == 0.13 and row["kaggle"]["ref"] == "200"
    # a late update of the old submission does not displace it
    kaggle_update(old, ref="100", public=0.17)
    assert rows_named("m")[0]["public"] == 0.13


def test_newest_record_wins_per_competition_and_name(home):
    fake_run(home, "a", 0.20, training_id="1")
    fake_run(home, "b", 0.10, training_id="2")
    fake_run(home, "a", 0.30, training_id="3")
    leaderboard.append({"run": "a", "competition": "dogs-vs-cats", "cv": 0.5, "training_id": "4"})
    rows = leaderboard.read()
    assert sorted((r["competition"], r["run"], r["cv"]) for r in rows) == [
        ("dogs-vs-cats", "a", 0.5), ("house-prices", "a", 0.30), ("house-prices", "b", 0.10)]
    assert [r["run"] for r in leaderboard.ranked(rows, "house-prices")] == ["b", "a"]
    assert len(leaderboard.read_lines()) == 4             # nothing rewritten


def test_records_written_before_training_ids_still_display(home):
    # a legacy run with a legacy update row: shown as before
    old = fake_run(home, "legacy", 0.15)
    leaderboard.append({"kind": "kaggle", "competition": "house-prices", "run": "legacy", "status": "complete",
                        "public": 0.16, "ref": "1", "message": kaggle.submission_message(old)})
    [row] = rows_named("legacy")
    assert row["public"] == 0.16
    # submitting a legacy run now: its run.json has no id, the update attaches as it always did
    other = fake_run(home, "legacy2", 0.14)
    update = kaggle_update(other, ref="2", public=0.155)
    assert "training_id" not in update and rows_named("legacy2")[0]["public"] == 0.155

    # restarted under the new code: the legacy score is the old training's, not shown any more
    fake_run(home, "legacy", 0.11, training_id="t-new")
    [row] = rows_named("legacy")
    assert row["cv"] == 0.11 and row.get("public") is None
    # and kaggle-scores finding the old (legacy) submission does not attach it to the new training
    update = kaggle_update(old, ref="1", public=0.16)
    assert update["training_id"] is None and rows_named("legacy")[0].get("public") is None


def test_legacy_training_recorded_again_keeps_its_legacy_score(home):
    old = fake_run(home, "cont", 0.15)
    leaderboard.append({"kind": "kaggle", "competition": "house-prices", "run": "cont", "status": "complete",
                        "public": 0.16, "message": kaggle.submission_message(old)})
    fake_run(home, "cont", 0.14, training_id="t1", continues_legacy=True)   # more folds, same training
    [row] = rows_named("cont")
    assert row["cv"] == 0.14 and row["public"] == 0.16


def test_update_rows_for_unknown_runs_are_still_ignored(home):
    leaderboard.record_kaggle("house-prices", "ghost", status="complete", public=0.1, message="run ghost config x")
    leaderboard.record_kaggle("house-prices", "ghost", status="complete", public=0.1)
    assert leaderboard.read() == []
