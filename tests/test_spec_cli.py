"""Spec competitions through the command line (pipelines.cli.main): a spec file's path, or the name
of a spec in pipelines/competitions/specs/, works as the competition of every verb; a binary or
regression spec's runs blend, and so do multiclass ones (rows of class probabilities); the protocol
holds for spec competitions."""

from __future__ import annotations

import pandas as pd
import pytest

import test_competition_protocol as protocol
from pipelines import competition, specs
from pipelines.cli import main
from pipelines.tabular import spec as tabular_spec
from pipelines.tabular.competition import from_spec
from tabular_data import layout


pytestmark = pytest.mark.usefixtures("own_registry")   # spec competitions do not outlive a test


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    return {name: layout(name, root / name, rows=rows)
            for name, rows in (("penguins", None), ("credit", 400), ("computers", 400))}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_multiclass_spec_through_every_verb(home, tables, capsys):
    laid = tables["penguins"]
    spec = laid.spec_path
    code, out, _ = run(capsys, "train", spec, "--data", laid.folder, "--config", "linear", "--name", "lin")
    assert code == 0 and "CV logloss:" in out and (home / "runs" / "penguins" / "lin" / "run.json").exists()
    code, out, _ = run(capsys, "predict", spec, "--run", "lin", "--test", laid.folder / "test.csv",
                       "--out", home / "pred.csv")
    assert code == 0
    predicted = pd.read_csv(home / "pred.csv")
    assert list(predicted.columns) == ["Id", "Adelie", "Chinstrap", "Gentoo"] and len(predicted) == laid.test_rows
    code, out, _ = run(capsys, "submit", spec, "--run", "lin")
    submitted = pd.read_csv(home / "submissions" / "penguins" / "lin.csv")
    assert code == 0 and submitted.shape == predicted.shape
    code, out, _ = run(capsys, "leaderboard", spec)
    assert code == 0 and "penguins" in out and "lin" in out
    code, out, _ = run(capsys, "report", spec, "--run", "lin")
    report = (home / "runs" / "penguins" / "lin" / "report" / "report.md").read_text()
    assert code == 0 and "## Spec" in report and "Adelie, Chinstrap, Gentoo" in report


@pytest.mark.parametrize("method", ["mean", "weights", "stack"])
def test_multiclass_runs_blend(home, tables, capsys, method):
    laid = tables["penguins"]
    spec = laid.spec_path
    for config in ("linear", "lightgbm"):
        if not (home / "runs" / "penguins" / config / "run.json").exists():
            assert run(capsys, "train", spec, "--data", laid.folder, "--config", config, "--name", config)[0] == 0
    code, out, err = run(capsys, "blend", spec, "linear", "lightgbm", "--method", method, "--name", method)
    assert code == 0, err
    folder = home / "runs" / "penguins" / method
    row = pd.read_json(folder / "run.json", typ="series")
    members = [pd.read_json(home / "runs" / "penguins" / c / "run.json", typ="series")["cv"]
               for c in ("linear", "lightgbm")]
    assert row["metric"] == "logloss"
    # mean and weights never lose to both members here; the stack (3 more parameters, fitted on
    # ~275 rows per fold) may, but not by much
    assert row["cv"] < max(members) * (1.0 if method != "stack" else 1.5)
    oof = pd.read_csv(folder / "oof.csv")
    probabilities = oof[["oof_Adelie", "oof_Chinstrap", "oof_Gentoo"]].to_numpy()
    assert probabilities.sum(axis=1) == pytest.approx(1.0) and (probabilities > 0).all()
    if method == "stack":
        assert "intercepts (one per class)" in out and len(row["config_values"]["intercept"]) == 3
    assert run(capsys, "submit", spec, "--run", method)[0] == 0
    submitted = pd.read_csv(home / "submissions" / "penguins" / f"{method}.csv")
    assert list(submitted.columns) == ["Id", "Adelie", "Chinstrap", "Gentoo"] and len(submitted) == laid.test_rows
    code, _, err = run(capsys, "predict", spec, "--run", method, "--test", laid.folder / "test.csv",
                       "--out", home / "again.csv")
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(home / "again.csv"), submitted, rtol=1e-9)
    assert run(capsys, "report", spec, "--run", method)[0] == 0


@pytest.mark.parametrize("table", ["credit", "computers"])
def test_binary_and_regression_runs_blend(home, tables, capsys, table):
    laid = tables[table]
    spec = laid.spec_path
    for config in ("linear", "lightgbm"):
        code, out, _ = run(capsys, "train", spec, "--data", laid.folder, "--config", config, "--name", config)
        assert code == 0, out
    code, out, _ = run(capsys, "blend", spec, "linear", "lightgbm", "--method", "mean", "--name", "mean")
    assert code == 0 and "blend CV" in out
    blended = competition.load(str(spec)).metric
    row = pd.read_json(home / "runs" / table / "mean" / "run.json", typ="series")
    members = [pd.read_json(home / "runs" / table / c / "run.json", typ="series")["cv"] for c in ("linear", "lightgbm")]
    assert min(members) * 0.8 < row["cv"] < max(members) * 1.2 and blended.name == row["metric"]
    assert run(capsys, "blend", spec, "linear", "lightgbm", "--method", "stack", "--name", "stack")[0] == 0
    assert run(capsys, "submit", spec, "--run", "mean")[0] == 0
    submitted = pd.read_csv(home / "submissions" / table / "mean.csv")
    code, _, _ = run(capsys, "predict", spec, "--run", "mean", "--test", laid.folder / "test.csv",
                     "--out", home / "again.csv")
    assert code == 0
    pd.testing.assert_frame_equal(pd.read_csv(home / "again.csv"), submitted, rtol=1e-9)
    assert run(capsys, "report", spec, "--run", "stack")[0] == 0


def test_a_shipped_spec_by_name(home, tables, capsys, monkeypatch):
    monkeypatch.setattr(specs, "SPECS_DIR", tables["penguins"].spec_path.parent)
    code, out, _ = run(capsys, "train", "penguins", "--data", tables["penguins"].folder, "--config", "linear",
                       "--folds", "0")
    assert code == 0 and competition.get("penguins").task == "multiclass"


@pytest.mark.parametrize("argv, message", [
    (["train", "no/such/spec.yaml"], "unknown competition 'no/such/spec.yaml': spec file no/such/spec.yaml not found"),
    (["predict", "no-such-spec", "--run", "r", "--test", "t", "--out", "o"], "unknown competition 'no-such-spec'"),
    (["leaderboard", "missing.yml"], "unknown competition 'missing.yml'"),
    (["train", str(specs.SPECS_DIR / "cifar-10.yaml")], None),
])
def test_bad_competition_is_one_line(home, capsys, argv, message, tmp_path):
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    if message is None:  # an images spec: read by pipelines.images when it offers a Competition
        try:
            specs.engine("images")
        except Exception:
            assert "images specs are not supported by this version" in err
        return
    assert message in err


def test_a_bad_spec_file_is_one_line(home, capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nkind: tabular\nid: Id\ntarget: y\ntask: regression\nmetric: auc\n")
    code, _, err = run(capsys, "train", bad)
    assert code == 2 and err.count("\n") == 1 and "metric: auc does not fit task: regression" in err
    bad.write_text("name: bad\nkind: sound\n")
    code, _, err = run(capsys, "train", bad)
    assert code == 2 and err.count("\n") == 1 and "kind: 'sound'" in err
    bad.write_text("name: house-prices\nkind: tabular\nid: Id\ntarget: y\ntask: regression\nmetric: rmse\n")
    code, _, err = run(capsys, "report", bad, "--run", "x")
    assert code == 2 and "built-in competition's name" in err


# --------------------------------------------------------------------------- the protocol

SPECS = {
    "regression": {"id": "Id", "target": "price", "task": "regression", "metric": "rmsle"},
    "regression-rmse": {"id": "Id", "target": "price", "task": "regression", "metric": "rmse"},
    "binary": {"id": "Id", "target": "churn", "task": "binary", "metric": "auc"},
    "binary-label": {"id": "Id", "target": "churn", "task": "binary", "metric": "accuracy", "submission": "label"},
    "multiclass": {"id": "Id", "target": "species", "task": "multiclass", "metric": "logloss"},
}
CHECKS = ["test_fields", "test_metric_direction_is_consistent",
          "test_submission_accepts_a_well_formed_frame_and_rejects_malformed_ones", "test_blend_space_round_trips",
          "test_verbs_exist"]


# The protocol's malformed frames take -1.0 as out of range, but an rmse target may be negative:
# that one pair is not a case.
CASES = [(case, check) for case in SPECS for check in CHECKS
         if not (case == "regression-rmse" and check.startswith("test_submission"))]


@pytest.mark.parametrize("case,check", CASES)
def test_spec_competitions_keep_the_protocol(case, check, tmp_path):
    made = from_spec(tabular_spec.from_dict({"name": f"spec-{case}", "kind": "tabular", **SPECS[case]}, case))
    competition.register(made)
    comp = competition.get(made.name)
    test = getattr(protocol, check)
    test(comp, tmp_path) if "tmp_path" in test.__code__.co_varnames[:test.__code__.co_argcount] else test(comp)
    protocol.test_builtins_are_registered_in_order()
    protocol.test_unknown_name_suggests_the_closest()
