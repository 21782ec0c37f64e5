import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from pipelines.competitions.house_prices.task import submission_rules, write_submission
from pipelines.errors import UserError


def frame(ids, prices):
    return pd.DataFrame({"Id": ids, "SalePrice": prices})


def test_good_submission_is_written(tmp_path):
    path = write_submission(frame([1, 2], [100.0, 200.0]), tmp_path / "s.csv", [1, 2])
    assert path.read_text().splitlines() == ["Id,SalePrice", "1,100.0", "2,200.0"]


@pytest.mark.parametrize("ids, prices, message", [
    ([1, 1], [1.0, 2.0], "appears more than once"),
    ([1], [1.0], "missing"),
    ([1, 2, 3], [1.0, 2.0, 3.0], "unexpected"),
    ([1, 2], [1.0, -5.0], "not a finite positive price"),
    ([1, 2], [1.0, np.inf], "not a finite positive price"),
    ([1, 2], [1.0, np.nan], "not a finite positive price"),
])
def test_bad_submissions_are_refused_and_not_written(tmp_path, ids, prices, message):
    target = tmp_path / "s.csv"
    with pytest.raises(UserError, match=message):
        write_submission(frame(ids, prices), target, [1, 2])
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_wrong_header_is_refused(tmp_path):
    with pytest.raises(UserError, match="header must be Id,SalePrice"):
        write_submission(pd.DataFrame({"id": [1], "SalePrice": [1.0]}), tmp_path / "s.csv", [1])


@given(st.lists(st.integers(1, 50), min_size=1, max_size=30), st.data())
@settings(max_examples=80, deadline=None)
def test_validator_accepts_exactly_the_valid_ones(expected, data):
    expected = sorted(set(expected))
    ids = data.draw(st.lists(st.sampled_from(expected + [99]), min_size=0, max_size=40))
    prices = data.draw(st.lists(st.one_of(st.floats(-10, 1e6), st.sampled_from([np.nan, np.inf, -np.inf])), min_size=len(ids), max_size=len(ids)))
    valid = (sorted(ids) == expected and all(np.isfinite(p) and p > 0 for p in prices))
    from pipelines.submission import validate
    try:
        validate(frame(ids, prices), **submission_rules(expected))
        accepted = True
    except UserError:
        accepted = False
    assert accepted == valid
