import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
HOUSE = SHARED / "house-prices"
DOGS = SHARED / "dogs-vs-cats"

os.environ.setdefault("PIPELINES_QUIET", "1")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh project home: runs/, submissions/ and data/ go under tmp_path."""
    monkeypatch.setenv("PIPELINES_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def house_data():
    assert (HOUSE / "train.csv").exists(), f"real House Prices data expected in {HOUSE}"
    return HOUSE
