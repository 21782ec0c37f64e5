"""Resume: a run killed with SIGKILL mid-epoch and rerun ends exactly as a run never interrupted.

The killed run is a real CLI subprocess; PIPELINES_TEST_KILL_AT makes it SIGKILL itself after a
given step of a given epoch of a given fold (and member), so the kill lands mid-epoch every time.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import ROOT
from pipelines import resume, train_state, training
from pipelines.cli import main
from pipelines.competitions.house_prices import task as house
from pipelines.errors import UserError
from pipelines.training import Resume, TrainSettings


# --------------------------------------------------------------------------- fit() alone

def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, generator=g)
    x = torch.randn(96, 6, generator=g)
    y = x @ w + 0.3 * torch.randn(96, generator=g)
    xv = torch.randn(32, 6, generator=g)
    yv = xv @ w + 0.3 * torch.randn(32, generator=g)

    def batches(epoch):
        order = torch.randperm(96, generator=torch.Generator().manual_seed(1000 + epoch))
        for start in range(0, 96, 16):
            index = order[start:start + 16]
            yield x[index], y[index]

    def evaluate(net):
        return {"loss": float(((net(xv) - yv) ** 2).mean())}
    return batches, evaluate


def _net(seed=3):
    torch.manual_seed(seed)  # dropout below draws from the global torch RNG: resuming must restore it
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1), nn.Flatten(0))


class Stop(Exception):
    pass


def _fit(folder, settings, stop_at=None):
    batches, evaluate = _problem()

    def maybe_stopping(epoch):
        for i, batch in enumerate(batches(epoch), 1):
            if stop_at == (epoch + 1, i):
                raise Stop  # mid-epoch, as a kill would be
            yield batch
    net = _net()
    state = Resume(folder, "fold 0 seed 3", {"fold": 0}) if folder is not None else None
    result = training.fit(net, maybe_stopping, 6, nn.MSELoss(), evaluate, settings, torch.device("cpu"),
                          resume=state)
    return net, result


def _same(a, b):
    assert a[1].best_epoch == b[1].best_epoch and a[1].best_score == b[1].best_score
    assert a[1].epochs_run == b[1].epochs_run
    strip = [[{k: v for k, v in r.items() if k != "seconds"} for r in x[1].history] for x in (a, b)]
    assert strip[0] == strip[1]
    for key in a[1].best_state:
        assert torch.equal(a[1].best_state[key], b[1].best_state[key]), key
    for key, value in a[0].state_dict().items():
        assert torch.equal(value, b[0].state_dict()[key]), key


SETTINGS = {
    "adamw+warmup": TrainSettings(epochs=8, lr=1e-2, weight_decay=0.01, warmup_epochs=1.5, monitor="loss"),
    "sgd+ema+patience": TrainSettings(epochs=20, lr=0.05, optimizer="sgd", momentum=0.9, ema=0.9, patience=3,
                                      grad_clip=1.0, monitor="loss"),
    "adam+constant+last": TrainSettings(epochs=6, lr=1e-2, optimizer="adam", schedule="constant", keep="last",
                                        monitor="loss"),
}


@pytest.mark.parametrize("name", SETTINGS)
@pytest.mark.parametrize("stop_at", [(1, 3), (3, 2), (5, 6)])
def test_fit_resumed_mid_epoch_equals_uninterrupted(tmp_path, name, stop_at):
    settings = SETTINGS[name]
    whole = _fit(None, settings)
    with pytest.raises(Stop):
        _fit(tmp_path / "last", settings, stop_at)
    saved = [p.name for p in (tmp_path / "last").iterdir()] if (tmp_path / "last").exists() else []
    assert all(n.endswith((".safetensors", ".json")) for n in saved)  # no pickle files
    _same(whole, _fit(tmp_path / "last", settings))


def test_fit_resumes_without_unpickling(tmp_path, monkeypatch):
    settings = SETTINGS["sgd+ema+patience"]
    with pytest.raises(Stop):
        _fit(tmp_path / "last", settings, (4, 1))

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling during resume")
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    _same(_fit(None, settings), _fit(tmp_path / "last", settings))


def test_finished_or_early_stopped_fit_is_not_trained_again(tmp_path):
    settings = SETTINGS["sgd+ema+patience"]
    first = _fit(tmp_path / "last", settings)
    assert first[1].epochs_run < settings.epochs  # early stopping fired

    def no_batches(epoch):
        raise AssertionError("trained again")
        yield
    _, evaluate = _problem()
    again = training.fit(_net(), no_batches, 6, nn.MSELoss(), evaluate, settings, torch.device("cpu"),
                         resume=Resume(tmp_path / "last", "fold 0 seed 3"))
    assert again.best_epoch == first[1].best_epoch and again.epochs_run == first[1].epochs_run


def test_state_keeps_two_pairs_and_survives_a_torn_newest(tmp_path):
    settings = SETTINGS["adamw+warmup"]
    with pytest.raises(Stop):
        _fit(tmp_path / "last", settings, (5, 1))
    names = sorted(p.name for p in (tmp_path / "last").iterdir())
    assert names == ["state-00003.json", "state-00003.safetensors", "state-00004.json", "state-00004.safetensors"]
    # a kill between the two files of epoch 4: tensors of a newer write, JSON of the old one
    (tmp_path / "last" / "state-00004.json").write_text("{\"tag\": \"fold 0 seed 3\", \"token\": \"stale\"}")
    tensors, meta = train_state.load(Resume(tmp_path / "last", "fold 0 seed 3"))
    assert meta["epoch"] == 3
    _same(_fit(None, settings), _fit(tmp_path / "last", settings))


def test_state_of_another_training_is_ignored_and_another_config_refused(tmp_path):
    settings = SETTINGS["adamw+warmup"]
    with pytest.raises(Stop):
        _fit(tmp_path / "last", settings, (3, 1))
    assert train_state.load(Resume(tmp_path / "last", "fold 0 seed 4")) is None  # other tag: not ours

    changed = TrainSettings(**{**settings.__dict__, "lr": 0.5})
    with pytest.raises(UserError, match=r"lr=0.01, this run has lr=0.5.*--restart"):
        _fit(tmp_path / "last", changed)

    batches, evaluate = _problem()
    wider = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1), nn.Flatten(0))
    with pytest.raises(UserError, match=r"another model \(0.weight has shape \(16, 6\) there, \(32, 6\) in the model\)"):
        training.fit(wider, batches, 6, nn.MSELoss(), evaluate, settings, torch.device("cpu"),
                     resume=Resume(tmp_path / "last", "fold 0 seed 3"))


# --------------------------------------------------------------------------- the run folder

def _cfg(**values):
    return house.load_config("mlp", values)


def test_open_run_resumes_matches_and_refuses_differences(home):
    data = {"train_sha": "aaa", "test_sha": "bbb"}
    first = resume.open_run("house-prices", "r", _cfg(), data)
    assert not first.resumed and json.loads((first.path / "run_state.json").read_text())["data"] == data
    (first.path / "folds.csv").write_text("id,fold\n")
    assert resume.open_run("house-prices", "r", _cfg(), data).resumed
    with pytest.raises(UserError, match=r"started with epochs=100, this command has epochs=5; pass --restart"):
        resume.open_run("house-prices", "r", _cfg(epochs=5), data)
    with pytest.raises(UserError, match=r"other data \(train_sha 'aaa', now 'ccc'\)"):
        resume.open_run("house-prices", "r", _cfg(), {**data, "train_sha": "ccc"})
    restarted = resume.open_run("house-prices", "r", _cfg(epochs=5), data, restart=True)
    assert not restarted.resumed and not (restarted.path / "folds.csv").exists()
    assert json.loads((restarted.path / "run_state.json").read_text())["config"]["epochs"] == 5
    resume.release(restarted.path)


def test_without_a_name_the_newest_unfinished_matching_run_is_resumed(home):
    data = {"train_sha": "aaa", "test_sha": None}
    first = resume.open_run("house-prices", None, _cfg(), data)
    assert first.path.name.startswith("mlp-")
    again = resume.open_run("house-prices", None, _cfg(), data)
    assert again.path == first.path and again.resumed
    other = resume.open_run("house-prices", None, _cfg(epochs=7), data)  # other config: a new run...
    assert other.path != first.path
    resume.release(other.path)
    resume.mark_recorded(first, [0, 1])  # ... and a finished run is not resumed
    resume.release(first.path)
    (home / "runs" / "house-prices" / "fresh").mkdir()
    assert resume.open_run("house-prices", "fresh", _cfg(), data).path.name == "fresh"


def test_a_run_being_trained_by_another_process_is_refused(home):
    path = home / "runs" / "house-prices" / "busy"
    path.mkdir(parents=True)
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT)
    os.write(fd, b"4242\n")
    fcntl.flock(fd, fcntl.LOCK_EX)  # another open file: flock conflicts even within one process
    try:
        with pytest.raises(UserError, match=r"being trained by another process \(pid 4242\)"):
            resume.open_run("house-prices", "busy", _cfg(), {})
    finally:
        os.close(fd)


def test_older_run_folders_are_not_resumed_blindly(home):
    path = home / "runs" / "house-prices" / "old"
    path.mkdir(parents=True)
    (path / "run.json").write_text("{}")
    with pytest.raises(UserError, match="without run_state.json.*--restart"):
        resume.open_run("house-prices", "old", _cfg(), {})


# --------------------------------------------------------------------------- SIGKILL, real CLI

@pytest.fixture
def one_thread():
    """Tiny models: one torch thread is faster on a shared CPU, and the subprocess gets the same."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _killed(argv, home, kill_at):
    """Run the CLI in a subprocess that SIGKILLs itself at kill_at; same torch threads as this process."""
    env = {**os.environ, "PIPELINES_HOME": str(home), "PIPELINES_QUIET": "1", "PIPELINES_TEST_KILL_AT": kill_at,
           "OMP_NUM_THREADS": str(torch.get_num_threads()), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "pipelines", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]


HOUSE_SETS = ["--set", "epochs=6", "--set", "folds=3", "--set", "patience=0", "--set", "seeds_per_fold=2",
              "--set", "hidden=[32]"]


def test_house_run_killed_mid_epoch_then_rerun_equals_uninterrupted(home, house_data, capsys, monkeypatch,
                                                                    one_thread):
    monkeypatch.delenv(train_state.KILL_ENV, raising=False)

    def argv(name):
        return ["train", "house-prices", "--config", "mlp", "--data", str(house_data), "--name", name,
                "--device", "cpu", "--quiet", *HOUSE_SETS]
    runs = home / "runs" / "house-prices"
    _killed(argv("cut"), home, "fold=1,member=1,epoch=3,step=5")
    assert (runs / "cut" / "fold0" / "predictions.safetensors").exists()   # fold 0 finished
    assert (runs / "cut" / "fold1" / "member0" / "meta.json").exists()     # member 0 of fold 1 finished
    assert not (runs / "cut" / "fold1" / "member1").exists()
    state = json.loads((runs / "cut" / "fold1" / "last" / "state-00002.json").read_text())
    assert state["tag"] == "fold 1 member 1 seed 143" and state["epoch"] == 2
    assert not (runs / "cut" / "run.json").exists() and not (runs / "cut" / "oof.csv").exists()

    assert main(argv("cut")) == 0
    resumed_out = capsys.readouterr().out
    assert "resuming run cut" in resumed_out
    assert main(argv("whole")) == 0
    whole_out = capsys.readouterr().out
    for name in ("oof.csv", "test_predictions.csv", "folds.csv"):
        assert (runs / "cut" / name).read_bytes() == (runs / "whole" / name).read_bytes(), name
    metrics = [json.loads((runs / n / "metrics.json").read_text()) for n in ("cut", "whole")]
    assert metrics[0]["cv"] == metrics[1]["cv"]
    assert [f["rmse_log"] for f in metrics[0]["folds"]] == [f["rmse_log"] for f in metrics[1]["folds"]]
    cv_line = [[line for line in out.splitlines() if line.startswith("CV ")] for out in (resumed_out, whole_out)]
    assert cv_line[0] == cv_line[1] and cv_line[0]
    run = json.loads((runs / "cut" / "run.json").read_text())
    assert run["resumed_folds"] == [0]
    assert not (runs / "cut" / "fold1" / "last").exists()  # training state goes once the fold is final
    for fold in range(3):
        for member in range(2):
            a, _ = house.checkpoint.load(runs / "cut" / f"fold{fold}" / f"member{member}")
            b, _ = house.checkpoint.load(runs / "whole" / f"fold{fold}" / f"member{member}")
            assert all(torch.equal(a[k], b[k]) for k in a)

    # rerunning a finished run trains nothing and does not add a second leaderboard row
    assert main(argv("cut")) == 0
    assert (runs / "cut" / "oof.csv").read_bytes() == (runs / "whole" / "oof.csv").read_bytes()
    rows = [json.loads(line) for line in (home / "runs" / "registry.jsonl").read_text().splitlines()]
    assert [r["run"] for r in rows].count("cut") == 1


def _small_dogs(source: Path, root: Path) -> Path:
    """16 cats, 16 dogs and 4 test images linked from source (the drawn look-alikes)."""
    for kind in ("cat", "dog"):
        files = sorted((source / "train").glob(f"{kind}.*.jpg"), key=lambda p: int(p.name.split(".")[1]))[:16]
        assert len(files) == 16, f"expected 16 {kind} images in {source / 'train'}"
        for f in files:
            (root / "train").mkdir(parents=True, exist_ok=True)
            (root / "train" / f.name).symlink_to(f)
    (root / "test1").mkdir()
    for i in (1, 2, 3, 4):
        (root / "test1" / f"{i}.jpg").symlink_to(source / "test1" / f"{i}.jpg")
    return root


def test_dogs_run_killed_mid_epoch_then_rerun_equals_uninterrupted(home, dogs_data, tmp_path, capsys, monkeypatch,
                                                                   one_thread):
    """From scratch with augmentation (random crops, flips, colour jitter), dropout-free modern LeNet."""
    monkeypatch.delenv(train_state.KILL_ENV, raising=False)
    data = _small_dogs(dogs_data, tmp_path / "d")

    def argv(name):
        return ["train", "dogs-vs-cats", "--config", "lenet-modern", "--data", str(data), "--name", name,
                "--device", "cpu", "--quiet", "--set", "folds=2", "--set", "epochs=4", "--set", "batch_size=8",
                "--set", "crop_scale=0.6", "--set", "color_jitter=0.2", "--set", "hflip=true",
                "--set", "ema=0.9"]
    runs = home / "runs" / "dogs-vs-cats"
    _killed(argv("cut"), home, "fold=1,epoch=3,step=1")
    assert (runs / "cut" / "fold0" / "predictions.safetensors").exists()
    assert (runs / "cut" / "fold1" / "last" / "state-00002.json").exists()
    assert main(argv("cut")) == 0
    assert main(argv("whole")) == 0
    capsys.readouterr()
    for name in ("oof.csv", "test_predictions.csv"):
        assert (runs / "cut" / name).read_bytes() == (runs / "whole" / name).read_bytes(), name
    metrics = [json.loads((runs / n / "metrics.json").read_text()) for n in ("cut", "whole")]
    assert metrics[0]["cv"] == metrics[1]["cv"]
    oof = np.loadtxt(runs / "cut" / "oof.csv", delimiter=",", skiprows=1, usecols=4)
    assert np.isfinite(oof).all()
