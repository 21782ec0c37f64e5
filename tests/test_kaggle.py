"""Kaggle integration against a stand-in `kaggle` executable (there is no network here).

The stand-in is put first on PATH. It records its argv (one JSON list per line) and
answers each command with a canned reply in the output formats of Kaggle's real CLI:
1.5.x (swagger client: 'complete', 'None', an "outdated API version" warning line) and
2.x (kagglesdk: a ref column, 'SubmissionStatus.COMPLETE', empty scores while pending).
"""

import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import kaggle, registry as leaderboard
from pipelines import hints
from pipelines.cli import main
from pipelines.errors import UserError

HOUSE_SLUG = "house-prices-advanced-regression-techniques"
DOGS_SLUG = "dogs-vs-cats-redux-kernels-edition"

STANDIN = r'''#!{python}
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ["STANDIN_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
scenario = json.load(open(os.environ["STANDIN_SCENARIO"]))
verb = args[1] if len(args) > 1 else ""
reply = scenario.get(verb, {{"stdout": "", "rc": 0}})
if isinstance(reply, list):                 # successive calls get successive replies
    counter = os.environ["STANDIN_LOG"] + "." + verb
    n = int(open(counter).read()) if os.path.exists(counter) else 0
    open(counter, "w").write(str(n + 1))
    reply = reply[min(n, len(reply) - 1)]
if verb == "download" and reply.get("zip"):
    folder = args[args.index("-p") + 1]
    slug = args[args.index("-c") + 1]
    sys.stdout.write("Downloading %s.zip to %s\n" % (slug, folder)); sys.stdout.flush()
    sys.stderr.write("100%|##########| 199k/199k [00:00<00:00, 2.04MB/s]\n"); sys.stderr.flush()
    shutil.copyfile(reply["zip"], os.path.join(folder, slug + ".zip"))
    sys.stdout.write("\n")
sys.stdout.write(reply.get("stdout", "")); sys.stdout.flush()
sys.stderr.write(reply.get("stderr", ""))
sys.exit(reply.get("rc", 0))
'''

# `kaggle competitions download` refused because the rules were not accepted.
FORBIDDEN_15 = {"stdout": "403 - Forbidden\n", "rc": 1}
FORBIDDEN_2X = {"stderr": ("403 Client Error: Forbidden for url: https://api.kaggle.com/v1/"
                           "competitions.CompetitionApiService/ApiDownloadDataFiles\n\n"
                           "You don't have access to this resource.\n"
                           "If this is a competition, you may need to accept its rules first at\n"
                           "  https://www.kaggle.com/competitions/<competition>/rules\n"), "rc": 1}
UNAUTHORIZED_2X = {"stdout": ("Authentication required to call the Kaggle API.\n\nFirst, you will need a Kaggle "
                              "account. You can sign up at\n  https://www.kaggle.com/account/login\n"), "rc": 1}

SUBMIT_2X = {"stderr": "100%|##########| 8.04k/8.04k [00:00<00:00, 21.7kB/s]\n",
             "stdout": ("Submission ref: 41234567\n4 submissions remaining today.\n"
                        "Successfully submitted to House Prices - Advanced Regression Techniques")}
SUBMIT_15 = {"stderr": "100%|##########| 8.04k/8.04k [00:01<00:00, 5.10kB/s]\n",
             "stdout": "Successfully submitted to House Prices - Advanced Regression Techniques"}


def listing_2x(message, status="SubmissionStatus.COMPLETE", public="0.12345", ref="41234567"):
    return {"stdout": (
        "ref,fileName,date,description,status,publicScore,privateScore\n"
        f'{ref},mlp-1.csv,2026-05-01 12:34:56.789000,"{message}",{status},{public},\n'
        "41200000,first.csv,2026-04-30 09:00:00,my first try,SubmissionStatus.ERROR,,\n")}


def listing_15(message, status="complete", public="0.12345"):
    return {"stdout": (
        "Warning: Looks like you're using an outdated API Version, please consider updating "
        "(server 1.5.16 / client 1.5.12)\n"
        "fileName,date,description,status,publicScore,privateScore\n"
        f'mlp-1.csv,2021-03-01 12:34:56,"{message}",{status},{public},None\n'
        "first.csv,2021-02-01 10:00:00,my first try,error,None,None\n")}


@pytest.fixture
def standin(home, tmp_path, monkeypatch):
    """A stand-in `kaggle` first on PATH, credentials in a fresh HOME; returns a helper."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "kaggle"
    script.write_text(STANDIN.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    user_home = tmp_path / "user"
    (user_home / ".kaggle").mkdir(parents=True)
    (user_home / ".kaggle" / "kaggle.json").write_text('{"username": "someone", "key": "0123abcd"}')
    monkeypatch.setenv("HOME", str(user_home))
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_LOG", str(tmp_path / "argv.jsonl"))
    monkeypatch.setenv("STANDIN_SCENARIO", str(tmp_path / "scenario.json"))
    monkeypatch.setattr(kaggle, "POLL_S", 0.01)

    class Standin:
        home = user_home

        def replies(self, **scenario):
            (tmp_path / "scenario.json").write_text(json.dumps(scenario))

        def calls(self):
            log = tmp_path / "argv.jsonl"
            return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    helper = Standin()
    helper.replies()
    return helper


def make_zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return str(path)


def house_zip(tmp_path, house_data):
    """Kaggle's House Prices archive: the four files at the top level."""
    return make_zip(tmp_path / "hp.zip", {name: (house_data / name).read_bytes()
                                          for name in ("train.csv", "test.csv", "sample_submission.csv",
                                                       "data_description.txt") if (house_data / name).exists()})


# --------------------------------------------------------------------------- credentials and install

def test_missing_cli_says_how_to_install(home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))                      # no kaggle anywhere
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    assert main(["prepare", "house-prices"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no House Prices data in ")
    assert "pip install kaggle" in err and "DATA=DIR" in err and "Traceback" not in err


def test_missing_credentials_say_exactly_what_to_do(standin, monkeypatch, capsys):
    (standin.home / ".kaggle" / "kaggle.json").unlink()
    assert kaggle.credentials() is None
    assert main(["prepare", "house-prices"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "https://www.kaggle.com/settings/api" in err and "~/.kaggle/kaggle.json" in err
    assert "KAGGLE_USERNAME and KAGGLE_KEY" in err
    assert f"https://www.kaggle.com/c/{HOUSE_SLUG}/rules" in err
    assert hints.prepare("house-prices", "DIR") in err
    assert standin.calls() == []                                   # nothing was run without credentials


def test_credentials_follow_the_cli_rules(standin, tmp_path, monkeypatch):
    assert kaggle.credentials() == str(standin.home / ".kaggle" / "kaggle.json")
    config = tmp_path / "elsewhere"
    config.mkdir()
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))            # kaggle.json is read there, not in ~/.kaggle
    assert kaggle.credentials() is None
    assert "$KAGGLE_CONFIG_DIR/kaggle.json" in kaggle.credentials_hint("house-prices")
    (config / "kaggle.json").write_text('{"username": "someone"}')
    monkeypatch.setenv("KAGGLE_KEY", "abc")                         # username from the file, key from the env
    assert kaggle.credentials() == str(config / "kaggle.json")
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    assert kaggle.credentials() == "KAGGLE_USERNAME/KAGGLE_KEY"
    (config / "kaggle.json").write_text("{not json")
    with pytest.raises(UserError, match="not a valid kaggle.json"):
        kaggle.credentials()


# --------------------------------------------------------------------------- make data

def test_download_runs_the_cli_and_unpacks_into_data(standin, home, tmp_path, house_data, capsys):
    standin.replies(download={"zip": house_zip(tmp_path, house_data)})
    assert main(["prepare", "house-prices"]) == 0
    [call] = standin.calls()
    folder = call[call.index("-p") + 1]
    assert call == ["competitions", "download", "-c", HOUSE_SLUG, "-p", folder]
    assert Path(folder).parent.parent == home / "data" and not Path(folder).exists()   # temporary, removed
    target = home / "data" / "house-prices"
    assert sorted(p.name for p in target.iterdir()) == sorted(zipfile.ZipFile(tmp_path / "hp.zip").namelist())
    assert (target / "train.csv").read_bytes() == (house_data / "train.csv").read_bytes()
    assert [p.name for p in (home / "data").iterdir()] == ["house-prices"]     # no leftovers
    out = capsys.readouterr().out
    assert "unpacked into" in out and f"train.csv: {len(pd.read_csv(house_data / 'train.csv'))} rows" in out and f"ready in {target}" in out
    # Data already there: prepare checks it, no second download.
    assert main(["prepare", "house-prices"]) == 0 and len(standin.calls()) == 1


def test_dogs_download_keeps_the_image_zips(standin, home, tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("train/cat.0.jpg", b"jpeg")
    archive = make_zip(tmp_path / "dogs.zip", {"train.zip": inner.getvalue(), "test.zip": inner.getvalue(),
                                                "sample_submission.csv": "id,label\n1,0.5\n"})
    standin.replies(download={"zip": archive})
    names = kaggle.download("dogs-vs-cats")
    assert standin.calls()[0][:4] == ["competitions", "download", "-c", DOGS_SLUG]
    assert names == ["sample_submission.csv", "test.zip", "train.zip"]
    assert zipfile.ZipFile(home / "data" / "dogs-vs-cats" / "train.zip").namelist() == ["train/cat.0.jpg"]


@pytest.mark.parametrize("reply", [FORBIDDEN_15, FORBIDDEN_2X], ids=["cli-1.5", "cli-2.x"])
def test_rules_not_accepted_points_at_the_rules_page(standin, home, reply, capsys):
    standin.replies(download=reply)
    assert main(["prepare", "house-prices"]) == 2
    err = capsys.readouterr().err
    assert "(403)" in err and f"accept the rules at https://www.kaggle.com/c/{HOUSE_SLUG}/rules" in err
    assert not (home / "data" / "house-prices").exists()
    assert list((home / "data").iterdir()) == []                  # the temporary folder is gone too


def test_refused_credentials_and_bad_archives(standin, home, tmp_path):
    standin.replies(download=UNAUTHORIZED_2X)
    with pytest.raises(UserError, match="refused the credentials .*kaggle.json.*settings/api"):
        kaggle.download("house-prices")
    standin.replies(download={"zip": make_zip(tmp_path / "x.zip", {"../evil.csv": "x"})})
    with pytest.raises(UserError, match="refusing member '../evil.csv'"):
        kaggle.download("house-prices")
    standin.replies(download={"zip": make_zip(tmp_path / "y.zip", {"readme.txt": "x"})})
    with pytest.raises(UserError, match="held readme.txt, not the expected train.csv"):
        kaggle.download("house-prices")
    assert not (home / "data" / "house-prices").exists()


# --------------------------------------------------------------------------- parsing submissions

def test_parse_both_cli_formats():
    new = kaggle.parse_submissions(listing_2x("run a config mlp CV 0.11974 (commit abc)")["stdout"])
    assert new[0] == {"ref": "41234567", "file": "mlp-1.csv", "submitted": "2026-05-01 12:34:56.789000",
                      "description": "run a config mlp CV 0.11974 (commit abc)", "status": "complete",
                      "public": 0.12345, "private": None}
    assert new[1]["status"] == "error" and new[1]["public"] is None
    old = kaggle.parse_submissions(listing_15("run a config mlp CV 0.1 (commit abc)", "pending", "None")["stdout"])
    assert [(r["ref"], r["status"], r["public"]) for r in old] == [("", "pending", None), ("", "error", None)]
    pending = kaggle.parse_submissions(listing_2x("m", "SubmissionStatus.PENDING", "")["stdout"])
    assert pending[0]["status"] == "pending" and pending[0]["public"] is None
    assert kaggle.parse_submissions("No submissions found\n") == []
    with pytest.raises(UserError, match="cannot read"):
        kaggle.parse_submissions("500 Server Error\n")


# --------------------------------------------------------------------------- make submit KAGGLE=1

def finished_run(home, name="mlp-1", cv=0.11974):
    """A finished House Prices run as `submit` sees it, without training one."""
    run_dir = home / "runs" / "house-prices" / name
    run_dir.mkdir(parents=True)
    row = {"run": name, "competition": "house-prices", "config": "mlp", "metric": "rmse_log",
           "greater_is_better": False, "cv": cv, "cv_std": 0.01, "folds": 5, "wall_s": 1.0, "device": "cpu",
           "date": "2026-05-01T12:00:00", "dataset": "kaggle", "code": {"commit": "abc1234", "dirty": False},
           "data": {"train": str(home / "nowhere" / "train.csv")}, "path": str(run_dir)}
    (run_dir / "run.json").write_text(json.dumps(row))
    pd.DataFrame({"Id": [1461, 1462], "SalePrice": [120000.0, 150000.0]}).to_csv(
        run_dir / "test_predictions.csv", index=False)
    leaderboard.append(row)
    return row


def public_cell(run="mlp-1"):
    """The leaderboard's "public" cell for a run, read from its Markdown table."""
    header, _, *lines = [[c.strip() for c in line.strip("|").split("|")]
                         for line in leaderboard.show(markdown=True).splitlines()]
    row = next(cells for cells in lines if cells[header.index("run")] == run)
    return row[header.index("public")]


MESSAGE = "run mlp-1 config mlp CV 0.11974 (commit abc1234)"


def test_submit_uploads_and_records_the_public_score(standin, home, capsys):
    finished_run(home)
    standin.replies(submit=SUBMIT_2X, submissions=listing_2x(MESSAGE))
    assert main(["submit", "house-prices", "--run", "mlp-1", "--kaggle"]) == 0
    csv_path = home / "submissions" / "house-prices" / "mlp-1.csv"
    assert standin.calls() == [
        ["competitions", "submit", "-c", HOUSE_SLUG, "-f", str(csv_path), "-m", MESSAGE],
        ["competitions", "submissions", "-c", HOUSE_SLUG, "--csv"],
    ]
    out = capsys.readouterr().out
    assert "public score of mlp-1 on Kaggle: 0.12345" in out
    [row] = leaderboard.read()
    assert row["public"] == 0.12345 and row["kaggle"]["ref"] == "41234567"
    assert row["kaggle"]["status"] == "complete"
    assert public_cell() == "0.12345"
    assert "0.12345" in leaderboard.show("house-prices").splitlines()[2].split()
    # The registry stays append-only: one run row, one update row.
    assert [r.get("kind") for r in leaderboard.read_lines()] == [None, "kaggle"]


def test_submit_pending_then_kaggle_scores_reads_it_later(standin, home, capsys):
    finished_run(home)
    standin.replies(submit=SUBMIT_15, submissions=listing_15(MESSAGE, "pending", "None"))
    assert main(["submit", "house-prices", "--run", "mlp-1", "--kaggle"]) == 0
    out = capsys.readouterr().out
    assert "not scored mlp-1 yet" in out and hints.pipelines("kaggle-scores house-prices") in out
    assert public_cell() == "pending"
    standin.replies(submissions=listing_15(MESSAGE, "complete", "0.12901"))
    assert main(["kaggle-scores", "house-prices"]) == 0
    assert leaderboard.read()[0]["public"] == 0.12901 and public_cell() == "0.12901"
    assert main(["kaggle-scores", "house-prices"]) == 0            # unchanged: nothing new recorded
    assert len(leaderboard.read_lines()) == 3
    assert "0 update(s) recorded" in capsys.readouterr().out


def test_kaggle_scores_does_not_credit_a_retrained_run_with_its_old_score(standin, home, capsys):
    finished_run(home)
    standin.replies(submit=SUBMIT_2X, submissions=listing_2x(MESSAGE))
    assert main(["submit", "house-prices", "--run", "mlp-1", "--kaggle"]) == 0
    assert public_cell() == "0.12345"
    # the run is trained again under the same name (--restart): a new run.json and registry row
    run_dir = home / "runs" / "house-prices" / "mlp-1"
    retrained = {**json.loads((run_dir / "run.json").read_text()), "cv": 0.11500, "training_id": "new"}
    (run_dir / "run.json").write_text(json.dumps(retrained))
    leaderboard.append(retrained)
    capsys.readouterr()
    assert main(["kaggle-scores", "house-prices"]) == 0   # Kaggle still lists only the old submission
    out = capsys.readouterr().out
    assert "public score of mlp-1" not in out
    assert "earlier training of this run" in out and "RUN=mlp-1 KAGGLE=1" in out
    assert public_cell() == ""
    [row] = [r for r in leaderboard.read() if r["run"] == "mlp-1"]
    assert row["cv"] == 0.115 and row.get("public") is None


def test_wait_polls_until_scored(standin, home):
    finished_run(home)
    standin.replies(submit=SUBMIT_2X, submissions=[listing_2x(MESSAGE, "SubmissionStatus.PENDING", ""),
                                                   listing_2x(MESSAGE)])
    assert main(["submit", "house-prices", "--run", "mlp-1"]) == 0       # the CSV, not uploaded
    row = kaggle.submit("house-prices", "mlp-1", wait=5)
    assert row["public"] == 0.12345
    assert [c[1] for c in standin.calls()] == ["submit", "submissions", "submissions"]


def test_submit_refused_uploads_nothing_but_keeps_the_csv(standin, home, capsys):
    finished_run(home)
    standin.replies(submit=FORBIDDEN_2X)
    assert main(["submit", "house-prices", "--run", "mlp-1", "--kaggle"]) == 2
    assert f"accept the rules at https://www.kaggle.com/c/{HOUSE_SLUG}/rules" in capsys.readouterr().err
    assert (home / "submissions" / "house-prices" / "mlp-1.csv").exists()
    assert [r.get("kind") for r in leaderboard.read_lines()] == [None]
    standin.replies(submit={"stderr": "400 Client Error: Bad Request\nSubmission limit reached\n", "rc": 1})
    with pytest.raises(UserError, match=r"`kaggle competitions submit` failed \(exit 1\): Submission limit reached"):
        kaggle.submit("house-prices", "mlp-1")


def test_submit_without_kaggle_flag_runs_no_cli(standin, home):
    finished_run(home)
    assert main(["submit", "house-prices", "--run", "mlp-1"]) == 0
    assert standin.calls() == []


def test_makefile_passes_kaggle_and_wait(tmp_path):
    root = Path(__file__).resolve().parent.parent
    def dry_run(*variables):       # -n: print the commands, run nothing (the setup stamp is elsewhere)
        return subprocess.run(["make", "-n", "-C", str(root), "submit", "RUN=r", f"STAMP={tmp_path}/stamp",
                               *variables], capture_output=True, text=True).stdout
    assert "pipelines submit house-prices --run r --kaggle --wait 30" in dry_run("KAGGLE=1", "WAIT=30")
    assert "--kaggle" not in dry_run() and "--kaggle" not in dry_run("KAGGLE=0")


def test_update_rows_for_unknown_runs_are_ignored(home):
    leaderboard.record_kaggle("house-prices", "ghost", status="complete", public=0.1)
    assert leaderboard.read() == []


def test_upload_that_is_not_listed_yet_is_recorded_as_pending(standin, home, capsys):
    finished_run(home)
    standin.replies(submit=SUBMIT_2X, submissions={"stderr": "500 Server Error: Internal Server Error\n", "rc": 1})
    assert main(["submit", "house-prices", "--run", "mlp-1", "--kaggle"]) == 0     # the upload itself worked
    out = capsys.readouterr().out
    assert "warning: `kaggle competitions submissions` failed (exit 1): 500 Server Error" in out
    assert "kaggle-scores house-prices" in out
    [row] = leaderboard.read()
    assert row["kaggle"]["status"] == "pending" and row["kaggle"]["ref"] == "41234567" and public_cell() == "pending"


# --------------------------------------------------------------------------- spec competitions

def dog_breed_zip(tmp_path):
    """Kaggle's Dog Breed Identification archive in its layout: labels.csv (id,breed), train/<id>.jpg,
    test/<id>.jpg, sample_submission.csv (id + one column per breed, sorted), ids as hex strings."""
    import numpy as np

    from drawn_images import draw

    rng = np.random.default_rng(3)
    breeds = ["beagle", "chow", "pug"]
    members, rows = {}, []
    for i in range(18):
        ident = f"{rng.integers(16**12):012x}"
        buffer = io.BytesIO()
        draw(i % 2, rng, (48, 48)).save(buffer, "JPEG")
        members[f"train/{ident}.jpg"] = buffer.getvalue()
        rows.append(f"{ident},{breeds[i % 3]}")
    members["labels.csv"] = "id,breed\n" + "\n".join(rows) + "\n"
    test_ids = [f"{rng.integers(16**12):012x}" for _ in range(4)]
    for ident in test_ids:
        buffer = io.BytesIO()
        draw(0, rng, (48, 48)).save(buffer, "JPEG")
        members[f"test/{ident}.jpg"] = buffer.getvalue()
    members["sample_submission.csv"] = ("id," + ",".join(breeds) + "\n"
                                        + "".join(f"{i},{','.join(['0.333'] * 3)}\n" for i in test_ids))
    return make_zip(tmp_path / "dbi.zip", members)


def test_make_data_downloads_a_spec_competition_by_its_slug(standin, home, tmp_path, capsys):
    """`make data COMP=dog-breed-identification`: the spec's Kaggle slug is downloaded, unpacked
    into data/<name>/, and a short training run reads it from there."""
    standin.replies(download={"zip": dog_breed_zip(tmp_path)})
    assert main(["prepare", "dog-breed-identification"]) == 0
    [call] = standin.calls()
    assert call[:4] == ["competitions", "download", "-c", "dog-breed-identification"]
    target = home / "data" / "dog-breed-identification"
    assert (target / "labels.csv").exists() and len(list((target / "train").glob("*.jpg"))) == 18
    assert len(list((target / "test").glob("*.jpg"))) == 4
    assert main(["prepare", "dog-breed-identification"]) == 0 and len(standin.calls()) == 1  # no second download
    capsys.readouterr()
    assert main(["train", "dog-breed-identification", "--config", "cnn", "--name", "t", "--device", "cpu",
                 "--set", "folds=2", "--set", "epochs=1", "--quiet"]) == 0
    assert main(["submit", "dog-breed-identification", "--run", "t"]) == 0
    submission = pd.read_csv(home / "submissions" / "dog-breed-identification" / "t.csv")
    assert list(submission.columns) == ["id", "beagle", "chow", "pug"] and len(submission) == 4
    assert np.allclose(submission[["beagle", "chow", "pug"]].sum(axis=1), 1.0)


def test_a_spec_without_a_kaggle_slug_is_not_downloaded(standin, home, tmp_path, capsys):
    spec = tmp_path / "local.yaml"
    spec.write_text("name: local\nkind: tabular\nid: Id\ntarget: y\ntask: regression\nmetric: rmse\n")
    assert main(["prepare", str(spec)]) == 2
    assert "kaggle" in capsys.readouterr().err.lower() and standin.calls() == []


def test_make_data_unpacks_cifars_7z_archives(standin, home, tmp_path, capsys):
    """CIFAR-10's download is a zip of train.7z, test.7z and two CSVs: `make data` leaves train/ and
    test/ of PNGs in data/cifar-10/ (no .7z, no temporary folder) and prepare reads them from there."""
    from test_archives import cifar_download

    members = cifar_download(tmp_path / "kaggle")
    standin.replies(download={"zip": make_zip(tmp_path / "cifar-10.zip", members)})
    assert main(["prepare", "cifar-10", "--workers", "0", "--set", "threads=1"]) == 0
    assert standin.calls()[0][:4] == ["competitions", "download", "-c", "cifar-10"]
    target = home / "data" / "cifar-10"
    assert sorted(p.name for p in target.iterdir()) == ["cache", "sampleSubmission.csv", "test", "train",
                                                        "trainLabels.csv"]
    assert len(list((target / "train").glob("*.png"))) == 6 and len(list((target / "test").glob("*.png"))) == 4
    assert [p.name for p in (home / "data").iterdir()] == ["cifar-10"]
    out = capsys.readouterr().out
    assert "unpacked test.7z (4 files)\nunpacked train.7z (6 files)\n" in out
    assert (f"unpacked into {target}: sampleSubmission.csv, test, train, trainLabels.csv" in out
            and f"ready in {target}" in out)
