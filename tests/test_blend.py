"""The blend verb: runs sharing folds blended into a run of their own, with an honest (nested) CV.

Most tests build tiny runs with the same writers training uses (folds.csv, oof.csv through the
k-fold engine, test_predictions.csv through the competition's submission writer, run.json and
the registry row through runs.record), with known predictions, so numbers can be checked exactly.
"""

import json

import numpy as np
import pandas as pd
import pytest

from pipelines import atomic, blending as blend, folds as folding, kfold, paths, runs, submission
from pipelines.cli import main
from pipelines.competitions.dogs_vs_cats import task as dogs
from pipelines.competitions.house_prices import task as house
from pipelines.errors import UserError
from pipelines.metrics import log_loss, rmse_log

HOUSE, DOGS = "house-prices", "dogs-vs-cats"
N, N_TEST, K = 400, 50, 5


# --------------------------------------------------------------------------- synthetic runs

def _engine(folds, valid, test, score, metric, only_folds=None):
    """The shared k-fold engine, with 'models' that return the given predictions."""
    return kfold.run(folds, lambda fold, tr, va: kfold.FoldOutput(valid[va], test), score, metric, only_folds)


def house_run(name, truth, pred, test_pred, *, folds, ids=None, train_sha="train-1", test_sha="test-1",
              only_folds=None, seed=42):
    run_dir = paths.new_run_dir(HOUSE, name)
    ids = np.arange(1, len(truth) + 1) if ids is None else ids
    folding.save_folds(run_dir / "folds.csv", ids, folds)
    result = _engine(folds, pred, test_pred, lambda i, p: {"rmse_log": rmse_log(truth[i], p)}, "rmse_log",
                     only_folds)
    oof = pd.DataFrame({"Id": ids, "fold": folds, "SalePrice": truth, "oof_SalePrice": result.oof_prediction})
    atomic.write_text(run_dir / "oof.csv", oof.to_csv(index=False))
    if test_pred is not None:
        test_ids = np.arange(5001, 5001 + len(test_pred))
        house.write_submission(pd.DataFrame({"Id": test_ids, "SalePrice": result.test_prediction}),
                               run_dir / "test_predictions.csv", test_ids)
    runs.record(run_dir, competition=HOUSE, config=house.HouseConfig(name=f"cfg-{name}", seed=seed), result=result,
                metric="rmse_log", greater_is_better=False, wall_s=0.0, device="cpu",
                data={"train": str(paths.home() / "nowhere" / "train.csv"), "train_sha": train_sha,
                      "test_sha": test_sha}, extra={"dataset": HOUSE})
    return run_dir


def dogs_run(name, labels, prob, test_prob, *, folds, clip=0.005, fingerprint="fp-1"):
    run_dir = paths.new_run_dir(DOGS, name)
    ids = np.arange(1, len(labels) + 1)
    keys = np.array([f"{'dog' if y else 'cat'}.{i}.jpg" for i, y in zip(ids, labels)])
    folding.save_folds(run_dir / "folds.csv", keys, folds)
    result = _engine(folds, prob, test_prob, lambda i, p: dogs.scores(labels[i], p, clip), "log_loss")
    oof = pd.DataFrame({"key": keys, "id": ids, "label": labels, "fold": folds, "oof_p_dog": result.oof_prediction})
    atomic.write_text(run_dir / "oof.csv", oof.to_csv(index=False))
    test_ids = np.arange(1, len(test_prob) + 1)
    frame = dogs.submission_frame(test_ids, result.test_prediction, clip)
    dogs.write_submission(frame, run_dir / "test_predictions.csv", test_ids)
    runs.record(run_dir, competition=DOGS, config=dogs.DogsConfig(name=f"cfg-{name}", clip=clip), result=result,
                metric="log_loss", greater_is_better=False, wall_s=0.0, device="cpu",
                data={"train": "somewhere", "train_fingerprint": fingerprint, "test_fingerprint": "t",
                      "test_images": len(test_ids)},
                extra={"accuracy": result.cv["accuracy"], "roc_auc": result.cv["roc_auc"]})
    return run_dir


@pytest.fixture
def house_truth():
    rng = np.random.default_rng(0)
    log_price = rng.normal(12.0, 0.4, N)
    folds = folding.make_folds(log_price, K, 42, "bins")
    return rng, log_price, folds


def noisy_house_runs(house_truth, names=("good", "poor"), sigmas=(0.08, 0.16)):
    """Members whose log-price errors are independent: a better one and a worse one."""
    rng, log_price, folds = house_truth
    test_log = rng.normal(12.0, 0.4, N_TEST)
    for name, sigma in zip(names, sigmas):
        house_run(name, np.exp(log_price), np.exp(log_price + rng.normal(0, sigma, N)),
                  np.exp(test_log + rng.normal(0, sigma, N_TEST)), folds=folds)
    return np.exp(log_price), folds


def oof_of(run_dir, column):
    return pd.read_csv(run_dir / "oof.csv")[column].to_numpy()


# --------------------------------------------------------------------------- exact numbers

def test_mean_blend_house_is_the_geometric_mean_and_its_cv_is_exact(home, house_truth, capsys):
    rng, log_price, folds = house_truth
    truth = np.exp(log_price)
    a, b = truth * np.exp(rng.normal(0, 0.1, N)), truth * np.exp(rng.normal(0.05, 0.2, N))
    ta, tb = rng.uniform(1e5, 3e5, N_TEST), rng.uniform(1e5, 3e5, N_TEST)
    house_run("a", truth, a, ta, folds=folds)
    house_run("b", truth, b, tb, folds=folds)

    assert main(["blend", HOUSE, "a", "b", "--method", "mean", "--name", "m"]) == 0
    out = capsys.readouterr().out
    assert "weight 0.5000" in out and "CV rmse_log" in out

    run_dir = home / "runs" / HOUSE / "m"
    expected = np.sqrt(a * b)  # mean of the log prices
    np.testing.assert_allclose(oof_of(run_dir, "oof_SalePrice"), expected, rtol=1e-12)
    row = json.loads((run_dir / "run.json").read_text())
    assert row["cv"] == pytest.approx(rmse_log(truth, expected), rel=1e-12)
    for fold_score, fold in zip(row["fold_scores"], range(K)):
        index = folds == fold
        assert fold_score == pytest.approx(rmse_log(truth[index], expected[index]), rel=1e-12)
    assert row["config"] == "blend-mean" and row["folds"] == K
    assert row["config_values"]["members"] == ["a", "b"] and row["config_values"]["weights"] == [0.5, 0.5]
    assert row["data"]["train_sha"] == "train-1"
    test = pd.read_csv(run_dir / "test_predictions.csv")
    assert list(test.columns) == ["Id", "SalePrice"]
    np.testing.assert_allclose(test["SalePrice"], np.sqrt(ta * tb), rtol=1e-12)
    assert (run_dir / "folds.csv").read_text() == (home / "runs" / HOUSE / "a" / "folds.csv").read_text()
    assert list(pd.read_csv(run_dir / "oof.csv").columns) == ["Id", "fold", "SalePrice", "oof_SalePrice"]

    assert main(["leaderboard", HOUSE]) == 0
    assert "blend-mean" in capsys.readouterr().out


def test_mean_blend_dogs_averages_clipped_probabilities(home):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, N)
    folds = folding.make_folds(labels, K, 42, "labels")
    pa = np.where(labels == 1, rng.uniform(0.3, 1.0, N), rng.uniform(0.0, 0.7, N))
    pb = rng.uniform(0.0, 1.0, N)
    pa[:3], pb[:3] = 0.0, 1.0  # extremes: the members' clips apply
    dogs_run("a", labels, pa, rng.uniform(0, 1, N_TEST), folds=folds, clip=0.005)
    dogs_run("b", labels, pb, rng.uniform(0, 1, N_TEST), folds=folds, clip=0.01)

    out = blend.blend(DOGS, ["a", "b"], "mean", "m")
    expected = (np.clip(pa, 0.005, 0.995) + np.clip(pb, 0.01, 0.99)) / 2
    np.testing.assert_allclose(out["result"].oof_prediction, expected, rtol=1e-12)
    assert out["row"]["cv"] == pytest.approx(log_loss(labels, np.clip(expected, 0.005, 0.995)), rel=1e-12)
    assert out["config"].clip == 0.005  # the smallest of the members' clips
    run_dir = out["run_dir"]
    assert list(pd.read_csv(run_dir / "oof.csv").columns) == ["key", "id", "label", "fold", "oof_p_dog"]
    assert "accuracy" in out["row"] and "best_clip" in out["result"].cv
    test = pd.read_csv(run_dir / "test_predictions.csv")
    members = [pd.read_csv(home / "runs" / DOGS / n / "test_predictions.csv")["label"] for n in ("a", "b")]
    np.testing.assert_allclose(test["label"], np.clip((members[0] + members[1]) / 2, 0.005, 0.995), rtol=1e-12)


# --------------------------------------------------------------------------- fitted weights

def test_weights_are_on_the_simplex_and_beat_the_best_member(home, house_truth):
    noisy_house_runs(house_truth)
    out = blend.blend(HOUSE, ["good", "poor"], "weights", "w")
    weights = np.array(out["config"].weights)
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0, abs=1e-9)
    assert 0.6 < weights[0] < 0.95  # independent errors 0.08 vs 0.16: optimum near 0.8
    for fold_score in out["result"].fold_scores:
        w = np.array(fold_score["weights"])
        assert (w >= 0).all() and w.sum() == pytest.approx(1.0, abs=1e-9)
    best = min(runs.load_run(home / "runs" / HOUSE / n)["cv"] for n in ("good", "poor"))
    assert out["row"]["cv"] < best


def test_fit_simplex_matches_the_least_squares_optimum():
    rng = np.random.default_rng(3)
    target = rng.normal(0, 1, 2000)
    z = np.column_stack([target + rng.normal(0, s, 2000) for s in (0.5, 1.0)])
    w = blend.fit_simplex(z, target, "squared")
    # two members: the exact optimum on the segment is a* = (t - z0).(z1 - z0) / |z1 - z0|^2
    d = z[:, 1] - z[:, 0]
    exact = float((target - z[:, 0]) @ d / (d @ d))
    assert w == pytest.approx([1 - exact, exact], abs=1e-5) and w.sum() == pytest.approx(1.0)
    assert exact == pytest.approx(0.2, abs=0.03)  # independent errors: s1^2 / (s1^2 + s2^2)
    # the second member makes the first one's error twice over: a* = -1, so its weight is 0, not negative
    error = rng.normal(0, 0.1, 2000)
    z = np.column_stack([target + error, target + 2 * error])
    assert blend.fit_simplex(z, target, "squared") == pytest.approx([1.0, 0.0], abs=1e-6)


@pytest.mark.parametrize("scale", [1.0, 1e5])
def test_fit_simplex_finds_the_optimum_whatever_the_targets_scale(scale):
    """A salary in dollars as much as a log price: the optimiser's tolerances are absolute, and at
    the scale of a price it used to stop at its start (the plain mean)."""
    rng = np.random.default_rng(4)
    target = scale * (1.0 + rng.normal(0, 0.2, 300))
    z = np.column_stack([target + scale * rng.normal(0, s, 300) for s in (0.05, 0.2, 0.2)])
    w = blend.fit_simplex(z, target, "squared")
    assert w[0] > 0.8 and w.sum() == pytest.approx(1.0)


def test_absolute_error_weights_are_the_exact_optimum_and_favour_the_median():
    """loss absolute (a spec scored by mae): the weights minimise the mean absolute error;
    on a skewed target a member predicting the median gets them where squared error prefers the
    mean's."""
    rng = np.random.default_rng(0)
    target = rng.lognormal(0.0, 1.0, 3000) * 1000.0
    z = np.column_stack([np.full(3000, np.median(target)), np.full(3000, target.mean()),
                         target + rng.normal(0.0, 2000.0, 3000)])
    w = blend.fit_simplex(z, target, "absolute")
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0)
    best = np.mean(np.abs(z @ w - target))
    for other in rng.dirichlet(np.ones(3), 300):
        assert best <= np.mean(np.abs(z @ other - target)) * (1 + 1e-4)
    two = z[:, :2]
    assert blend.fit_simplex(two, target, "absolute") == pytest.approx([1.0, 0.0], abs=1e-3)
    assert blend.fit_simplex(two, target, "squared")[1] > 0.9

    from pipelines.tabular.competition import ValueSpace
    from pipelines.tabular.spec import from_dict

    values = {"name": "t", "kind": "tabular", "id": "id", "target": "y", "task": "regression"}
    assert ValueSpace(from_dict({**values, "metric": "mae"}, "t.yaml")).loss == "absolute"
    assert ValueSpace(from_dict({**values, "metric": "rmse"}, "t.yaml")).loss == "squared"


def test_weights_and_stack_on_dogs_logits(home):
    rng = np.random.default_rng(2)
    latent = rng.normal(0, 2.5, 1000)
    labels = (rng.uniform(0, 1, 1000) < 1 / (1 + np.exp(-latent))).astype(int)
    folds = folding.make_folds(labels, K, 42, "labels")
    for name, sigma in (("sharp", 0.7), ("blurry", 1.5)):
        prob = 1 / (1 + np.exp(-(latent + rng.normal(0, sigma, 1000))))
        dogs_run(name, labels, prob, rng.uniform(0, 1, N_TEST), folds=folds)
    best = min(runs.load_run(home / "runs" / DOGS / n)["cv"] for n in ("sharp", "blurry"))
    weighted = blend.blend(DOGS, ["sharp", "blurry"], "weights", "w")
    w = np.array(weighted["config"].weights)
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0) and w[0] > w[1]
    assert weighted["row"]["cv"] < best
    stacked = blend.blend(DOGS, ["sharp", "blurry"], "stack", "s")
    assert stacked["row"]["cv"] < best and stacked["config"].weights[0] > stacked["config"].weights[1]
    assert all("intercept" in s for s in stacked["result"].fold_scores)


@pytest.mark.parametrize("method", ["weights", "stack"])
def test_fold_rows_are_blended_by_a_fit_on_the_other_folds_only(home, house_truth, method):
    truth, folds = noisy_house_runs(house_truth)
    first = blend.blend(HOUSE, ["good", "poor"], method, "first")
    values = np.column_stack([oof_of(home / "runs" / HOUSE / n, "oof_SalePrice") for n in ("good", "poor")])
    ad = blend.adapter(HOUSE)
    for score in first["result"].fold_scores:
        fold = score["fold"]
        other, own = folds != fold, folds == fold
        weights, intercept = blend.fit(method, ad, values[other], truth[other])
        np.testing.assert_allclose(score["weights"], weights, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(first["result"].oof_prediction[own],
                                   np.exp(np.log(values[own]) @ weights + intercept), rtol=1e-9)

    # Change member 'good' on fold 0's rows only: fold 0's weights stay, the others move.
    oof_path = home / "runs" / HOUSE / "good" / "oof.csv"
    frame = pd.read_csv(oof_path)
    noise = np.random.default_rng(9).normal(0, 0.3, int((folds == 0).sum()))
    frame.loc[frame["fold"] == 0, "oof_SalePrice"] *= np.exp(noise)
    atomic.write_text(oof_path, frame.to_csv(index=False))
    second = blend.blend(HOUSE, ["good", "poor"], method, "second")
    before, after = first["result"].fold_scores, second["result"].fold_scores
    assert after[0]["weights"] == before[0]["weights"]
    assert all(after[k]["weights"] != before[k]["weights"] for k in range(1, K))
    assert second["config"].weights != first["config"].weights  # the final fit uses every row


# --------------------------------------------------------------------------- refusals

def _refused(capsys, *argv):
    assert main(["blend", HOUSE, *argv, "--name", "refused"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ")
    assert not (paths.runs_dir(HOUSE) / "refused").exists()
    return err


def test_refuses_runs_that_do_not_share_folds_or_data(home, house_truth, capsys):
    rng, log_price, folds = house_truth
    truth = np.exp(log_price)
    pred = truth * np.exp(rng.normal(0, 0.1, N))
    test = rng.uniform(1e5, 3e5, N_TEST)
    house_run("a", truth, pred, test, folds=folds)
    house_run("b", truth, pred * 1.01, test, folds=folds)

    moved = folds.copy()
    moved[0] = (moved[0] + 1) % K
    house_run("moved", truth, pred, test, folds=moved)
    err = _refused(capsys, "a", "b", "moved")
    assert "run moved" in err and "different fold assignment" in err and "id 1 is in fold" in err

    ids = np.arange(1, N + 1)
    ids[5] = 9999
    house_run("renamed", truth, pred, test, folds=folds, ids=ids)
    err = _refused(capsys, "a", "renamed")
    assert "run renamed" in err and "different fold assignment" in err and "id 9999" in err

    # a plain mean fits nothing: runs of other folds over the same rows (repeated k-fold) average
    assert main(["blend", HOUSE, "a", "moved", "--method", "mean", "--name", "bagged"]) == 0
    capsys.readouterr()
    bagged = pd.read_csv(paths.runs_dir(HOUSE) / "bagged" / "oof.csv")
    assert bagged["oof_SalePrice"].to_numpy() == pytest.approx(pred, rel=1e-9)   # the same predictions twice

    house_run("otherdata", truth, pred, test, folds=folds, train_sha="train-2")
    err = _refused(capsys, "a", "otherdata")
    assert "run otherdata" in err and "different training data" in err

    house_run("partial", truth, pred, test, folds=folds, only_folds=[0, 1, 2, 3])
    err = _refused(capsys, "a", "partial")
    assert "run partial did not train every fold" in err and "fold(s) 4" in err

    house_run("notest", truth, pred, None, folds=folds)
    err = _refused(capsys, "a", "notest")
    assert "run notest has no test_predictions.csv" in err


def test_refuses_bad_member_lists(home, house_truth, capsys):
    rng, log_price, folds = house_truth
    truth = np.exp(log_price)
    house_run("a", truth, truth * 1.1, rng.uniform(1e5, 3e5, N_TEST), folds=folds)
    house_run("b", truth, truth * 0.9, rng.uniform(1e5, 3e5, N_TEST), folds=folds)
    labels = np.arange(N) % 2
    dogs_dir = dogs_run("d", labels, np.full(N, 0.5), np.full(N_TEST, 0.5),
                        folds=folding.make_folds(labels, K, 42, "labels"))

    assert "at least 2 runs" in _refused(capsys, "a")
    assert "run a is given twice" in _refused(capsys, "a", "b", "a")
    assert "run a is given twice" in _refused(capsys, "a", str(home / "runs" / HOUSE / "a"))
    assert "no finished run 'nope'" in _refused(capsys, "a", "nope")
    assert "run d is a 'dogs-vs-cats' run, not house-prices" in _refused(capsys, "a", str(dogs_dir))
    with pytest.raises(UserError, match="unknown competition"):
        blend.blend("titanic", ["a", "b"])


# --------------------------------------------------------------------------- a blend is a run

def test_blend_run_submits_and_can_be_blended_again(home, house_truth, capsys):
    noisy_house_runs(house_truth)
    assert main(["blend", HOUSE, "good", "poor", "--method", "weights", "--name", "bw"]) == 0
    out = capsys.readouterr().out
    assert "good  weight 0." in out and "poor  weight 0." in out and "best member CV" in out

    assert main(["submit", HOUSE, "--run", "bw"]) == 0
    path = home / "submissions" / HOUSE / "bw.csv"
    frame = submission.read(path, **house.submission_rules(np.arange(5001, 5001 + N_TEST)))
    assert len(frame) == N_TEST

    # a blend carries the folds and the data fingerprint, so it blends again
    again = blend.blend(HOUSE, ["bw", "good"], "mean", "again")
    assert again["config"].members == ["bw", "good"]
    with pytest.raises(UserError, match="already exists"):
        blend.blend(HOUSE, ["bw", "good"], "mean", "again")
    assert blend.blend(HOUSE, ["bw", "poor"], "mean", "again", restart=True)["config"].members == ["bw", "poor"]


def test_dogs_blend_submits(home):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, N)
    folds = folding.make_folds(labels, K, 42, "labels")
    for name in ("a", "b"):
        dogs_run(name, labels, rng.uniform(0, 1, N), rng.uniform(0, 1, N_TEST), folds=folds)
    assert main(["blend", DOGS, "a", "b", "--method", "stack", "--name", "st", "--quiet"]) == 0
    assert main(["submit", DOGS, "--run", "st"]) == 0
    frame = submission.read(home / "submissions" / DOGS / "st.csv", **dogs.submission_rules(np.arange(1, N_TEST + 1)))
    assert frame["label"].between(0.005, 0.995).all()


def test_blend_of_two_house_prices_runs(home, house_data):
    for name, lr in (("lin5", "5"), ("lin2", "2")):
        assert main(["train", HOUSE, "--config", "d2l-linear", "--data", str(house_data), "--name", name,
                     "--device", "cpu", "--set", "epochs=3", "--set", "folds=3", "--set", f"lr={lr}"]) == 0
    out = blend.blend(HOUSE, ["lin5", "lin2"], "weights", "real")
    assert out["result"].cv["rows_scored"] == len(pd.read_csv(house_data / "train.csv")) and np.isfinite(out["row"]["cv"])
    assert sum(out["config"].weights) == pytest.approx(1.0)
    assert main(["submit", HOUSE, "--run", "real"]) == 0  # checked against test.csv's ids
    assert len(pd.read_csv(home / "submissions" / HOUSE / "real.csv")) == len(pd.read_csv(house_data / "test.csv"))
    # the blend's report points at its members' reports (their learning curves), by working links
    assert main(["report", HOUSE, "--run", "real"]) == 0
    report = home / "runs" / HOUSE / "real" / "report" / "report.md"
    text = report.read_text()
    for member in ("lin5", "lin2"):
        link = f"../../{member}/report/report.md"
        assert f"]({link})" in text and (report.parent / link).resolve().exists()
