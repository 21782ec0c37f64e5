"""Reliability: atomic artifacts, a full disk, the registry under concurrent writers, safe
loading of checkpoints, bad input the other test files do not already try, the determinism
switch, and property-based tests of the fold splitter and the Dogs vs. Cats submission rules.

Cases already covered elsewhere (not repeated here): missing/non-numeric columns, bad prices,
duplicate Ids, empty and header-only CSVs, BOM + CRLF read (test_house_prices.py); every kind
of bad or odd image and the half-built or stale image cache (test_dogs_data.py); config typos,
wrong types and ranges (test_config.py); fold splitter with class labels and --folds parsing
(test_folds.py); the House Prices submission validator (test_submission.py).
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, strategies as st

from conftest import ROOT
from pipelines import atomic, checkpoint, folds, registry as leaderboard
from pipelines.cli import main
from pipelines.competitions.dogs_vs_cats import task as dogs
from pipelines.competitions.house_prices.data import read_csv
from pipelines.errors import DiskFull, UserError
from pipelines.submission import validate

TINY = ["--set", "epochs=1", "--set", "folds=2", "--set", "hidden=[8]", "--device", "cpu", "--quiet"]


def house_train(data, name, *extra):
    return main(["train", "house-prices", "--config", "mlp", "--data", str(data), "--name", name, *TINY, *extra])


def temp_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in folder.rglob(".*") if p.is_file() and ".tmp" in p.name]


def one_error_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------- atomic artifacts

def test_a_write_interrupted_midway_leaves_the_old_file(tmp_path):
    target = tmp_path / "oof.csv"
    atomic.write_text(target, "old\n")

    def half(tmp):
        tmp.write_text("new, half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        atomic.write_with(target, half)
    assert target.read_text() == "old\n" and temp_files(tmp_path) == []


def test_a_process_killed_inside_a_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "submission.csv"
    atomic.write_text(target, "old\n")
    script = textwrap.dedent(f"""
        import os, signal
        from pipelines import atomic
        def half(tmp):
            with open(tmp, "w") as fh:
                fh.write("new, half")
                fh.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        atomic.write_with({str(target)!r}, half)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert done.returncode == -9
    assert target.read_text() == "old\n"  # only a stray temporary file beside it, never read


def _disk_full_on(monkeypatch, name_part: str):
    real = pathlib.Path.write_bytes

    def write_bytes(self, data):
        if name_part in self.name:
            with open(self, "wb") as fh:
                fh.write(data[: len(data) // 2])  # the disk fills half way through
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)
    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)


def test_full_disk_in_an_atomic_write_keeps_the_old_file_and_names_the_path(tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    atomic.write_json(target, {"cv": 1})
    _disk_full_on(monkeypatch, "run.json")
    with pytest.raises(DiskFull, match=r"cannot write .*run.json: No space left on device"):
        atomic.write_json(target, {"cv": 2})
    assert json.loads(target.read_text()) == {"cv": 1} and temp_files(tmp_path) == []


def test_full_disk_during_train_is_one_line_and_the_rerun_finishes(home, house_data, monkeypatch, capsys):
    assert house_train(house_data, "full", "--folds", "0") == 0
    run_dir = home / "runs" / "house-prices" / "full"
    before = (run_dir / "oof.csv").read_bytes()
    capsys.readouterr()
    with monkeypatch.context() as mp:
        _disk_full_on(mp, "oof.csv")
        assert house_train(house_data, "full", "--folds", "0") == 1
    err = one_error_line(capsys.readouterr().err)
    assert "oof.csv: No space left on device" in err and "rerun the same command" in err
    assert (run_dir / "oof.csv").read_bytes() == before and temp_files(run_dir) == []
    assert house_train(house_data, "full", "--folds", "0") == 0  # space freed: the same command finishes
    assert (run_dir / "oof.csv").read_bytes() == before


def test_enospc_from_any_write_is_one_line(home, monkeypatch, capsys):
    def fail(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/cache/images.npy")
    monkeypatch.setattr("pipelines.competitions.house_prices.cli.prepare", fail)
    assert main(["prepare", "house-prices", "--data", str(home)]) == 1
    assert "cannot write /data/cache/images.npy: No space left on device" in one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- registry

def test_two_processes_appending_to_the_registry_at_once_lose_nothing(tmp_path):
    registry = tmp_path / "registry.jsonl"
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from pipelines import registry as leaderboard
        for i in range(300):
            leaderboard.append({{"run": sys.argv[1] + str(i), "pad": "x" * 2000}}, Path({str(registry)!r}))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, who], cwd=ROOT) for who in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    rows = [json.loads(line) for line in registry.read_text().splitlines()]
    assert sorted(r["run"] for r in rows) == sorted(f"{w}{i}" for w in "ab" for i in range(300))


def test_a_registry_line_cut_by_a_crash_costs_only_that_line(tmp_path):
    registry = tmp_path / "registry.jsonl"
    leaderboard.append({"run": "a", "competition": "c", "cv": 1.0}, registry)
    with open(registry, "ab") as fh:
        fh.write(b'{"run": "cut", "compet')  # a kill mid-line
    leaderboard.append({"run": "b", "competition": "c", "cv": 2.0}, registry)
    assert [r["run"] for r in leaderboard.read(registry)] == ["a", "b"]


# --------------------------------------------------------------------------- safe loading

@pytest.fixture
def house_run(home, house_data):
    assert house_train(house_data, "ok") == 0
    return home / "runs" / "house-prices" / "ok"


def _predict(run_dir, house_data, home):
    return main(["predict", "house-prices", "--run", str(run_dir), "--test", str(house_data / "test.csv"),
                 "--out", str(home / "p.csv"), "--device", "cpu"])


def test_checkpoints_load_without_unpickling(house_run, house_data, home, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")
    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    assert _predict(house_run, house_data, home) == 0


def test_a_checkpoint_of_another_config_is_refused_naming_the_key(house_run, house_data, home, capsys):
    meta_path = house_run / "fold1" / "member0" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["dropout"] = 0.25
    meta_path.write_text(json.dumps(meta))
    assert _predict(house_run, house_data, home) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "another config" in err and "dropout=0.5 vs dropout=0.25" in err


def test_weights_that_do_not_fit_the_model_are_refused_naming_the_tensor(house_run, house_data, home, capsys):
    for meta_path in house_run.glob("fold*/member*/meta.json"):
        meta = json.loads(meta_path.read_text())
        meta["config"]["hidden"] = [16]
        meta_path.write_text(json.dumps(meta))
    assert _predict(house_run, house_data, home) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "weights do not fit the mlp model" in err and "body.0.weight has shape (8, " in err


def test_a_pickle_named_safetensors_is_refused_and_never_unpickled(tmp_path, monkeypatch):
    folder = tmp_path / "fold0"
    checkpoint.save(folder, {"w": torch.ones(2)}, {"competition": "house-prices"})
    torch.save({"w": torch.ones(2)}, folder / checkpoint.WEIGHTS)  # a pickle in disguise
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    with pytest.raises(UserError, match="cannot read weights"):
        checkpoint.load(folder)
    (folder / checkpoint.META).write_text("{half")
    with pytest.raises(UserError, match="not valid JSON"):
        checkpoint.load(folder)


def test_dogs_fold_checkpoints_of_different_configs_are_refused(tmp_path):
    for fold, arch in ((0, "lenet"), (1, "lenet-modern")):
        cfg = dogs.DogsConfig(name="x", arch=arch)
        checkpoint.save(tmp_path / f"fold{fold}", {"w": torch.ones(1)},
                        dogs._meta(cfg, fold, {"mean": [0.5] * 3, "std": [0.5] * 3}, {}))
    with pytest.raises(UserError, match=r"fold1: checkpoint from another config than fold0 "
                                        r"\(arch='lenet' vs arch='lenet-modern'\)"):
        dogs._load_folds(tmp_path)


# --------------------------------------------------------------------------- bad CSVs

def _house_frame(house_data):
    return pd.read_csv(house_data / "train.csv", keep_default_na=False)


@pytest.mark.parametrize("content, message", [
    (lambda f: f.assign(Id=f["Id"].astype(object).where(f.index != 4, "")).to_csv(index=False).encode(),
     "row 6: Id is missing"),
    (lambda f: f.to_csv(index=False, sep=";").encode(), "separated by ';', not by commas"),
    (lambda f: f.to_csv(index=False, sep="\t").encode(), "separated by '\\t'"),
    (lambda f: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "not a readable CSV"),
    (lambda f: f.to_csv(index=False).encode("utf-8").replace(b"CollgCr", "Coll\xe9".encode("latin-1"), 1),
     "not a readable CSV"),
    (lambda f: b"\n\n\n", "not a readable CSV"),
])
def test_more_bad_train_files(home, house_data, tmp_path, capsys, content, message):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.csv").write_bytes(content(_house_frame(house_data)))
    assert house_train(tmp_path / "bad", "bad") == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not (home / "runs").exists()  # nothing written, nothing to clean up


def test_bad_test_csv_stops_train_before_any_run_folder(home, house_data, tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.csv").symlink_to(house_data / "train.csv")
    test = pd.read_csv(house_data / "test.csv", keep_default_na=False)
    test.assign(Id=test["Id"].where(test.index != 7, test["Id"].iloc[0])).to_csv(tmp_path / "d" / "test.csv",
                                                                                  index=False)
    assert house_train(tmp_path / "d", "bad") == 2
    assert f"row 9: duplicate Id {test['Id'].iloc[0]}" in one_error_line(capsys.readouterr().err)
    assert not (home / "runs").exists()


def test_extra_columns_and_reordered_columns_just_work(house_data, tmp_path):
    frame = _house_frame(house_data)
    shuffled = frame[list(reversed(frame.columns))].assign(Notes="seen on Zillow", Unnamed=1)
    shuffled.to_csv(tmp_path / "train.csv", index=False)
    a = read_csv(tmp_path / "train.csv", with_target=True)
    b = read_csv(house_data / "train.csv", with_target=True)
    pd.testing.assert_frame_equal(a[b.columns], b)


def test_bom_and_crlf_files_train_and_predict_end_to_end(home, house_data, tmp_path, capsys):
    data = tmp_path / "windows"
    data.mkdir()
    for name in ("train.csv", "test.csv"):
        raw = (house_data / name).read_bytes()
        (data / name).write_bytes(b"\xef\xbb\xbf" + raw.replace(b"\n", b"\r\n"))
    assert house_train(data, "win", "--folds", "0") == 0
    assert house_train(house_data, "unix", "--folds", "0") == 0
    runs = home / "runs" / "house-prices"
    assert (runs / "win" / "oof.csv").read_bytes() == (runs / "unix" / "oof.csv").read_bytes()
    assert (runs / "win" / "test_predictions.csv").read_bytes() == (runs / "unix" / "test_predictions.csv").read_bytes()


# --------------------------------------------------------------------------- options and configs

@pytest.mark.parametrize("argv, message", [
    (["--set", "epoch=3"], "unknown key 'epoch' (did you mean 'epochs'?)"),
    (["--set", "lr=fast"], "lr must be a number, got 'fast'"),
    (["--set", "dropout=-0.1"], "dropout=-0.1 must be at least 0.0"),
    (["--set", "folds=50"], "folds=50 must be at most 20"),
    (["--folds", "2"], "--folds '2': fold 2 is outside 0..1"),
    (["--folds", "-1"], "--folds '-1': expected fold numbers"),
    (["--folds", "0-5"], "fold 2 is outside 0..1"),
    (["--device", "tpu"], "--device 'tpu' is not one of"),
])
def test_bad_options_are_one_line_and_create_nothing(home, house_data, capsys, argv, message):
    assert house_train(house_data, "x", *argv) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not (home / "runs").exists()


def test_dogs_config_typo_names_the_closest_key(home, capsys):
    assert main(["train", "dogs-vs-cats", "--config", "lenet", "--set", "image_sise=64", "--data", str(home)]) == 2
    assert "did you mean 'image_size'" in one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- determinism switch

def test_deterministic_switch(home, house_data, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        assert house_train(house_data, "det", "--folds", "0", "--deterministic") == 0
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    run = json.loads((home / "runs" / "house-prices" / "det" / "run.json").read_text())
    assert run["deterministic"] is True
    assert house_train(house_data, "plain", "--folds", "0") == 0
    plain = json.loads((home / "runs" / "house-prices" / "plain" / "run.json").read_text())
    assert plain["deterministic"] is False and plain["cv"] == run["cv"]  # the CPU was deterministic already


# --------------------------------------------------------------------------- properties

@given(values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=150),
       k=st.integers(2, 8), seed=st.integers(0, 2**31 - 1), stratify=st.sampled_from(["bins", "none", "auto"]),
       ties=st.booleans())
@settings(max_examples=80, deadline=None)
def test_fold_property_continuous_targets(values, k, seed, stratify, ties):
    target = np.round(np.array(values), 0 if not ties else -5)  # many equal values when ties
    if k > len(target):
        with pytest.raises(UserError, match="more than the"):
            folds.make_folds(target, k, seed, stratify)
        return
    assigned = folds.make_folds(target, k, seed, stratify)
    assert assigned.shape == target.shape and set(assigned.tolist()) == set(range(k))
    sizes = np.bincount(assigned, minlength=k)
    assert sizes.max() - sizes.min() <= (1 if stratify == "none" else max(1, len(target) // k))
    assert (assigned == folds.make_folds(target, k, seed, stratify)).all()


@given(expected=st.lists(st.integers(1, 12500), min_size=1, max_size=20, unique=True), data=st.data())
@settings(max_examples=80, deadline=None)
def test_dogs_submission_validator_accepts_exactly_the_valid_ones(expected, data):
    ids = data.draw(st.lists(st.sampled_from(expected + [0, 12501]), max_size=25))
    probs = data.draw(st.lists(st.one_of(st.floats(-0.5, 1.5), st.sampled_from([np.nan, np.inf, 0.0, 1.0])),
                               min_size=len(ids), max_size=len(ids)))
    valid = sorted(ids) == sorted(expected) and all(np.isfinite(p) and 0 <= p <= 1 for p in probs)
    frame = pd.DataFrame({"id": ids, "label": probs})
    try:
        validate(frame, **dogs.submission_rules(expected))
        accepted = True
    except UserError as exc:
        assert "\n" not in str(exc)
        accepted = False
    assert accepted == valid
