import pytest

from pipelines import config
from pipelines.competitions.house_prices.task import HouseConfig, load_config
from pipelines.errors import UserError


def test_default_config_loads():
    cfg = load_config("mlp")
    assert cfg.name == "mlp" and cfg.model == "mlp" and cfg.folds == 5


def test_unknown_key_names_closest(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: mlp\nlearning_rat: 0.1\n")
    with pytest.raises(UserError, match=r"unknown key 'learning_rat'"):
        load_config(str(path))
    path.write_text("model: mlp\nweight_decy: 0.1\n")
    with pytest.raises(UserError, match=r"did you mean 'weight_decay'"):
        load_config(str(path))


@pytest.mark.parametrize("override, message", [
    ({"folds": "five"}, "folds must be an integer"),
    ({"folds": 1}, "folds=1 must be at least 2"),
    ({"dropout": 1.5}, "dropout=1.5 must be at most"),
    ({"model": "transformer"}, "model='transformer' is not one of"),
    ({"hidden": 64}, "hidden must be a list"),
    ({"skip_linear": "yes"}, "skip_linear must be true or false"),
])
def test_bad_values_are_named(override, message):
    with pytest.raises(UserError, match=message):
        load_config("mlp", override)


def test_unknown_config_name_suggests():
    with pytest.raises(UserError, match="did you mean 'mlp'"):
        load_config("mpl")


def test_overrides_parse_yaml_values():
    values = config.parse_overrides(["lr=3e-4", "hidden=[64, 32]", "drop_outliers=false"])
    cfg = load_config("mlp", values)
    assert cfg.lr == pytest.approx(3e-4) and cfg.hidden == [64, 32] and cfg.drop_outliers is False
    with pytest.raises(UserError, match="KEY=VALUE"):
        config.parse_overrides(["lr"])


def test_invalid_yaml_is_a_user_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: [mlp\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(str(path))


def test_config_hash_ignores_name_only():
    a = config.build(HouseConfig, {"name": "a"}, "x")
    b = config.build(HouseConfig, {"name": "b"}, "x")
    c = config.build(HouseConfig, {"name": "a", "lr": 0.5}, "x")
    assert config.config_hash(a) == config.config_hash(b) != config.config_hash(c)
