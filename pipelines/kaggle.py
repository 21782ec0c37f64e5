"""Kaggle's own CLI (the `kaggle` package) as a subprocess: download a competition's
files, upload a run's validated submission, read its public score back.

The CLI is used rather than its Python API so that the commands are the ones a person
would type, the CLI's own authentication rules apply unchanged, and tests can put a
stand-in `kaggle` executable first on PATH. Every failure the user can act on becomes a
one-line UserError that says what to do.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import datetime
from pathlib import Path

from . import archives, competition as competitions, hints, registry as leaderboard, paths, runs
from .errors import UserError
from .registry import submission_message  # noqa: F401  (kaggle.submission_message: what an upload says)

POLL_S = 10.0            # seconds between reads of the submissions list while --wait runs
OUTPUT_KEEP = 1 << 20    # bytes of the CLI's output kept for error messages and parsing
TOKEN_URL = "https://www.kaggle.com/settings/api"


def competition(name: str) -> competitions.Competition:
    """The competition (pipelines.competition) of that name, which must be on Kaggle (kaggle_slug)."""
    found = competitions.load(name)
    if not found.kaggle_slug:
        on_kaggle = [c.name for c in competitions.registered() if c.kaggle_slug]
        raise UserError(f"no Kaggle competition is known for {name!r}; known: {', '.join(on_kaggle)}")
    return found


def slug(name: str) -> str:
    """Kaggle's name for the competition."""
    return competition(name).kaggle_slug


def rules_url(name: str) -> str:
    return f"https://www.kaggle.com/c/{slug(name)}/rules"


def quiet() -> bool:
    return os.environ.get("PIPELINES_QUIET", "") not in ("", "0")


# --------------------------------------------------------------------------- CLI and credentials

def executable() -> str | None:
    """`kaggle` on PATH, else the one installed beside this Python (make does not activate .venv)."""
    return shutil.which("kaggle") or shutil.which("kaggle", path=str(Path(sys.executable).parent))


INSTALL_HINT = "run `.venv/bin/pip install kaggle` (or `.venv/bin/pip install -e '.[kaggle]'`)"


def config_file(env=None) -> Path:
    """Where the CLI reads kaggle.json: $KAGGLE_CONFIG_DIR, else ~/.kaggle, else (Linux,
    when ~/.kaggle does not exist) $XDG_CONFIG_HOME/kaggle or ~/.config/kaggle."""
    env = os.environ if env is None else env
    if env.get("KAGGLE_CONFIG_DIR"):
        return Path(env["KAGGLE_CONFIG_DIR"]).expanduser() / "kaggle.json"
    folder = Path(os.path.expanduser("~")) / ".kaggle"
    if sys.platform.startswith("linux") and not folder.exists():
        xdg = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        folder = Path(xdg) / "kaggle"
    return folder / "kaggle.json"


def credentials(env=None) -> str | None:
    """Which credentials the CLI will use (a short description), or None when it has none.

    Mirrors the CLI's order: KAGGLE_API_TOKEN, ~/.kaggle/access_token, KAGGLE_USERNAME and
    KAGGLE_KEY (each may also come from kaggle.json), the OAuth file of `kaggle auth login`.
    """
    env = os.environ if env is None else env
    if env.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    dot_kaggle = Path(os.path.expanduser("~")) / ".kaggle"
    for name in ("access_token", "access_token.txt"):
        token = dot_kaggle / name
        if token.is_file() and token.read_text(errors="replace").strip():
            return str(token)
    path = config_file(env)
    values: dict = {}
    if path.is_file():
        try:
            values = json.loads(path.read_text())
        except (ValueError, OSError, UnicodeDecodeError):
            values = None
        if not isinstance(values, dict):
            raise UserError(f"{path}: not a valid kaggle.json (expected {{\"username\": ..., \"key\": ...}}); "
                            f"create a new token at {TOKEN_URL} and save the file it downloads there")
    username = env.get("KAGGLE_USERNAME") or values.get("username")
    key = env.get("KAGGLE_KEY") or values.get("key")
    if username and key:
        return "KAGGLE_USERNAME/KAGGLE_KEY" if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY") else str(path)
    if (dot_kaggle / "credentials.json").is_file():
        return str(dot_kaggle / "credentials.json")
    return None


def credentials_hint(name: str) -> str:
    where = ("$KAGGLE_CONFIG_DIR/kaggle.json" if os.environ.get("KAGGLE_CONFIG_DIR") else "~/.kaggle/kaggle.json")
    return (f"create an API token at {TOKEN_URL} (\"Create New Token\"), save the kaggle.json it downloads as "
            f"{where} (chmod 600) or export KAGGLE_USERNAME and KAGGLE_KEY from it, and accept the rules at "
            f"{rules_url(name)}")


def _ready(name: str) -> str:
    """The kaggle executable, once it and credentials are known to exist; else a UserError."""
    exe = executable()
    if exe is None:
        raise UserError(f"Kaggle's CLI (`kaggle`) is not installed: {INSTALL_HINT}")
    if credentials() is None:
        raise UserError(f"no Kaggle credentials: {credentials_hint(name)}")
    return exe


# --------------------------------------------------------------------------- running the CLI

def run_cli(argv: list[str], echo: bool = False) -> tuple[int, str]:
    """Run the CLI with stdout and stderr merged; echo it live when asked (download and
    upload progress), keep the last OUTPUT_KEEP bytes for parsing and error messages."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise UserError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    kept = ""
    while True:
        chunk = proc.stdout.read1(65536)
        if not chunk:
            break
        text = decoder.decode(chunk)
        if echo:
            sys.stdout.write(text)
            sys.stdout.flush()
        kept = (kept + text)[-OUTPUT_KEEP:]
    kept += decoder.decode(b"", final=True)
    proc.stdout.close()
    return proc.wait(), kept


_FORBIDDEN = re.compile(r"\b403\b|forbidden|don't have access|accept (this|the) competition's rules|"
                        r"rules first", re.IGNORECASE)
_UNAUTHORIZED = re.compile(r"\b401\b|unauthorized|authentication required|could not find kaggle\.json|"
                           r"invalid credentials", re.IGNORECASE)
_NOT_FOUND = re.compile(r"\b404\b|not found|could not find competition", re.IGNORECASE)


def last_line(output: str) -> str:
    """The CLI's own last words, on one line (progress bars and blank lines left out)."""
    lines = [line.strip() for line in re.split(r"[\r\n]+", output) if line.strip()]
    lines = [line for line in lines if not re.match(r"^\d+%\|", line)]
    return lines[-1][:300] if lines else "no output"


_WHAT = {"download": "the download", "submit": "the upload", "submissions": "reading your submissions"}


def failure(name: str, command: str, rc: int, output: str) -> UserError:
    """The one-line error for a failed `kaggle competitions COMMAND ...`."""
    what = _WHAT.get(command, command)
    if _UNAUTHORIZED.search(output):
        return UserError(f"Kaggle refused the credentials ({credentials() or 'none found'}) for {what}: "
                         f"{credentials_hint(name)}")
    if _FORBIDDEN.search(output):
        return UserError(f"Kaggle refused {what} (403): accept the rules at {rules_url(name)} "
                         f"with the account of your token, then try again")
    if _NOT_FOUND.search(output):
        return UserError(f"Kaggle found no competition {slug(name)} for {what} (404): "
                         f"{last_line(output)}")
    return UserError(f"`kaggle competitions {command}` failed (exit {rc}): {last_line(output)}")


# --------------------------------------------------------------------------- data

def has_data(name: str, folder: Path) -> bool:
    return competitions.load(name).data.has_data(folder)


_safe_member = archives.safe_member   # the rules for the members of every archive unpacked here


def unpack(name: str, downloaded: Path, stage: Path) -> list[str]:
    """Kaggle's archive(s) in `downloaded` -> files in `stage`. Zips are extracted one level (zips
    inside them, like Dogs vs. Cats' train.zip, are kept); 7z archives at the top level of the
    download or of its zip (CIFAR-10's train.7z and test.7z) are extracted too, into `stage`, and
    removed once unpacked; other files are moved as they are. Returns the top-level names in `stage`."""
    keep = competitions.load(name).data.keep_zipped
    stage.mkdir(parents=True, exist_ok=True)
    for item in sorted(downloaded.iterdir()):
        if item.name.startswith("."):
            continue
        if item.suffix.lower() == ".zip" and item.name not in keep:
            try:
                with zipfile.ZipFile(item) as archive:
                    for info in archive.infolist():
                        if info.is_dir():
                            continue
                        relative = _safe_member(item, info.filename)
                        if relative is None:
                            continue
                        out = stage.joinpath(*relative.parts)
                        out.parent.mkdir(parents=True, exist_ok=True)
                        with archive.open(info) as source, open(out, "wb") as target:
                            shutil.copyfileobj(source, target, 1 << 20)
            except (zipfile.BadZipFile, OSError) as exc:
                raise UserError(f"{item.name} from Kaggle is not a readable zip ({exc}); download it again by rerunning the same command") from None
        else:
            shutil.move(str(item), str(stage / item.name))
    for item in sorted(stage.iterdir()):
        if item.is_file() and archives.is_7z(item) and item.name not in keep:
            _unpack_7z(item, stage)
    return sorted(p.name for p in stage.iterdir())


def _unpack_7z(item: Path, stage: Path) -> None:
    """One 7z archive of the download extracted into the stage, then removed."""
    try:
        count = archives.extract(item, stage)
    except archives.Unreadable as exc:
        raise UserError(f"{item.name}: not a readable 7z archive ({exc}); download it again by rerunning the same command") from None
    except OSError as exc:
        raise UserError(f"cannot unpack {item.name} into {stage}: {exc.strerror or exc}") from None
    item.unlink()
    print(f"unpacked {item.name} ({count} files)", flush=True)


def download(name: str, target: Path | None = None) -> list[str]:
    """Download the competition with Kaggle's CLI and unpack it into `target` (default
    data/<name>). All of it lands in a temporary folder beside `target` first; only once
    everything is unpacked and checked is each file renamed into place."""
    spec = competition(name)
    target = Path(target) if target else paths.data_dir(name)
    exe = _ready(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.kaggle-", dir=target.parent) as tmp:
        downloaded, stage = Path(tmp) / "download", Path(tmp) / "files"
        downloaded.mkdir()
        print(f"downloading {spec.kaggle_slug} from Kaggle ...", flush=True)
        rc, output = run_cli([exe, "competitions", "download", "-c", spec.kaggle_slug, "-p", str(downloaded)],
                             echo=not quiet())
        if rc != 0:
            raise failure(name, "download", rc, output)
        if not any(downloaded.iterdir()):
            raise UserError(f"`kaggle competitions download` exited 0 but left no file in {downloaded}: "
                            f"{last_line(output)}")
        names = unpack(name, downloaded, stage)
        if not has_data(name, stage):
            raise UserError(f"Kaggle's download of {spec.kaggle_slug} held {', '.join(names) or 'nothing'}, "
                            f"not the expected {' or '.join(spec.data.present)}")
        target.mkdir(parents=True, exist_ok=True)
        for entry in names:
            destination = target / entry
            if destination.is_dir() and not destination.is_symlink():
                shutil.rmtree(destination)
            os.replace(stage / entry, destination)
    print(f"unpacked into {target}: {', '.join(names)}")
    return names


def ensure_data(name: str) -> None:
    """For `prepare` without --data: download the competition unless data/<name> has it."""
    folder = paths.data_dir(name)
    if has_data(name, folder):
        return
    found = competitions.load(name)
    if not found.kaggle_slug:   # a spec without `kaggle:`: nothing to download, the user brings the files
        raise paths.no_data_error(name, folder, on_kaggle=False)
    title = found.title
    try:
        download(name, folder)
    except UserError as exc:
        raise UserError(f"no {title} data in {folder}: {exc}; or use a copy you downloaded yourself: "
                        f"`{hints.prepare(name, 'DIR')}`") from None


# --------------------------------------------------------------------------- submissions

_RUN_IN_MESSAGE = re.compile(r"^run (\S+) config ")


def parse_status(text: str) -> str:
    """'complete', 'pending' or 'error' from any CLI version ('complete', 'SubmissionStatus.COMPLETE')."""
    value = (text or "").strip().lower().rsplit(".", 1)[-1]
    return value if value in ("complete", "pending", "error") else (value or "pending")


def parse_score(text: str | None) -> float | None:
    text = (text or "").strip()
    if text.lower() in ("", "none", "null", "nan"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def parse_submissions(output: str) -> list[dict]:
    """`kaggle competitions submissions -c SLUG --csv` -> rows, newest first as listed.

    Handles the 1.5 format (fileName,date,description,status,publicScore,privateScore with
    'complete'/'pending' and 'None' scores, maybe after an "outdated API version" warning
    line) and the 1.6+/2.x format (a leading ref column, 'SubmissionStatus.COMPLETE',
    empty scores while pending)."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines)
                  if "fileName" in line and "publicScore" in line and "," in line), None)
    if start is None:
        if "No submissions found" in output:
            return []
        raise UserError(f"cannot read `kaggle competitions submissions --csv` output: {last_line(output)}")
    rows = []
    for record in csv.DictReader(io.StringIO("\n".join(lines[start:]) + "\n")):
        if not record.get("fileName") and not record.get("description"):
            continue
        rows.append({
            "ref": (record.get("ref") or "").strip(),
            "file": (record.get("fileName") or "").strip(),
            "submitted": (record.get("date") or "").strip(),
            "description": (record.get("description") or "").strip(),
            "status": parse_status(record.get("status", "")),
            "public": parse_score(record.get("publicScore")),
            "private": parse_score(record.get("privateScore")),
        })
    return rows


def submissions(name: str, exe: str | None = None) -> list[dict]:
    exe = exe or _ready(name)
    rc, output = run_cli([exe, "competitions", "submissions", "-c", slug(name), "--csv"])
    if rc != 0:
        raise failure(name, "submissions", rc, output)
    return parse_submissions(output)


def _find(rows: list[dict], message: str, ref: str | None) -> dict | None:
    if ref:
        for row in rows:
            if row["ref"] == ref:
                return row
    return next((row for row in rows if row["description"] == message.strip()), None)


def _record(name: str, run: str, row: dict) -> None:
    leaderboard.record_kaggle(name, run, status=row["status"], public=row["public"], private=row["private"],
                              ref=row["ref"], submitted=row["submitted"], message=row["description"])


def _report(name: str, run: str, row: dict | None) -> str:
    if row and row["status"] == "complete" and row["public"] is not None:
        return f"public score of {run} on Kaggle: {row['public']:.5f}"
    if row and row["status"] == "error":
        return f"Kaggle could not score {run} (status error); see https://www.kaggle.com/c/{slug(name)}/submissions"
    return (f"Kaggle has not scored {run} yet; read the score later with "
            f"`{hints.pipelines(f'kaggle-scores {name}')}`")


def submit(name: str, run: str, out: str | None = None, wait: float = 0.0) -> dict | None:
    """Upload a run's validated submission (written by `submit` just before), then read the
    submissions list once, or every POLL_S seconds for up to `wait` seconds, and record the
    submission's state (public score once scored) in the registry. Returns that state."""
    spec = competition(name)
    run_dir = paths.find_run(name, run)
    record = runs.load_run(run_dir)
    path = runs.submission_path(name, run_dir, out)
    if not path.is_file():
        raise UserError(f"{path}: no submission file to upload")
    try:
        exe = _ready(name)
    except UserError as exc:
        raise UserError(f"{exc}; or upload {path} yourself at https://www.kaggle.com/c/{spec.kaggle_slug}/submit") from None
    message = submission_message(record)
    rc, output = run_cli([exe, "competitions", "submit", "-c", spec.kaggle_slug, "-f", str(path), "-m", message],
                         echo=not quiet())
    if rc != 0 or "Could not submit to competition" in output:
        raise failure(name, "submit", rc, output)
    found = re.search(r"Submission ref:\s*(\d+)", output)
    ref = found.group(1) if found else None
    print(f"uploaded {path} to {spec.kaggle_slug}: {message}")
    deadline = time.monotonic() + max(0.0, wait)
    row = None
    while True:
        try:
            row = _find(submissions(name, exe), message, ref)
        except UserError as exc:      # the upload went through; only reading its state failed
            print(f"warning: {exc}")
        if row and row["status"] != "pending" or time.monotonic() >= deadline:
            break
        time.sleep(max(0.0, min(POLL_S, deadline - time.monotonic())))
    if row is None:                   # not listed yet: recorded as pending, kaggle-scores finds it later
        row = {"ref": ref or "", "file": path.name, "submitted": "", "description": message,
               "status": "pending", "public": None, "private": None}
    _record(name, record["run"], row)
    scored = row["public"] is not None
    print(_report(name, record["run"], row) + (f" (recorded; see `{hints.make_or_cli('leaderboard', 'leaderboard')}`)" if scored else ""))
    return row


def refresh(name: str) -> int:
    """`kaggle-scores`: read the submissions list and record, for every run of this project
    (recognised by its message "run NAME config ..."), the newest submission's state when
    it changed. Returns the number of rows recorded."""
    known = {row["run"]: row for row in leaderboard.read() if row.get("competition") == name}
    latest: dict[str, dict] = {}
    for row in submissions(name):
        match = _RUN_IN_MESSAGE.match(row["description"])
        if match and match.group(1) not in latest:
            latest[match.group(1)] = row
    recorded = 0
    for run, row in latest.items():
        if run not in known:
            print(f"{run}: submitted to Kaggle but not in {paths.registry_path()}; skipped")
            continue
        before = known[run].get("kaggle") or {}
        if (before.get("status"), before.get("public"), before.get("ref") or "", before.get("submitted")) != \
                (row["status"], row["public"], row["ref"], row["submitted"]):
            _record(name, run, row)
            recorded += 1
        if row["description"] == submission_message(known[run]):
            print(_report(name, run, row))
        else:  # submitted before the run was retrained (--restart): not the score of what is there now
            print(f"{run}: its newest Kaggle submission ({row['description']}) was made from an earlier "
                  f"training of this run, not the one on the leaderboard; upload this one with "
                  f"`{hints.submit(name, run, kaggle=True)}`")
    if not latest:
        print(f"no submission of this project's runs found on Kaggle for {slug(name)}")
    print(f"{recorded} update(s) recorded in {paths.registry_path()} at {datetime.now():%H:%M:%S}")
    return recorded
