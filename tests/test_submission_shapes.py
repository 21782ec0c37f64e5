"""Submission shapes that Kaggle's templates decide, through the command line (pipelines.cli.main):
a binary competition submitted as one probability column per class (tabular and image specs, runs
and blends, submit and predict, scored against held-out labels), a template whose rows are not in
test.csv's order (and one named sampleSubmission.csv), a missing template said once, a saved pandas
index column left out with a note, and a feature missing from test.csv blamed on test.csv."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.cli import main
from pipelines.errors import UserError
from pipelines.tabular import data as tabular_data, spec as tabular_spec, task as tabular_task
from tabular_data import layout
from test_image_spec import CNN_FAST, draw

pytestmark = pytest.mark.usefixtures("own_registry")   # spec competitions do not outlive a test

LINEAR = ["--config", "linear", "--set", "folds=3"]
LIGHTGBM = ["--config", "lightgbm", "--set", "folds=3", "--set", "n_estimators=40", "--set", "lr=0.1"]
EPS = 1e-15


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return out


def binary_logloss(p_true: np.ndarray) -> float:
    """The log loss of the probabilities given to the true class of each row."""
    return float(-np.mean(np.log(np.clip(np.asarray(p_true, float), EPS, 1.0))))


def check_per_class(submitted: pd.DataFrame, predictions: pd.DataFrame, id_column: str, target: str,
                    negative: str, positive: str, columns: list[str]) -> None:
    """A one-column-per-class submission of a binary run: the template's columns, P(positive) from
    test_predictions.csv in the positive class's column, 1 - P(positive) in the other, rows summing to 1."""
    assert list(submitted.columns) == columns
    p = predictions.set_index(id_column)[target].loc[submitted[id_column]].to_numpy(float)
    np.testing.assert_allclose(submitted[positive].to_numpy(float), p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(submitted[negative].to_numpy(float), 1.0 - p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(submitted[[negative, positive]].sum(axis=1).to_numpy(), 1.0, atol=1e-9)


def scores_agree(spec, submitted: pd.DataFrame, predictions: pd.DataFrame, answers: pd.DataFrame, positive: str,
                 negative: str, out) -> float:
    """The held-out log loss of a per-class submission (each row's true class column) is finite and
    equals that of the same run's probability submission (P(positive))."""
    merged = answers.merge(submitted, on=spec.id, suffixes=("_true", ""))
    assert len(merged) == len(answers)
    truth = merged[f"{spec.target}_true" if f"{spec.target}_true" in merged else spec.target].astype(str)
    assert set(truth) <= {negative, positive}
    per_class = binary_logloss(np.where(truth == positive, merged[positive], merged[negative]))
    as_probability = tabular_task.write_submission(replace(spec, submission="probability"), predictions, out,
                                                   classes=[negative, positive])
    single = answers.merge(pd.read_csv(as_probability, dtype={spec.id: str}), on=spec.id, suffixes=("_true", ""))
    p = single[spec.target].to_numpy(float)
    truth = single[f"{spec.target}_true"].astype(str)
    probability = binary_logloss(np.where(truth == positive, p, 1.0 - p))
    assert np.isfinite(per_class) and per_class == pytest.approx(probability, rel=1e-12, abs=1e-12)
    return per_class


# --------------------------------------------------------------------------- binary, one column per class

def test_binary_tabular_spec_submits_one_column_per_class(home, tmp_path, capsys):
    laid = layout("churn", tmp_path / "churn", rows=400,
                  spec_changes={"submission": "probabilities", "metric": "logloss"})
    sample = pd.read_csv(laid.folder / "sample_submission.csv", dtype=str)
    assert list(sample.columns) == ["id", "no", "yes"]
    sample = sample[["id", "yes", "no"]]          # Kaggle's column order wins over the class order
    sample.to_csv(laid.folder / "sample_submission.csv", index=False)
    spec = tabular_spec.load(laid.spec_path)
    answers = pd.read_csv(laid.answers_path, dtype=str)
    assert spec.submission == "probabilities" and spec.task == "binary"

    for name, config in (("lin", LINEAR), ("gbm", LIGHTGBM)):
        ok(capsys, "train", laid.spec_path, "--data", laid.folder, "--name", name, *config)
    ok(capsys, "blend", laid.spec_path, "lin", "gbm", "--method", "weights", "--name", "b")

    for name in ("lin", "gbm", "b"):
        run_dir = home / "runs" / "churn" / name
        assert json.loads((run_dir / "run.json").read_text())["classes"] == ["no", "yes"]
        predictions = tabular_task.read_predictions(run_dir / "test_predictions.csv", spec)
        assert list(predictions.columns) == ["id", "churn"]   # blends read P(positive)
        out = ok(capsys, "submit", laid.spec_path, "--run", name)
        assert "note:" not in out
        submitted = pd.read_csv(home / "submissions" / "churn" / f"{name}.csv", dtype={"id": str})
        check_per_class(submitted, predictions, "id", "churn", "no", "yes", ["id", "yes", "no"])
        assert submitted["id"].tolist() == sample["id"].tolist()
        ok(capsys, "predict", laid.spec_path, "--run", name, "--test", laid.folder / "test.csv",
           "--out", home / f"{name}.csv")
        pd.testing.assert_frame_equal(pd.read_csv(home / f"{name}.csv", dtype={"id": str}), submitted, rtol=1e-9)
        score = scores_agree(spec, submitted, predictions, answers, "yes", "no", tmp_path / f"{name}-p.csv")
        assert score < 0.6  # better than the constant 0.5 (log 2 = 0.693)

    # without a template: [id, negative, positive], in the run's class order, said once
    (laid.folder / "sample_submission.csv").unlink()
    out = ok(capsys, "submit", laid.spec_path, "--run", "b", "--out", home / "plain.csv")
    assert out.count("note: no sample_submission.csv in") == 1
    assert "the submission has the columns id, no, yes and the rows of test.csv" in out
    plain = pd.read_csv(home / "plain.csv", dtype={"id": str})
    check_per_class(plain, tabular_task.read_predictions(home / "runs" / "churn" / "b" / "test_predictions.csv",
                                                         spec), "id", "churn", "no", "yes", ["id", "no", "yes"])


def write_pets(root, classes=("cat", "dog"), per_class: int = 10, n_test: int = 8, seed: int = 3):
    """A binary image competition in CIFAR-10's layout (trainLabels.csv, train/, test/,
    sampleSubmission.csv with one column per class), the test labels held aside in answers.csv."""
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    labels = np.repeat(np.arange(len(classes)), per_class)
    rng.shuffle(labels)
    for i, label in enumerate(labels, 1):
        draw(int(label), rng, (32, 32)).save(root / "train" / f"{i}.png")
    truth = np.resize(np.arange(len(classes)), n_test)
    rng.shuffle(truth)
    for i, label in enumerate(truth, 1):
        draw(int(label), rng, (32, 32)).save(root / "test" / f"{i}.png")
    pd.DataFrame({"id": np.arange(1, len(labels) + 1), "label": np.asarray(classes)[labels]}).to_csv(
        root / "trainLabels.csv", index=False)
    order = rng.permutation(n_test) + 1            # the template's rows in its own order
    pd.DataFrame({"id": order, "dog": 0.5, "cat": 0.5}).to_csv(root / "sampleSubmission.csv", index=False)
    pd.DataFrame({"id": np.arange(1, n_test + 1).astype(str), "label": np.asarray(classes)[truth]}).to_csv(
        root.parent / "answers.csv", index=False)
    return root


def test_binary_image_spec_submits_one_column_per_class(home, tmp_path, capsys):
    folder = write_pets(tmp_path / "pets")
    spec_path = tmp_path / "pets.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": "pets", "kind": "images", "id": "id", "target": "label", "task": "binary", "metric": "logloss",
        "submission": "probabilities", "labels": "trainLabels.csv", "train_images": "train", "test_images": "test",
        "sample_submission": "sampleSubmission.csv"}))
    from pipelines.images import spec as image_spec, task as image_task

    spec = image_spec.load(spec_path)
    answers = pd.read_csv(tmp_path / "answers.csv", dtype=str)
    template = pd.read_csv(folder / "sampleSubmission.csv", dtype=str)
    fast = [part for key, value in CNN_FAST.items() for part in ("--set", f"{key}={value}")]
    for name, width in (("w8", 8), ("w12", 12)):
        ok(capsys, "train", spec_path, "--data", folder, "--name", name, "--device", "cpu", *fast,
           "--set", f"width={width}")
    ok(capsys, "blend", spec_path, "w8", "w12", "--method", "weights", "--name", "b")
    for name in ("w8", "w12", "b"):
        run_dir = home / "runs" / "pets" / name
        assert json.loads((run_dir / "run.json").read_text())["classes"] == ["cat", "dog"]
        predictions = image_task.read_predictions(run_dir / "test_predictions.csv", spec)
        assert list(predictions.columns) == ["id", "label"]   # P(dog)
        ok(capsys, "submit", spec_path, "--run", name)
        submitted = pd.read_csv(home / "submissions" / "pets" / f"{name}.csv", dtype={"id": str})
        check_per_class(submitted, predictions, "id", "label", "cat", "dog", ["id", "dog", "cat"])
        assert submitted["id"].tolist() == template["id"].tolist()   # the template's rows, in its order
        ok(capsys, "predict", spec_path, "--run", name, "--test", folder / "test", "--out", home / f"{name}.csv")
        pd.testing.assert_frame_equal(pd.read_csv(home / f"{name}.csv", dtype={"id": str}), submitted, rtol=1e-9)
        scores_agree(spec, submitted, predictions, answers, "dog", "cat", tmp_path / f"{name}-p.csv")

    # a template that does not fit: one line naming the file and the column
    pd.DataFrame({"id": template["id"], "label": 0.5}).to_csv(folder / "sampleSubmission.csv", index=False)
    code, _, err = run(capsys, "submit", spec_path, "--run", "b")
    assert code == 2 and err.count("\n") == 1
    assert "sampleSubmission.csv: columns id, label; submission: probabilities has one column per class" in err
    # no template: [id, negative, positive], said once
    (folder / "sampleSubmission.csv").unlink()
    out = ok(capsys, "submit", spec_path, "--run", "b", "--out", home / "plain.csv")
    assert out.count("note: no sampleSubmission.csv in") == 1
    plain = pd.read_csv(home / "plain.csv", dtype={"id": str})
    assert list(plain.columns) == ["id", "cat", "dog"]


@pytest.mark.parametrize("spec_submission, columns, words", [
    ("probabilities", ["id", "churn"], "columns id, churn; submission: probabilities has one column per class "
                                       "(no, yes)"),
    ("probabilities", ["id", "no", "maybe"], "column 'maybe' is a class that training never saw"),
    ("probabilities", ["id", "no"], "no column for class 'yes'"),
    ("probability", ["id", "no", "yes"], "3 columns (id, no, yes); submission: probability has two: id and the "
                                         "probability (one column per class: use submission: probabilities)"),
])
def test_a_binary_template_that_does_not_fit_is_one_line(home, tmp_path, capsys, spec_submission, columns, words):
    laid = layout("churn", tmp_path / "churn", rows=200, spec_changes={"submission": spec_submission})
    ids = pd.read_csv(laid.folder / "test.csv", dtype=str)["id"]
    pd.DataFrame({c: ids if c == "id" else 0.5 for c in columns}).to_csv(laid.folder / "sample_submission.csv",
                                                                          index=False)
    code, _, err = run(capsys, "train", laid.spec_path, "--data", laid.folder, *LINEAR)
    assert code == 2 and err.count("\n") == 1 and f"{laid.folder / 'sample_submission.csv'}: {words}" in err, err
    assert not [p for p in (home / "runs" / "churn").glob("*") if p.is_dir()]   # no run folder


# --------------------------------------------------------------------------- the template decides

@pytest.mark.parametrize("template", ["sample_submission.csv", "sampleSubmission.csv"])
def test_the_template_decides_the_rows(home, tmp_path, capsys, template):
    changes = {} if template == "sample_submission.csv" else {"sample_submission": template}
    laid = layout("computers", tmp_path / "computers", rows=300, spec_changes=changes)
    assert sorted(p.name for p in laid.folder.iterdir()) == sorted(["train.csv", "test.csv", template])
    sample = pd.read_csv(laid.folder / template, dtype=str)
    shuffled = sample.iloc[np.random.default_rng(5).permutation(len(sample))]
    shuffled.to_csv(laid.folder / template, index=False)
    test_ids = pd.read_csv(laid.folder / "test.csv", dtype=str)["id"].tolist()
    assert shuffled["id"].tolist() != test_ids and sorted(shuffled["id"]) == sorted(test_ids)

    out = ok(capsys, "prepare", laid.spec_path, "--data", laid.folder)
    assert f"{template}: {len(test_ids)} ids (the submission follows its columns and rows)" in out
    assert "note:" not in out
    assert (home / "data" / "computers" / template).read_text() == (laid.folder / template).read_text()
    ok(capsys, "train", laid.spec_path, "--name", "lin", *LINEAR)     # on the prepared copy
    predictions = pd.read_csv(home / "runs" / "computers" / "lin" / "test_predictions.csv", dtype={"id": str})
    assert predictions["id"].tolist() == test_ids                     # the run keeps test.csv's order
    ok(capsys, "submit", laid.spec_path, "--run", "lin")
    submitted = pd.read_csv(home / "submissions" / "computers" / "lin.csv", dtype={"id": str})
    assert submitted["id"].tolist() == shuffled["id"].tolist()
    by_id = predictions.set_index("id")["price"]
    np.testing.assert_array_equal(submitted["price"].to_numpy(float), by_id.loc[submitted["id"]].to_numpy(float))
    ok(capsys, "predict", laid.spec_path, "--run", "lin", "--test", laid.folder / "test.csv", "--out", home / "p.csv")
    assert (home / "p.csv").read_text() == (home / "submissions" / "computers" / "lin.csv").read_text()
    # another file's rows are its own (the template's columns still)
    part = pd.read_csv(laid.folder / "test.csv", dtype=str).iloc[:7]
    part.to_csv(tmp_path / "part.csv", index=False)
    ok(capsys, "predict", laid.spec_path, "--run", "lin", "--test", tmp_path / "part.csv", "--out", home / "q.csv")
    assert pd.read_csv(home / "q.csv", dtype={"id": str})["id"].tolist() == part["id"].tolist()

    # a template whose ids are not test.csv's: one line naming the file and an id, before any run folder
    broken = tmp_path / "broken"
    shutil.copytree(laid.folder, broken)
    shuffled.assign(id=shuffled["id"].replace({shuffled["id"].iloc[3]: "99999"})).to_csv(broken / template,
                                                                                         index=False)
    code, _, err = run(capsys, "train", laid.spec_path, "--data", broken, "--name", "bad", *LINEAR)
    assert code == 2 and err.count("\n") == 1
    assert f"{broken / template}: 1 id(s) with no row in test.csv, e.g. 99999" in err
    shuffled.iloc[1:].to_csv(broken / template, index=False)
    code, _, err = run(capsys, "prepare", laid.spec_path, "--data", broken)
    assert code == 2 and f"{broken / 'test.csv'}: 1 id(s) not in {template}, e.g. {shuffled['id'].iloc[0]}" in err
    assert not (home / "runs" / "computers" / "bad").exists()


def test_a_missing_template_is_said_once(home, tmp_path, capsys):
    laid = layout("credit", tmp_path / "credit", rows=300)
    (laid.folder / "sample_submission.csv").unlink()
    note = f"note: no sample_submission.csv in {laid.folder}: the submission has the columns Id, Status and the " \
           f"rows of test.csv"
    out = ok(capsys, "prepare", laid.spec_path, "--data", laid.folder)
    assert out.count("note:") == 1 and note in out
    for name, config in (("lin", LINEAR), ("gbm", LIGHTGBM)):
        ok(capsys, "train", laid.spec_path, "--data", laid.folder, "--name", name, *config)
    ok(capsys, "blend", laid.spec_path, "lin", "gbm", "--method", "mean", "--name", "m")
    for name in ("lin", "m"):
        out = ok(capsys, "submit", laid.spec_path, "--run", name)
        assert out.count("note:") == 1 and note in out
        out = ok(capsys, "predict", laid.spec_path, "--run", name, "--test", laid.folder / "test.csv",
                 "--out", home / f"{name}.csv")
        assert out.count("note:") == 1 and f"and the rows of {laid.folder / 'test.csv'}" in out
        submitted = pd.read_csv(home / "submissions" / "credit" / f"{name}.csv", dtype={"Id": str})
        assert list(submitted.columns) == ["Id", "Status"]
        assert submitted["Id"].tolist() == pd.read_csv(laid.folder / "test.csv", dtype=str)["Id"].tolist()


# --------------------------------------------------------------------------- input sanity

def test_a_saved_pandas_index_is_left_out(home, tmp_path, capsys):
    laid = layout("penguins", tmp_path / "penguins", rows=150)
    for name in ("train.csv", "test.csv"):   # what DataFrame.to_csv writes by default: the index, unnamed
        pd.read_csv(laid.folder / name, dtype=str).to_csv(laid.folder / name)
    assert (laid.folder / "train.csv").read_text().startswith(",Id,")
    out = ok(capsys, "prepare", laid.spec_path, "--data", laid.folder)
    for name in ("train.csv", "test.csv"):
        assert out.count(f"note: {laid.folder / name}: column 1 has no name (a saved pandas index): left out") == 1
    assert "features: 5 numeric, 2 categorical" in out   # island, sex; bill, flipper, mass, year; no index
    out = ok(capsys, "train", laid.spec_path, "--data", laid.folder, "--name", "lin", *LINEAR)
    assert out.count("column 1 has no name") == 2
    state = json.loads((home / "runs" / "penguins" / "lin" / "fold0" / "meta.json").read_text())["preprocessor"]
    features = state["numeric"] + state["categorical"]
    assert "Unnamed: 0" not in features and "bill_length_mm" in features and len(features) == 7
    ok(capsys, "train", laid.spec_path, "--data", laid.folder, "--name", "lin2", *LINEAR, "--set", "scaling=none")
    ok(capsys, "blend", laid.spec_path, "lin", "lin2", "--method", "mean", "--name", "m")
    for name in ("lin", "m"):   # a blend's members read the file once each: the note is said once
        out = ok(capsys, "predict", laid.spec_path, "--run", name, "--test", laid.folder / "test.csv",
                 "--out", home / f"{name}.csv")
        assert out.count("column 1 has no name") == 1
        assert list(pd.read_csv(home / f"{name}.csv").columns) == ["Id", "Adelie", "Chinstrap", "Gentoo"]


def test_only_a_column_without_a_name_is_left_out(tmp_path, capsys):
    said = []
    (tmp_path / "a.csv").write_text(",Id,x\n0,a,1\n1,b,2\n")
    (tmp_path / "b.csv").write_text("Unnamed: 0,Id,x\n0,a,1\n1,b,2\n")   # a name, whatever it looks like
    (tmp_path / "c.csv").write_text("Id,x, \na,1,p\nb,2,q\n")            # a blank name over values
    assert list(tabular_data.read_table(tmp_path / "a.csv", "Id", say=said.append).columns) == ["Id", "x"]
    assert list(tabular_data.read_table(tmp_path / "b.csv", "Id", say=said.append).columns) == ["Unnamed: 0", "Id", "x"]
    assert list(tabular_data.read_table(tmp_path / "c.csv", "Id", say=said.append).columns) == ["Id", "x"]
    assert said == [f"note: {tmp_path / 'a.csv'}: column 1 has no name (a saved pandas index): left out",
                    f"note: {tmp_path / 'c.csv'}: column 3 has no name (name it in the header to use it): left out"]


def test_a_feature_missing_from_test_csv_is_blamed_on_test_csv(home, tmp_path, capsys):
    laid = layout("penguins", tmp_path / "penguins", rows=150)
    ok(capsys, "train", laid.spec_path, "--data", laid.folder, "--name", "lin", *LINEAR)
    test = pd.read_csv(laid.folder / "test.csv", dtype=str).drop(columns=["island"])
    test.to_csv(tmp_path / "lacking.csv", index=False)
    code, _, err = run(capsys, "predict", laid.spec_path, "--run", "lin", "--test", tmp_path / "lacking.csv",
                       "--out", home / "p.csv")
    assert code == 2 and err.count("\n") == 1 and not (home / "p.csv").exists()
    assert f"{tmp_path / 'lacking.csv'}: no column 'island', which train.csv has as a feature (run lin was " \
           f"trained on it)" in err
    broken = tmp_path / "broken"
    shutil.copytree(laid.folder, broken)
    test.to_csv(broken / "test.csv", index=False)
    code, _, err = run(capsys, "train", laid.spec_path, "--data", broken, "--name", "bad", *LINEAR)
    assert code == 2 and err.count("\n") == 1
    assert (f"error: {broken / 'test.csv'}: no column 'island', which train.csv has as a feature (add it to "
            f"test.csv, or list it under drop: in penguins.yaml)") in err
    assert not (home / "runs" / "penguins" / "bad").exists()
    with pytest.raises(UserError) as exc:   # two missing: the first named, the others counted
        tabular_data.feature_frame(test.drop(columns=["sex"]), ["bill_length_mm"], ["island", "sex"],
                                   broken / "test.csv", "Id")
    assert "no column 'island' (nor 1 more: 'sex'), which train.csv has as a feature" in str(exc.value)


@pytest.mark.parametrize("check", ["test_fields", "test_metric_direction_is_consistent",
                                   "test_submission_accepts_a_well_formed_frame_and_rejects_malformed_ones",
                                   "test_blend_space_round_trips", "test_verbs_exist"])
@pytest.mark.parametrize("engine", ["tabular", "images"])
def test_binary_probabilities_specs_keep_the_protocol(engine, check, tmp_path):
    """A binary spec with submission: probabilities is a Competition like any other: its shared
    stages (blends) write id + P(positive)."""
    import test_competition_protocol as protocol
    from pipelines import competition
    from pipelines.images import competition as images
    from pipelines.tabular import competition as tabular

    values = {"name": f"shape-{engine}", "kind": engine, "id": "id", "target": "label", "task": "binary",
              "metric": "logloss", "submission": "probabilities"}
    if engine == "images":
        values.update(labels="trainLabels.csv", train_images="train")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(values))
    made = (tabular if engine == "tabular" else images).from_file(path)
    assert made.submission.columns == ("id", "label") and made.submission.format == "probabilities"
    competition.register(made)
    test = getattr(protocol, check)
    comp = competition.get(made.name)
    test(comp, tmp_path) if "tmp_path" in test.__code__.co_varnames[:test.__code__.co_argcount] else test(comp)
