"""Progress output (pipelines/progress.py): tqdm bars on a terminal only; in a log no bars, a line
per finished fold and a heartbeat at most every HEARTBEAT_S seconds; --quiet keeps the result lines."""

import io

import numpy as np
import pytest
import torch
from tqdm import tqdm

from pipelines import kfold, progress
from pipelines.cli import main
from pipelines.training import TrainSettings, fit


class Terminal(io.StringIO):
    def isatty(self):
        return True


class FakeClock:
    """progress.clock that moves `step` seconds each time it is read."""

    def __init__(self, step):
        self.now, self.step = 1000.0, step

    def __call__(self):
        self.now += self.step
        return self.now


@pytest.fixture
def loud(monkeypatch):
    """Progress output on (the suite runs with PIPELINES_QUIET=1), heartbeats from a fresh start."""
    monkeypatch.delenv("PIPELINES_QUIET", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(progress, "_last_beat", [-float("inf")])


def test_fold_labels():
    assert progress.fold_label(4, 5) == "fold 4/5"
    assert progress.fold_label(4, 5, 0) == "fold 4/5 seed 0"
    assert progress.fold_label(4, 5, 1, word="member") == "fold 4/5 member 1"
    assert (progress.fold_line(2, 5, "rmse_log", 0.123456, 12.34, 14)
            == "fold 2/5: rmse_log 0.12346, kept epoch 14, 12.3 s")
    assert (progress.fold_line(2, 5, "rmse_log", 0.1, 3.0, [14, 20])
            == "fold 2/5: rmse_log 0.10000, kept epochs 14 20, 3.0 s")
    assert progress.fold_line(0, 2, "rmse_log", 0.1, 0.5, 0) == "fold 0/2: rmse_log 0.10000, 0.5 s"  # no epochs


def test_a_log_gets_no_bar_and_at_most_one_heartbeat_per_interval(loud, monkeypatch):
    monkeypatch.setattr(progress, "clock", FakeClock(step=4.0))  # each item: 4 s
    monkeypatch.setattr(progress, "HEARTBEAT_S", 30.0)
    log = io.StringIO()
    items = list(progress.bar(range(100), desc="fold 2/5 seed 0", unit="epoch", file=log))
    assert items == list(range(100))
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and "%|" not in log.getvalue()  # no bar
    # 100 items x 4 s = 400 s (the clock is read once per item): at most 400 / 30 lines
    assert 1 <= len(lines) <= 400 // 30
    assert lines[0].startswith("fold 2/5 seed 0: epoch ") and lines[0].endswith(" s")
    epochs = [int(line.split("epoch ")[1].split("/")[0]) for line in lines]
    assert all(b - a >= 30 // 4 for a, b in zip(epochs, epochs[1:]))  # >= 30 s apart


def test_a_short_loop_says_nothing_and_nested_loops_share_the_interval(loud, monkeypatch):
    monkeypatch.setattr(progress, "clock", FakeClock(step=1.0))
    monkeypatch.setattr(progress, "HEARTBEAT_S", 30.0)
    log = io.StringIO()
    for _ in progress.bar(range(5), desc="short", file=log):
        pass
    assert log.getvalue() == ""
    outer = progress.bar(range(20), desc="outer", unit="epoch", file=log)
    for _ in outer:
        for batch in range(1, 11):
            progress.poke(outer, f"batch {batch}/10")
    lines = log.getvalue().splitlines()
    # ~220 clock reads of 1 s: at most one line per 30 s over both loops together
    assert 1 <= len(lines) <= 220 // 30
    assert any(", batch " in line for line in lines) and lines[0].startswith("outer: epoch ")


def test_a_terminal_gets_tqdm_bars(loud):
    screen = Terminal()
    bar = progress.bar(range(3), desc="fold 1/5", unit="epoch", file=screen)
    assert isinstance(bar, tqdm)
    assert list(bar) == [0, 1, 2]
    bar.close()
    assert "fold 1/5" in screen.getvalue() and "\r" in screen.getvalue()


def test_quiet_means_no_bar_and_no_heartbeat(loud, monkeypatch):
    monkeypatch.setenv("PIPELINES_QUIET", "1")
    monkeypatch.setattr(progress, "clock", FakeClock(step=100.0))
    for stream in (Terminal(), io.StringIO()):
        assert list(progress.bar(range(10), desc="x", file=stream)) == list(range(10))
        assert stream.getvalue() == ""


def test_kfold_prints_one_line_per_finished_fold(loud, capsys):
    target = np.arange(10, dtype=float)
    folds = np.arange(10) % 2

    def fit_fold(fold, train_index, valid_index):
        return kfold.FoldOutput(target[valid_index] + 0.5, None, {"best_epoch": 3})

    kfold.run(folds, fit_fold, lambda idx, p: {"err": float(np.abs(p - target[idx]).mean())}, "err")
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split(" s")[0].rsplit(", ", 1)[0] for line in lines] == [
        "fold 0/2: err 0.50000, kept epoch 3", "fold 1/2: err 0.50000, kept epoch 3"]
    assert captured.err == ""  # no bar of the folds in a log


def test_fit_heartbeats_in_a_log(loud, monkeypatch, capsys):
    monkeypatch.setattr(progress, "clock", FakeClock(step=7.0))
    torch.manual_seed(0)
    x, y = torch.randn(32, 3), torch.randn(32, 1)
    model = torch.nn.Linear(3, 1)

    def batches(epoch):
        for start in range(0, 32, 8):
            yield x[start:start + 8], y[start:start + 8]

    def evaluate(net):
        return {"loss": float(torch.nn.functional.mse_loss(net(x), y))}

    fit(model, batches, 4, torch.nn.functional.mse_loss, evaluate, TrainSettings(epochs=6, lr=0.01),
        torch.device("cpu"), desc=progress.fold_label(2, 5, 0))
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines and all(line.startswith("fold 2/5 seed 0: epoch ") for line in lines)
    assert "\r" not in err and len(lines) <= 6 * 5 * 7 // 30 + 1


def test_cli_log_output(home, house_data, loud, capsys):
    """A whole training to a log: per-fold lines and the results on stdout, no bars."""
    assert main(["train", "house-prices", "--config", "mlp", "--data", str(house_data), "--name", "log",
                 "--device", "cpu", "--set", "epochs=2", "--set", "folds=2", "--set", "hidden=[8]"]) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "%|" not in captured.err
    fold_lines = [line for line in captured.out.splitlines() if line.startswith("fold ") and "/2:" in line]
    assert [line.split(":")[0] for line in fold_lines] == ["fold 0/2", "fold 1/2"]
    assert "kept epoch" in fold_lines[0] and "fold 0.0" not in captured.out + captured.err
    assert "CV rmse_log:" in captured.out


def test_quiet_keeps_the_result_lines(home, house_data, loud, capsys):
    assert main(["train", "house-prices", "--config", "lasso", "--data", str(house_data), "--name", "q",
                 "--quiet", "--set", "folds=2"]) == 0
    captured = capsys.readouterr()
    assert "CV rmse_log:" in captured.out and "per fold:" in captured.out and "dir:" in captured.out
    assert [line.split(":")[0] for line in captured.out.splitlines() if line.startswith("fold ")
            and "/2:" in line] == ["fold 0/2", "fold 1/2"]
    assert "\r" not in captured.err and "%|" not in captured.err and " s (" not in captured.err


def test_a_notebook_gets_notebook_bars_not_heartbeats(loud, monkeypatch):
    """In a Jupyter kernel stderr is no terminal, but the bars are tqdm.auto's (widgets, or text
    bars without ipywidgets), never heartbeat lines; outside one (IPython loaded in a plain shell)
    the log rules stay."""
    import sys
    import types

    shell = types.SimpleNamespace(config={"IPKernelApp": {"connection_file": "kernel.json"}})
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", fake)
    log = io.StringIO()
    assert progress.notebook()
    bar = progress.bar(range(3), desc="folds", unit="fold", file=log)
    assert isinstance(bar, tqdm) and list(bar) == [0, 1, 2]
    bar.close()
    assert log.getvalue() == ""  # nothing written to the log stream
    shell.config = {}  # IPython in a terminal, not a kernel
    assert not progress.notebook()
    assert not isinstance(progress.bar(range(3), file=log), tqdm)
