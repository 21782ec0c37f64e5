import pandas as pd

from pipelines.cli import main
from pipelines.competitions.house_prices import ames
from pipelines.competitions.house_prices.data import FEATURES, read_csv


def test_ames_split_uses_kaggle_names_and_keeps_prices_aside(tmp_path):
    files = ames.write_split(tmp_path)
    train = read_csv(files["train"], with_target=True)
    test = read_csv(files["test"], with_target=False)
    prices = pd.read_csv(files["test_prices"])
    assert len(train) + len(test) == 2930
    assert set(train["Id"]).isdisjoint(test["Id"]) and "SalePrice" not in test.columns
    assert prices["Id"].tolist() == test["Id"].tolist()
    assert set(FEATURES) <= set(train.columns)
    assert "WD" in set(train["SaleType"]) and "WD " not in set(train["SaleType"])
    again = ames.write_split(tmp_path / "again")
    assert files["train"].read_text() == again["train"].read_text()


def test_demo_prints_cv_and_held_out_score(home, capsys):
    assert main(["demo", "house-prices", "--set", "epochs=3", "--set", "folds=2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "held-out Ames test score" in out and "CV:" in out
    score = float(out.split("held-out Ames test score (log-RMSE on 1465 houses): ")[1].split()[0])
    assert 0.05 < score < 0.6
    written = list((home / "submissions" / "ames-demo").glob("*.csv"))
    assert len(written) == 1
    # an Ames run is never turned into a Kaggle House Prices submission
    assert main(["submit", "house-prices", "--run", written[0].stem]) == 2
    assert "built-in Ames demo data" in capsys.readouterr().err
    assert not (home / "submissions" / "house-prices").exists()
