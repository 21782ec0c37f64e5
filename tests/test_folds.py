import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pipelines import folds, kfold
from pipelines.errors import UserError


def test_folds_are_deterministic_and_cover_every_row():
    y = np.random.default_rng(0).lognormal(12, 0.4, size=500)
    a = folds.make_folds(y, 5, seed=7)
    b = folds.make_folds(y, 5, seed=7)
    c = folds.make_folds(y, 5, seed=8)
    assert (a == b).all() and not (a == c).all()
    assert set(a) == set(range(5)) and np.bincount(a).min() >= 99


def test_label_folds_are_stratified():
    labels = np.array([0] * 900 + [1] * 100)
    assigned = folds.make_folds(labels, 5, seed=0)
    for fold in range(5):
        assert (labels[assigned == fold] == 1).sum() == 20


def test_binned_folds_balance_a_continuous_target():
    y = np.arange(1000, dtype=float)
    assigned = folds.make_folds(y, 5, seed=0, stratify="bins")
    means = [y[assigned == k].mean() for k in range(5)]
    assert max(means) - min(means) < 25  # random folds would often differ by more


@given(n=st.integers(2, 200), k=st.integers(2, 10), seed=st.integers(0, 2**31 - 1),
       classes=st.integers(1, 4))
@settings(max_examples=60, deadline=None)
def test_fold_property_every_row_once(n, k, seed, classes):
    labels = np.arange(n) % classes
    if k > n:
        with pytest.raises(UserError):
            folds.make_folds(labels, k, seed)
        return
    assigned = folds.make_folds(labels, k, seed)
    assert assigned.shape == (n,) and assigned.min() >= 0 and assigned.max() < k
    assert len(np.unique(assigned)) == k  # no empty fold
    assert (assigned == folds.make_folds(labels, k, seed)).all()


@pytest.mark.parametrize("k", [0, 1, 2.5])
def test_bad_fold_counts(k):
    with pytest.raises(UserError, match="folds"):
        folds.make_folds(np.arange(10), k, 0)


def test_fold_list_parsing():
    assert kfold.parse_fold_list("0,2", 5) == [0, 2]
    assert kfold.parse_fold_list("1-3", 5) == [1, 2, 3]
    assert kfold.parse_fold_list(None, 3) == [0, 1, 2]
    with pytest.raises(UserError, match="outside 0..4"):
        kfold.parse_fold_list("5", 5)
    with pytest.raises(UserError, match="expected fold numbers"):
        kfold.parse_fold_list("a", 5)


def test_kfold_engine_oof_and_test_average():
    assigned = np.array([0, 1, 2, 0, 1, 2])
    target = np.arange(6, dtype=float)

    def fit_fold(fold, train_index, valid_index):
        assert not set(train_index) & set(valid_index)
        return kfold.FoldOutput(target[valid_index] + fold, np.array([fold, 10.0]))

    result = kfold.run(assigned, fit_fold, lambda idx, p: {"err": float(np.abs(p - target[idx]).mean())}, "err")
    assert result.oof_prediction.tolist() == [0, 2, 4, 3, 5, 7]
    assert result.test_prediction.tolist() == [1.0, 10.0]
    assert result.cv["err"] == pytest.approx(1.0)
    assert [s["err"] for s in result.fold_scores] == [0, 1, 2]
