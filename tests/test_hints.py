"""Every hint the package prints runs as printed, and a spec competition is known by name once it has
been used by its path (pipelines/specs.py).

Each hint (a `next: ...` line, or a command in backquotes inside a message) is collected from what
the command printed and run in a new process, word for word, from the folder it was printed in, the
way a user would paste it (pipelines/hints.py: the interpreter as that folder reaches it; `make`
targets only where the project's Makefile is). Placeholders in a hint (DIR) are the one thing
filled in. A new process matters: a name that only the process that loaded the spec
knows would pass in-process and fail for the user.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines import specs
from pipelines.cli import main
from tabular_data import layout

ROOT = Path(__file__).resolve().parent.parent
HINT = re.compile(r"next: (.+?)\s*$|`((?:\S*python\S* -m pipelines|make) [^`]+)`", re.M)

pytestmark = pytest.mark.usefixtures("own_registry")


def hints(text: str) -> list[str]:
    return [a or b for a, b in HINT.findall(text)]


def paste(hint: str, cwd: Path, home: Path, fill: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a printed hint as a user would, word for word, from the folder it was printed in and
    under the same PIPELINES_HOME. `make` also gets PY and STAMP: its setup step is done (this
    Python is installed), which a user's `make` finds for itself."""
    argv = [(fill or {}).get(word, word) for word in shlex.split(hint)]
    if argv[0] == "make":
        stamp = home / "installed.stamp"
        stamp.touch()
        argv += [f"PY={sys.executable}", f"STAMP={stamp}"]
    else:
        assert argv[1:3] == ["-m", "pipelines"], f"not a pipelines command: {hint}"
    env = {**os.environ, "PIPELINES_HOME": str(home), "PIPELINES_QUIET": "1"}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"hint {hint!r} failed ({done.returncode}): {done.stderr.strip()[-500:]}"
    return done


def python_here(cwd: Path) -> str:
    """How a hint printed in cwd spells this interpreter (pipelines.hints.python, seen from cwd)."""
    here = Path(sys.executable).absolute()
    try:
        return str(here.relative_to(cwd))
    except ValueError:
        return str(here)


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out + err


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    return layout("churn", tmp_path_factory.mktemp("tables") / "churn", rows=400)


def test_a_spec_used_once_by_path_is_known_by_name_and_its_hints_run(home, churn, capsys, monkeypatch):
    spec = churn.spec_path
    monkeypatch.chdir(home)
    py = f"{python_here(home)} -m pipelines"
    # train before the data is there: the hint says how to bring it, by the competition's name
    code, said = run(capsys, "train", spec, "--config", "linear")
    assert code == 2 and "no churn data" in said
    prepare = [h for h in hints(said) if " prepare " in h]
    assert prepare == [f"{py} prepare churn --data DIR"], said
    paste(prepare[0], home, home, {"DIR": str(churn.folder)})
    assert (home / "data" / "churn" / "train.csv").exists()

    # from here on the name alone, each command a new process
    trained = paste(f"{py} train churn --config linear --name lin", home, home)
    (submit,) = hints(trained.stdout)
    assert submit == f"{py} submit churn --run lin"
    paste(submit, home, home)
    assert len(pd.read_csv(home / "submissions" / "churn" / "lin.csv")) == churn.test_rows

    paste(f"{py} train churn --config lightgbm --name lgb", home, home)
    blended = paste(f"{py} blend churn lin lgb --method weights --name both", home, home)
    assert hints(blended.stdout) == [f"{py} submit churn --run both"]
    # in the project folder, where the Makefile is, the same step is offered as a make target
    in_project = paste(f"{py} blend churn lin lgb --method mean --name mean", ROOT, home)
    (make_submit,) = hints(in_project.stdout)
    assert make_submit == "make submit COMP=churn RUN=mean"
    paste(make_submit, ROOT, home)
    assert (home / "submissions" / "churn" / "mean.csv").exists()

    # two trials of a continuous range draw two different runs: the hint compares them
    swept = paste(f"{py} sweep churn --config lightgbm --trials 2 --search lr=0.02:0.2:log --seed 3", home, home)
    (compare,) = hints(swept.stdout)
    assert compare.startswith(f"{py} compare churn ")
    paste(compare, home, home)
    # one trial: no runner-up, and the hint submits the winner instead
    alone = paste(f"{py} sweep churn --config lightgbm --trials 1 --search num_leaves=[8,16] --name one "
                  f"--rerun-seeds none", home, home)
    (submit,) = hints(alone.stdout)
    assert submit.startswith(f"{py} submit churn --run one-")
    paste(submit, home, home)

    for command in (f"{py} leaderboard churn", f"{py} report churn --run both",
                    f"{py} predict churn --run both --test {churn.folder / 'test.csv'} --out {home / 'again.csv'}"):
        paste(command, home, home)
    for command in ("make leaderboard COMP=churn", "make train COMP=churn EXP=linear ARGS=--folds=0"):
        paste(command, ROOT, home)
    assert len(pd.read_csv(home / "again.csv")) == churn.test_rows


def test_unknown_names_list_the_known_specs(home, churn, capsys):
    assert run(capsys, "prepare", churn.spec_path, "--data", churn.folder)[0] == 0
    done = subprocess.run([sys.executable, "-m", "pipelines", "submit", "chrun", "--run", "x"], cwd=home,
                          env={**os.environ, "PIPELINES_HOME": str(home)}, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "unknown competition 'chrun' (did you mean 'churn'?)" in done.stderr
    for name in ("house-prices", "dogs-vs-cats", "cifar-10", "churn", "spec file's path"):
        assert name in done.stderr


def test_a_spec_in_the_users_folder_is_known_by_its_name(home, churn, capsys):
    folder = home / specs.USER_FOLDER
    folder.mkdir()
    (folder / "my-table.yaml").write_text(churn.spec_path.read_text())   # the file name need not be the name
    code, said = run(capsys, "train", "churn", "--data", churn.folder, "--config", "linear", "--folds", "0")
    assert code == 0 and "CV auc" in said
    assert not (home / "runs" / "churn" / specs.REMEMBERED).exists()   # found in the folder, nothing remembered


def test_a_remembered_spec_that_moved_is_one_line(home, churn, capsys, tmp_path):
    moved = tmp_path / "churn.yaml"
    moved.write_text(churn.spec_path.read_text())
    assert run(capsys, "prepare", moved, "--data", churn.folder)[0] == 0
    moved.unlink()
    done = subprocess.run([sys.executable, "-m", "pipelines", "submit", "churn", "--run", "x"], cwd=home,
                          env={**os.environ, "PIPELINES_HOME": str(home)}, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"its spec {moved} (remembered from an earlier use by path) is gone" in done.stderr


def test_builtin_hints_run(home, house_data, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)   # where a user runs make: the hints are make targets
    code, said = run(capsys, "train", "house-prices", "--config", "d2l-linear", "--data", house_data, "--name",
                     "lin", "--set", "folds=2", "--device", "cpu")
    assert code == 0
    (submit,) = hints(said)
    assert submit == "make submit COMP=house-prices RUN=lin"
    paste(submit, ROOT, home)
    assert (home / "submissions" / "house-prices" / "lin.csv").exists()
    monkeypatch.chdir(home)   # elsewhere: the command line, with the interpreter as seen from there
    code, said = run(capsys, "train", "house-prices", "--config", "d2l-linear", "--data", house_data, "--name",
                     "lin2", "--set", "folds=2", "--device", "cpu")
    (submit,) = hints(said)
    assert submit == f"{python_here(home)} -m pipelines submit house-prices --run lin2"
    paste(submit, home, home)


def test_the_command_line_itself(home, capsys):
    done = subprocess.run([sys.executable, "-m", "pipelines"], capture_output=True, text=True, cwd=home,
                          env={**os.environ, "PIPELINES_HOME": str(home)})
    assert done.returncode == 0
    for verb in ("prepare", "train", "predict", "submit", "blend", "sweep", "leaderboard"):
        assert f"    {verb}" in done.stdout
    assert "cifar-10" in done.stdout and "spec file's path" in done.stdout
    version = subprocess.run([sys.executable, "-m", "pipelines", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and re.fullmatch(r"pipelines \d+\.\d+\.\d+\n", version.stdout)
    # a reader that leaves early (`| head -1`) ends the command quietly, not with a traceback
    (home / "runs").mkdir()
    (home / "runs" / "registry.jsonl").write_text("".join(
        f'{{"competition": "churn", "run": "r{i}", "config": "linear", "metric": "auc", "cv": 0.{i}, '
        f'"greater_is_better": true}}\n' for i in range(1, 10)) * 400)
    piped = subprocess.run(f"{shlex.quote(sys.executable)} -m pipelines leaderboard | head -1", shell=True,
                           capture_output=True, text=True, cwd=home, env={**os.environ, "PIPELINES_HOME": str(home)})
    assert piped.stdout.count("\n") == 1 and "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr
    # verbs a competition lacks are not offered to it
    code, said = run(capsys, "summary", "house-prices")
    assert code == 2 and "summary is offered by dogs-vs-cats" in said
    help_text = subprocess.run([sys.executable, "-m", "pipelines", "summary", "--help"], capture_output=True,
                               text=True).stdout
    assert "dogs-vs-cats" in help_text and "house-prices" not in help_text
    for verb, words in (("train", "per-fold lines"), ("leaderboard", "changes nothing"), ("submit", "--kaggle")):
        text = subprocess.run([sys.executable, "-m", "pipelines", verb, "--help"], capture_output=True,
                              text=True).stdout
        assert words in " ".join(text.split()), verb
