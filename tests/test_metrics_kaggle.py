"""The metrics Kaggle competitions use, checked against scikit-learn (or a reference formula) on
random predictions, their directions, and the binary threshold chosen out of fold."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from pipelines.errors import UserError
from pipelines.tabular import metrics

RNG = np.random.default_rng(7)


def _binary(n=300):
    truth = RNG.integers(0, 2, n)
    probability = np.clip(0.35 * truth + RNG.uniform(0, 0.65, n), 0, 1)
    return truth, probability


def _multiclass(n=300, k=5):
    truth = RNG.integers(0, k, n)
    logits = RNG.normal(size=(n, k)) + 1.5 * np.eye(k)[truth]
    probability = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return truth, probability


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.62])
def test_binary_decision_metrics_match_scikit_learn(threshold):
    truth, probability = _binary()
    chosen = (probability > threshold).astype(int)
    assert metrics.get("f1")(truth, probability, threshold) == pytest.approx(sk.f1_score(truth, chosen))
    assert metrics.get("f1_macro")(truth, probability, threshold) == pytest.approx(
        sk.f1_score(truth, chosen, average="macro"))
    assert metrics.get("mcc")(truth, probability, threshold) == pytest.approx(sk.matthews_corrcoef(truth, chosen))
    assert metrics.get("accuracy")(truth, probability, threshold) == pytest.approx(sk.accuracy_score(truth, chosen))


def test_multiclass_metrics_match_scikit_learn():
    truth, probability = _multiclass()
    chosen = probability.argmax(axis=1)
    assert metrics.get("f1_macro")(truth, probability) == pytest.approx(sk.f1_score(truth, chosen, average="macro"))
    assert metrics.get("mcc")(truth, probability) == pytest.approx(sk.matthews_corrcoef(truth, chosen))
    assert metrics.get("qwk")(truth, probability) == pytest.approx(
        sk.cohen_kappa_score(truth, chosen, weights="quadratic"))
    assert metrics.get("auc_ovr")(truth, probability) == pytest.approx(
        sk.roc_auc_score(truth, probability, multi_class="ovr", average="macro"))


def test_regression_metrics_match_scikit_learn():
    truth = RNG.uniform(1, 100, 200)
    value = truth + RNG.normal(0, 10, 200)
    assert metrics.get("r2")(truth, value) == pytest.approx(sk.r2_score(truth, value))
    assert metrics.get("mape")(truth, value) == pytest.approx(sk.mean_absolute_percentage_error(truth, value))
    truth[3] = 0.0  # a true zero: scikit-learn's epsilon rule
    assert metrics.get("mape")(truth, value) == pytest.approx(sk.mean_absolute_percentage_error(truth, value))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_map_at_k_matches_its_formula(k):
    truth, probability = _multiclass()
    expected = []
    for row, label in zip(probability, truth):
        top = list(np.argsort(-row, kind="stable")[:k])
        expected.append(1.0 / (top.index(label) + 1) if label in top else 0.0)
    assert metrics.get(f"map@{k}")(truth, probability) == pytest.approx(np.mean(expected))
    assert metrics.get(f"map@{k}").needs == "ranked" and metrics.get(f"map@{k}").greater_is_better
    perfect = np.eye(probability.shape[1])[truth]
    assert metrics.get(f"map@{k}")(truth, perfect) == 1.0


def test_directions_and_tasks():
    assert [n for n in ("r2", "f1", "f1_macro", "mcc", "qwk", "auc_ovr") if not metrics.get(n).greater_is_better] == []
    assert not metrics.get("mape").greater_is_better
    assert "map@K" in metrics.names("multiclass") and "map@K" not in metrics.names("binary")
    assert "qwk" in metrics.names("multiclass") and "f1" in metrics.names("binary")
    with pytest.raises(UserError, match="did you mean 'mape'"):
        metrics.get("mapee")


def test_the_threshold_is_the_best_cut_and_nearest_one_half_among_ties():
    truth, probability = _binary(200)
    for name in ("f1", "f1_macro", "mcc"):
        metric = metrics.get(name)
        chosen = metrics.fit_threshold(metric, truth, probability)
        grid = np.linspace(-0.001, 1.0, 4002)
        best = max(metric(truth, probability, t) for t in grid)
        assert metric(truth, probability, chosen) == pytest.approx(best)
    # every cut scores alike: the threshold stays 0.5
    assert metrics.fit_threshold(metrics.get("f1"), np.array([1, 1]), np.array([0.2, 0.9])) < 0.2
    assert metrics.fit_threshold(metrics.get("mcc"), np.array([0, 1]), np.array([0.3, 0.7])) == pytest.approx(0.5)


def test_thresholds_out_of_fold_never_see_the_fold_they_decide():
    truth, probability = _binary(300)
    folds = np.arange(300) % 3
    per_row = metrics.thresholds_out_of_fold(metrics.get("f1"), truth, probability, folds)
    for fold in range(3):
        others = folds != fold
        assert np.all(per_row[~others] == metrics.fit_threshold(metrics.get("f1"), truth[others], probability[others]))
    changed = probability.copy()
    changed[folds == 0] = RNG.uniform(size=100)  # fold 0's own rows do not move fold 0's threshold
    again = metrics.thresholds_out_of_fold(metrics.get("f1"), truth, changed, folds)
    assert np.all(again[folds == 0] == per_row[folds == 0])


# --------------------------------------------------------------------------- specs that name them

def _spec(tmp_path, table, rows, **changes):
    """A real table laid out as a competition, its spec changed (metric, submission)."""
    import yaml

    from tabular_data import layout

    laid = layout(table, tmp_path / table, rows=rows)
    values = {**yaml.safe_load(laid.spec_path.read_text()), **changes}
    values = {k: v for k, v in values.items() if v is not None}
    path = laid.spec_path.with_name(f"{table}-{changes.get('metric', 'x').replace('@', '-')}.yaml")
    path.write_text(yaml.safe_dump({**values, "name": path.stem}))
    return laid, path


@pytest.mark.parametrize("metric, submission", [("f1", "label"), ("mcc", "label"), ("f1_macro", "label"),
                                                ("auc", "probability"), ("accuracy", "probability")])
def test_the_metric_decides_the_default_submission(tmp_path, metric, submission):
    from pipelines.tabular import spec as specs

    _, path = _spec(tmp_path, "churn", 300, metric=metric, submission=None, positive="yes")
    assert specs.load(path).submission == submission
    _, path = _spec(tmp_path, "penguins", None, metric="map@2", submission=None)
    assert specs.load(path).submission == "ranked"


@pytest.mark.parametrize("changes, message", [
    ({"metric": "map@3", "submission": "probabilities"}, "submission: ranked goes with metric: map@K"),
    ({"metric": "logloss", "submission": "ranked"}, "submission: ranked does not fit metric: logloss"),
    ({"metric": "map@0"}, "unknown metric 'map@0'"),
    ({"metric": "qwk", "task": "binary"}, "metric: qwk does not fit task: binary"),
])
def test_a_metric_that_does_not_fit_is_one_line(tmp_path, changes, message):
    from pipelines.tabular import spec as specs

    _, path = _spec(tmp_path, "penguins", None, **changes)
    with pytest.raises(UserError) as exc:
        specs.load(path)
    assert message in str(exc.value) and "\n" not in str(exc.value) and path.name in str(exc.value)


def test_f1_chooses_its_threshold_out_of_fold_and_the_submission_uses_it(home, tmp_path):
    """A binary F1 competition: the CV is F1 of decisions whose threshold each fold took from the
    other folds; run.json holds the threshold chosen on every row, and submit's labels follow it;
    a blend of two runs chooses its own threshold the same way."""
    import json

    import pandas as pd

    import pipelines as pl
    from pipelines.tabular import spec as specs, task
    from tabular_data import held_out_score

    laid, path = _spec(tmp_path, "churn", 700, metric="f1", submission=None)
    spec = specs.load(path)
    run = pl.train(str(path), "lightgbm", data=laid.folder, name="gbm", overrides={"folds": 3, "n_estimators": 60},
                   device="cpu", quiet=True)
    record = json.loads((run.folder / "run.json").read_text())
    oof = pd.read_csv(run.folder / "oof.csv")
    truth = (oof[spec.target].astype(str) == "yes").to_numpy().astype(int)
    probability, folds = oof[f"oof_{spec.target}"].to_numpy(), oof["fold"].to_numpy()
    per_row = metrics.thresholds_out_of_fold(metrics.get("f1"), truth, probability, folds)
    assert run.cv == pytest.approx(metrics.f1(truth, probability, per_row))
    assert record["threshold"] == pytest.approx(metrics.fit_threshold(metrics.get("f1"), truth, probability))
    assert abs(record["threshold"] - 0.5) > 1e-9  # churn is 14% positive: F1 wants a lower cut than 0.5

    assert pl.submit(str(path), "gbm", quiet=True)
    written = pd.read_csv(home / "submissions" / spec.name / "gbm.csv", dtype=str)
    stored = task.read_predictions(run.folder / "test_predictions.csv", spec)
    expected = np.where(stored[spec.target].to_numpy() > record["threshold"], "yes", "no")
    assert (written[spec.target].to_numpy() == expected).all()
    assert 0 < held_out_score(spec, written, laid.answers_path) <= 1

    pl.train(str(path), "linear", data=laid.folder, name="lin", overrides={"folds": 3}, device="cpu", quiet=True)
    blend = pl.blend(str(path), ["gbm", "lin"], method="weights", name="both", quiet=True)
    blended = pd.read_csv(blend.folder / "oof.csv")
    p = blended[f"oof_{spec.target}"].to_numpy()
    assert blend.cv == pytest.approx(metrics.f1(truth, p, metrics.thresholds_out_of_fold(metrics.get("f1"), truth, p,
                                                                                       folds)))
    assert json.loads((blend.folder / "run.json").read_text())["threshold"] == pytest.approx(
        metrics.fit_threshold(metrics.get("f1"), truth, p))


def test_a_map_at_k_competition_submits_the_k_most_probable_classes(home, tmp_path):
    import pandas as pd

    import pipelines as pl
    from pipelines.tabular import spec as specs, task
    from tabular_data import held_out_score

    laid, path = _spec(tmp_path, "penguins", None, metric="map@2", submission=None)
    spec = specs.load(path)
    template = pd.read_csv(laid.folder / "sample_submission.csv", dtype=str)[[spec.id]]  # Kaggle's ranked shape
    template.assign(**{spec.target: "Adelie Gentoo"}).to_csv(laid.folder / "sample_submission.csv", index=False)
    run = pl.train(str(path), "linear", data=laid.folder, name="lin", overrides={"folds": 3}, device="cpu", quiet=True)
    assert 0.5 < run.cv <= 1.0 and run.metric == "map@2"
    pl.submit(str(path), "lin", quiet=True)
    written = pd.read_csv(home / "submissions" / spec.name / "lin.csv", dtype=str)
    stored = task.read_predictions(run.folder / "test_predictions.csv", spec)
    classes = list(stored.columns[1:])
    for row, (_, predicted) in zip(written[spec.target], stored.iterrows()):
        top = np.argsort(-predicted[classes].to_numpy(float), kind="stable")[:2]
        assert row == " ".join(classes[i] for i in top)
    assert held_out_score(spec, written, laid.answers_path) > 0.9
