"""The leaderboard for iterating: the params column (what each run's config changed), --config, a
sweep's winner marked from its sweep.json, and --public (CV against Kaggle's public scores, from
registry rows written by hand in the format pipelines.registry.record_kaggle writes)."""

from __future__ import annotations

import json

import pytest
import yaml

from iteration_runs import HOUSE, trained, copy_home, toy_run, train_runs
from pipelines import competition, config, hints, registry as leaderboard, specs
from pipelines.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.usefixtures("own_registry")


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def cells(out: str) -> dict[str, dict[str, str]]:
    """run -> {column title: cell} from the leaderboard's Markdown table."""
    lines = [[c.strip() for c in line.strip().strip("|").split("|")] for line in out.strip().splitlines()]
    header, rows = lines[0], lines[2:]
    found = {}
    for row in rows:
        run = row[header.index("run")]
        found[run[1:run.index("]")] if run.startswith("[") else run] = dict(zip(header, row))
    return found


# --------------------------------------------------------------------------- the params column

def test_params_column_shows_what_each_run_changed(trained, home, capsys):
    copy_home(trained, home)
    code, out, err = cli(capsys, "leaderboard", "--markdown")
    assert code == 0, err
    table = cells(out)
    # lasso.yaml has 10 folds and comps: 20; both runs set folds=3 comps=0, b also alpha
    assert table["a"]["params"] == "comps=0 folds=3"
    assert table["b"]["params"] == "alpha=0.001 comps=0 folds=3"
    assert table["p1"]["params"] == "" and table["p2"]["params"] == "alpha=0.1"   # configs/tabular/linear.yaml
    assert json.loads((home / "runs" / HOUSE / "b" / "run.json").read_text())["params"] == \
        {"alpha": 0.001, "comps": 0, "folds": 3}
    code, out, _ = cli(capsys, "leaderboard", HOUSE)
    header, rule, *rows = out.splitlines()
    assert header.split()[:5] == ["competition", "data", "run", "config", "params"] and "note" not in header
    assert [row.split()[2] for row in rows] == sorted(["a", "b"], key=lambda r: float(table[r]["CV"]))


def test_params_text_is_short_and_cut(home):
    row = {"params": {"lr": 0.003, "hidden": [64], "dropout": 1e-5, "tta": True, "recipe": "features"}}
    assert leaderboard.params_text(row, width=None) == "lr=0.003 hidden=[64] dropout=1e-05 tta=true recipe=features"
    cut = leaderboard.params_text(row)
    assert len(cut) == leaderboard.PARAMS_WIDTH == 40 and cut.endswith("...")
    assert leaderboard.params_text({"blend": {"members": [{"run": "lasso"}, {"run": "gbm"}]}}) == "members=lasso,gbm"
    assert leaderboard.params_text({"params": None}) == ""


def test_params_of_a_hand_written_run_are_its_non_defaults(home):
    toy_run(HOUSE, "t", [0.1, 0.1, 0.1], lr=0.01)   # no config file named toy: the schema's defaults
    [row] = leaderboard.read()
    assert row["params"] == {"lr": 0.01} and leaderboard.params_text(row) == "lr=0.01"


def test_params_of_runs_recorded_before_params_come_from_their_config_file(home):
    run_dir = home / "runs" / HOUSE / "old"
    run_dir.mkdir(parents=True)
    written = yaml.safe_load((config.CONFIG_ROOT / HOUSE / "lasso.yaml").read_text())
    values = {**written, "name": "lasso", "alpha": 0.002, "lr": 0.5}   # lr: a key the file does not set
    row = {"run": "old", "competition": HOUSE, "config": "lasso", "metric": "rmse_log", "greater_is_better": False,
           "cv": 0.12, "cv_std": 0.01, "folds": 10, "wall_s": 1.0, "device": "cpu", "date": "2026-05-01T12:00:00"}
    (run_dir / "run.json").write_text(json.dumps({**row, "config_values": values}))
    leaderboard.append(row)
    # only the keys configs/house-prices/lasso.yaml sets can be told apart: alpha (0.0005 there)
    assert leaderboard.params_text(leaderboard.read()[0]) == "alpha=0.002"


# --------------------------------------------------------------------------- --config

def test_config_filter(home, capsys):
    toy_run(HOUSE, "m1", [0.2, 0.2, 0.2], config="mlp")
    toy_run(HOUSE, "l1", [0.1, 0.1, 0.1], config="lasso")
    toy_run(HOUSE, "m2", [0.3, 0.3, 0.3], config="mlp")
    code, out, err = cli(capsys, "leaderboard", HOUSE, "--config", "mlp", "--markdown")
    assert code == 0, err
    assert list(cells(out)) == ["m1", "m2"]
    code, out, err = cli(capsys, "leaderboard", "--config", "gbm")
    assert code == 2 and err.strip().startswith("error: --config gbm: no run of that config in ")
    assert err.strip().endswith("configs with runs: lasso, mlp")


# --------------------------------------------------------------------------- sweeps

def write_sweep(home, name, **fields):
    folder = home / "runs" / HOUSE / "sweeps" / name
    folder.mkdir(parents=True)
    record = {"sweep": name, "winner": None, "winner_cv": None, "rerun_cvs": [], "rerun_mean": None,
              "rerun_std": None, "runner_up": None, "runner_up_cv": None, "greater_is_better": False, **fields}
    (folder / "sweep.json").write_text(json.dumps(record))


def test_sweep_winner_marked_and_warned_when_its_rerun_is_worse(home, capsys):
    toy_run(HOUSE, "s1-aaa", [0.110, 0.110, 0.110])
    toy_run(HOUSE, "s1-bbb", [0.112, 0.112, 0.112])
    toy_run(HOUSE, "s2-ccc", [0.120, 0.120, 0.120])
    toy_run(HOUSE, "other", [0.130, 0.130, 0.130])
    # s1's winner was lucky: on other fold seeds it scores 0.1135 on average, worse than the runner-up's 0.112
    write_sweep(home, "s1", winner="s1-aaa", winner_cv=0.110, rerun_cvs=[0.113, 0.114], rerun_mean=0.1135,
                rerun_std=0.0005, runner_up="s1-bbb", runner_up_cv=0.112)
    write_sweep(home, "s2", winner="s2-ccc", winner_cv=0.120, rerun_cvs=[0.119, 0.121], rerun_mean=0.120,
                rerun_std=0.001, runner_up="other", runner_up_cv=0.130)
    code, out, err = cli(capsys, "leaderboard", HOUSE, "--markdown")
    assert code == 0, err
    table = cells(out)
    assert table["s1-aaa"]["note"] == ("sweep winner (s1): re-run CV worse than the runner-up "
                                       "(0.11350 vs s1-bbb's CV 0.11200)")
    assert table["s2-ccc"]["note"] == "sweep winner (s2)"
    assert table["s1-bbb"]["note"] == table["other"]["note"] == ""
    code, out, _ = cli(capsys, "leaderboard", HOUSE)
    assert out.splitlines()[0].split()[-1] == "note"
    assert out.splitlines()[2].rstrip().endswith("re-run CV worse than the runner-up (0.11350 vs s1-bbb's CV 0.11200)")


def test_sweep_note_is_direction_aware():
    sweep = {"sweep": "s", "winner": "w", "rerun_mean": 0.80, "runner_up": "r", "runner_up_cv": 0.82}
    assert leaderboard.sweep_note({**sweep, "greater_is_better": True}).startswith(
        "sweep winner (s): re-run CV worse than the runner-up")          # 0.80 < 0.82: worse AUC
    assert leaderboard.sweep_note({**sweep, "greater_is_better": False}) == "sweep winner (s)"  # lower loss
    assert leaderboard.sweep_note({**sweep, "runner_up": None, "runner_up_cv": None}) == "sweep winner (s)"
    # the runner-up re-run on the same seeds, when the sweep made it, is the figure compared with
    assert leaderboard.sweep_note({**sweep, "greater_is_better": True, "runner_up_rerun_mean": 0.79}) == \
        "sweep winner (s)"
    assert leaderboard.sweep_note({**sweep, "greater_is_better": False, "runner_up_rerun_mean": 0.78}) == \
        "sweep winner (s): re-run CV worse than the runner-up (0.80000 vs r's re-run CV 0.78000)"


def test_a_broken_sweep_json_is_skipped_with_a_warning(home, capsys):
    toy_run(HOUSE, "a", [0.1, 0.1, 0.1])
    folder = home / "runs" / HOUSE / "sweeps" / "bad"
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text("{not json")
    code, out, err = cli(capsys, "leaderboard", HOUSE)
    assert code == 0 and "a" in out.splitlines()[2].split()
    assert err.startswith(f"warning: {folder / 'sweep.json'}: not readable as JSON")


# --------------------------------------------------------------------------- --public

def registry_with_public_scores(home, scores: dict[str, tuple[float, float | None, str]],
                                greater_is_better: bool = False) -> None:
    """runs/registry.jsonl written by hand: a run row per run (and its run.json), then a Kaggle update row
    per submitted run, as leaderboard.record_kaggle writes them. scores: run -> (cv, public, status)."""
    lines = []
    for i, (run, (cv, _, _)) in enumerate(scores.items()):
        run_dir = home / "runs" / HOUSE / run
        run_dir.mkdir(parents=True)
        row = {"run": run, "competition": HOUSE, "config": "lasso", "config_hash": "h", "metric": "rmse_log",
               "greater_is_better": greater_is_better, "cv": cv, "cv_std": 0.01, "folds": 10, "wall_s": 1.0, "device": "cpu",
               "date": f"2026-05-0{i + 1}T12:00:00", "dataset": "kaggle", "code": {"commit": "abc1234", "dirty": False},
               "data": {"train": "train.csv"}, "path": str(run_dir), "training_id": f"t-{run}",
               "params": {"alpha": 0.0001 * (i + 1)}}
        (run_dir / "run.json").write_text(json.dumps(row))
        lines.append(row)
    for i, (run, (cv, public, status)) in enumerate(scores.items()):
        if status is None:
            continue
        lines.append({"kind": "kaggle", "competition": HOUSE, "run": run, "status": status, "public": public,
                      "date": "2026-05-09T12:00:00", "private": None, "ref": str(41000000 + i),
                      "submitted": "2026-05-09 11:00:00",
                      "message": f"run {run} config lasso CV {cv:.5f} (commit abc1234)", "training_id": f"t-{run}"})
    path = home / "runs" / "registry.jsonl"
    path.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))


def test_public_scores_that_agree_with_cv(home, capsys):
    registry_with_public_scores(home, {"r1": (0.110, 0.115, "complete"), "r2": (0.120, 0.124, "complete"),
                                       "r3": (0.130, 0.139, "complete"), "r4": (0.125, None, "pending"),
                                       "r5": (0.100, None, None)})
    assert {r["run"]: r.get("public") for r in leaderboard.read()} == \
        {"r1": 0.115, "r2": 0.124, "r3": 0.139, "r4": None, "r5": None}   # the rows attach as written
    code, out, err = cli(capsys, "leaderboard", HOUSE, "--public")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == ("CV against Kaggle's public score, house-prices (rmse_log, lower is better): "
                        "4 submitted run(s), 3 scored")
    table = [line.split() for line in lines[2:7]]
    assert table[0] == ["run", "config", "params", "CV", "public", "CV", "rank", "public", "rank"]
    assert table[1:] == [["r1", "lasso", "alpha=0.0001", "0.11000", "0.11500", "1", "1"],
                         ["r2", "lasso", "alpha=0.0002", "0.12000", "0.12400", "2", "2"],
                         ["r4", "lasso", "alpha=0.0004", "0.12500", "pending", "-", "-"],
                         ["r3", "lasso", "alpha=0.0003", "0.13000", "0.13900", "3", "3"]]
    assert "correlation of CV and public score over 3 runs: Pearson +0.990, Spearman +1.000" in lines
    png = home / "runs" / HOUSE / "compare" / "public-scores.png"
    assert f"plot: {png}" in lines and png.read_bytes()[:8] == PNG_MAGIC
    assert not any(line.startswith("warning") for line in lines)


def test_public_scores_that_disagree_with_cv_warn(home, capsys):
    registry_with_public_scores(home, {"r1": (0.110, 0.131, "complete"), "r2": (0.120, 0.125, "complete"),
                                       "r3": (0.130, 0.121, "complete")})
    code, out, err = cli(capsys, "leaderboard", HOUSE, "--public")
    assert code == 0, err
    assert "Pearson -0.993, Spearman -1.000" in out
    [warning] = [line for line in out.splitlines() if line.startswith("warning:")]
    assert "the best CV (r1) is not the best public score (r3)" in warning
    assert "rank correlation -1.00 is below 0.5" in warning
    assert "Trust your CV" in warning and "private leaderboard" in warning


def test_public_ranks_are_direction_aware(home, capsys):
    """A metric where higher is better: the highest CV and the highest public score rank first."""
    registry_with_public_scores(home, {"r1": (0.91, 0.90, "complete"), "r2": (0.85, 0.86, "complete"),
                                       "r3": (0.80, 0.79, "complete")}, greater_is_better=True)
    code, out, err = cli(capsys, "leaderboard", HOUSE, "--public")
    assert code == 0, err
    assert "higher is better" in out.splitlines()[0]
    ranks = {line.split()[0]: line.split()[-2:] for line in out.splitlines()[3:6]}
    assert ranks == {"r1": ["1", "1"], "r2": ["2", "2"], "r3": ["3", "3"]}
    assert "warning" not in out


def test_public_with_fewer_than_two_scores_says_so(home, capsys):
    registry_with_public_scores(home, {"r1": (0.110, 0.131, "complete"), "r2": (0.120, None, "error"),
                                       "r3": (0.130, None, None)})
    code, out, err = cli(capsys, "leaderboard", HOUSE, "--public")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1
    assert out.startswith("1 of the 2 submitted run(s) of house-prices have a public score: comparing CV with the "
                          "public board needs at least 2")
    assert not (home / "runs" / HOUSE / "compare").exists()


def test_public_needs_a_competition(home, capsys):
    code, out, err = cli(capsys, "leaderboard", "--public")
    assert code == 2 and err.strip() == ("error: leaderboard --public needs a COMPETITION: "
                                         + hints.pipelines("leaderboard COMPETITION --public"))
