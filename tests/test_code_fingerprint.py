"""A run resumed under changed code is refused: its finished folds were trained by the old code.

The code changes in copies of the package under tmp_path, never in the package itself: the tests
point resume.code_fingerprint at a copy (the fingerprint of a folder named pipelines/ has the same
keys as the real package's).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import pipelines
from pipelines import resume
from pipelines.cli import main
from pipelines.competitions.house_prices import task as house
from pipelines.errors import UserError

PACKAGE = Path(pipelines.__file__).resolve().parent
FINGERPRINT = resume.code_fingerprint
DATA = {"train_sha": "aaa", "test_sha": "bbb"}
REFUSED = (r"^run 'r' cannot be resumed: the code changed since it started \(pipelines/training\.py changed\); "
           r"pass --restart to start it over, or choose another --name$")


def _copy(tmp_path: Path, version: str, edit: dict[str, str | None] | None = None) -> Path:
    """A copy of the package in tmp_path/version/pipelines, with files appended to (text), added
    (text, new file) or removed (None)."""
    root = tmp_path / version / "pipelines"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    for name, text in (edit or {}).items():
        if text is None:
            (root / name).unlink()
        else:
            with open(root / name, "a") as f:
                f.write(text)
    return root


def _use(monkeypatch, root: Path) -> None:
    """Make this process's code the package copy at root."""
    monkeypatch.setattr(resume, "code_fingerprint", lambda: FINGERPRINT(root))


def _cfg(**values):
    return house.load_config("mlp", values)


def _state(path: Path) -> dict:
    return json.loads((path / resume.STATE).read_text())


def test_fingerprint_covers_the_package_sources_and_names_what_changed(tmp_path):
    same = resume.code_fingerprint(_copy(tmp_path, "same"))
    assert resume.code_fingerprint() == resume.code_fingerprint(PACKAGE) == same
    assert all(f.startswith("pipelines/") and f.endswith(".py") for f in same["files"])
    assert "pipelines/training.py" in same["files"] and "pipelines/competitions/house_prices/task.py" in same["files"]

    edited = resume.code_fingerprint(_copy(tmp_path, "edited", {"training.py": "\n# changed\n"}))
    assert edited["hash"] != same["hash"]
    assert [f for f in same["files"] if same["files"][f] != edited["files"][f]] == ["pipelines/training.py"]

    many = resume.code_fingerprint(_copy(tmp_path, "many", {"training.py": "#\n", "new.py": "", "kfold.py": "#\n",
                                                            "report.py": None, "cli.py": "#\n"}))
    assert resume._code_changes(same, many) == ("the code changed since it started (pipelines/cli.py changed, "
                                                "pipelines/kfold.py changed, pipelines/new.py added, and 2 more)")
    (tmp_path / "same" / "pipelines" / "training.py").write_text("")
    assert resume.code_fingerprint(tmp_path / "same" / "pipelines") == same  # once per process (and folder)


def test_a_run_under_changed_code_is_refused_until_restarted(home, tmp_path, monkeypatch):
    _use(monkeypatch, _copy(tmp_path, "old"))
    first = resume.open_run("house-prices", "r", _cfg(), DATA)
    assert _state(first.path)["code"] == resume.code_fingerprint()
    (first.path / "fold0").mkdir()
    (first.path / "fold0" / "predictions.safetensors").write_bytes(b"fold 0 of the old code")
    resume.release(first.path)
    assert resume.open_run("house-prices", "r", _cfg(), DATA).resumed  # same code resumes
    resume.release(first.path)
    state = (first.path / resume.STATE).read_bytes()

    _use(monkeypatch, _copy(tmp_path, "new", {"training.py": "\n# changed\n"}))
    with pytest.raises(UserError, match=REFUSED) as refused:
        resume.open_run("house-prices", "r", _cfg(), DATA)
    assert "\n" not in str(refused.value)
    assert (first.path / "fold0" / "predictions.safetensors").read_bytes() == b"fold 0 of the old code"
    assert (first.path / resume.STATE).read_bytes() == state

    restarted = resume.open_run("house-prices", "r", _cfg(), DATA, restart=True)
    assert not restarted.resumed and not (restarted.path / "fold0").exists()
    assert _state(restarted.path)["code"] == resume.code_fingerprint()
    resume.release(restarted.path)
    assert resume.open_run("house-prices", "r", _cfg(), DATA).resumed
    resume.release(restarted.path)


def test_without_a_name_a_run_of_other_code_is_not_resumed(home, tmp_path, monkeypatch):
    _use(monkeypatch, _copy(tmp_path, "old"))
    old = resume.open_run("house-prices", None, _cfg(), DATA)
    resume.release(old.path)
    _use(monkeypatch, _copy(tmp_path, "new", {"new.py": "x = 1\n"}))
    new = resume.open_run("house-prices", None, _cfg(), DATA)
    assert new.path != old.path and not new.resumed
    resume.release(new.path)
    assert resume.open_run("house-prices", None, _cfg(), DATA).path == new.path
    resume.release(new.path)


def test_a_run_state_from_before_the_code_fingerprint_resumes(home, tmp_path, monkeypatch):
    _use(monkeypatch, _copy(tmp_path, "old"))
    run = resume.open_run("house-prices", "legacy", _cfg(), DATA)
    resume.release(run.path)
    state = _state(run.path)
    del state["code"]
    (run.path / resume.STATE).write_text(json.dumps(state))
    _use(monkeypatch, _copy(tmp_path, "new", {"training.py": "\n# changed\n"}))
    assert resume.open_run("house-prices", "legacy", _cfg(), DATA).resumed
    resume.release(run.path)
    assert resume.open_run("house-prices", None, _cfg(), DATA).path == run.path  # the no-name match too
    resume.release(run.path)
    assert "code" not in _state(run.path)


def test_cli_refuses_a_house_run_under_changed_code(home, house_data, tmp_path, monkeypatch, capsys):
    argv = ["train", "house-prices", "--config", "mlp", "--data", str(house_data), "--name", "r", "--device", "cpu",
            "--quiet", "--set", "epochs=1", "--set", "folds=2", "--set", "seeds_per_fold=1", "--set", "hidden=[8]"]
    _use(monkeypatch, _copy(tmp_path, "old"))
    assert main([*argv, "--folds", "0"]) == 0
    fold0 = home / "runs" / "house-prices" / "r" / "fold0"
    kept = {p: p.read_bytes() for p in fold0.rglob("*") if p.is_file() and p.name != resume.LOCK}
    capsys.readouterr()
    _use(monkeypatch, _copy(tmp_path, "new", {"training.py": "\n# changed\n"}))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: run 'r' cannot be resumed: the code changed since it "
                                                   "started (pipelines/training.py changed); pass --restart")
    assert kept and {p: p.read_bytes() for p in kept} == kept
    assert main([*argv, "--folds", "0", "--restart"]) == 0
    assert _state(fold0.parent)["code"] == resume.code_fingerprint()
