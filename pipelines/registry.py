"""The run registry (runs/registry.jsonl) and the leaderboard printed from it."""

from __future__ import annotations

import fcntl
import json
import math
import os
import sys
from datetime import datetime
from pathlib import Path

from . import config as configs, paths
from .errors import UserError


def append(row: dict, path: Path | None = None) -> None:
    """Append one JSON line under an exclusive lock, so two runs finishing at once both land."""
    path = path or paths.registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(row, sort_keys=True, default=str) + "\n").encode()
    with open(path, "ab+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0, os.SEEK_END)
            if handle.tell() > 0:  # a line cut by a crash (or a full disk) must not swallow this row
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    line = b"\n" + line
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def submission_message(run: dict) -> str:
    """The message a Kaggle submission of a run is uploaded with (kaggle.submit): it names the run,
    its config, CV and commit, so the submission can be tied back to the training it came from."""
    code = run.get("code") or {}
    commit = str(code.get("commit") or "unknown") + ("-dirty" if code.get("dirty") else "")
    return f"run {run['run']} config {run.get('config', '?')} CV {float(run['cv']):.5f} (commit {commit})"


def read_lines(path: Path | None = None) -> list[dict]:
    """Every registry line as written: run rows and update rows (those with a "kind")."""
    path = path or paths.registry_path()
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            # A line cut by a crash is skipped, not fatal: every other run still shows.
            continue
    return rows


def read(path: Path | None = None) -> list[dict]:
    """One row per (competition, run name): the newest run row, with its Kaggle state merged in.

    The registry stays append-only and is resolved here, on read. A run name reused with
    --restart appends a new run row; the newest one wins, so the stale one (whose files are
    gone) is not shown. Every run row carries a "training_id" (one per training: a resumed run
    keeps it, a restart gets a new one; rows written before it existed have none).

    An update row {"kind": "kaggle", "competition", "run", "status", "public", ...} sets the
    "kaggle" record and "public" score of the run row it belongs to: the one of its
    "training_id" (the training whose predictions were submitted), or, for update rows written
    before training ids existed, the latest run row of that competition and name above it.
    An update whose training id is null (a submission no recorded training matches) or whose
    training is no longer the newest of its name, or for an unknown run, is not shown.
    """
    latest: dict[tuple, dict] = {}        # (competition, run) -> its newest run row
    epoch: dict[tuple, str] = {}          # (competition, run) -> that row's training (or line) id
    alias: dict[tuple, str] = {}          # (competition, run, training id) -> id it continues
    updates: dict[tuple, dict] = {}       # (competition, run, training or line id) -> latest update
    for number, row in enumerate(read_lines(path)):
        if not isinstance(row, dict):
            continue
        key = (row.get("competition"), row.get("run"))
        kind = row.get("kind")
        if kind is None:
            training = row.get("training_id") or f"line:{number}"
            if row.get("continues_legacy") and key in epoch and epoch[key].startswith("line:"):
                # the same training, recorded before training ids existed: keep its Kaggle state
                alias[(*key, training)] = epoch[key]
            latest.pop(key, None)         # the newest row of a name takes the newest place
            latest[key] = dict(row)
            epoch[key] = alias.get((*key, training), training)
        elif kind == "kaggle":
            if "training_id" in row:
                training = row["training_id"]
                if training is None:
                    continue
                training = alias.get((*key, training), training)
            elif key in epoch:
                training = epoch[key]     # an older update row: the run row above it
            else:
                continue
            updates[(*key, training)] = row
    for key, row in latest.items():
        update = updates.get((*key, epoch[key]))
        if update is not None:
            row["kaggle"] = {k: v for k, v in update.items()
                             if k not in ("kind", "competition", "run", "training_id")}
            row["public"] = update.get("public")
    return list(latest.values())


def _submitted_training(competition: str, run: str, lines: list[dict], ref: str | None,
                        message: str | None) -> tuple[bool, str | None]:
    """(known, training id) of the training a Kaggle submission of `run` was made from.

    By its ref, when an earlier update row of that ref names a training; else by its message
    (`submission_message`, which holds the run's CV and commit) matched against the
    run's record on disk, then its registry rows, newest first; else, without a message, the
    training on disk. known is False when the match is the run's newest record and that was
    written before training ids existed: the update row then carries no id and attaches to the
    run row above it, as such rows always did. A submission from an older training, or one no
    record matches, gives (True, None): the update is kept but shown with no run.
    """
    key = (competition, run)
    mine = [r for r in lines if isinstance(r, dict) and (r.get("competition"), r.get("run")) == key]
    if ref:
        for row in reversed(mine):
            if row.get("kind") == "kaggle" and str(row.get("ref") or "") == str(ref) and row.get("training_id"):
                return True, row["training_id"]
    on_disk = None
    try:
        on_disk = json.loads((paths.runs_dir(competition) / run / "run.json").read_text())
    except (OSError, ValueError):
        pass
    rows = [r for r in reversed(mine) if r.get("kind") is None]
    newest = rows[0] if rows else None
    candidates = ([on_disk] if isinstance(on_disk, dict) else []) + rows
    if not message:
        matched = candidates[0] if candidates else None
    else:
        def made_from(candidate: dict) -> bool:
            try:
                return submission_message(candidate) == message.strip()
            except (KeyError, TypeError, ValueError):
                return False
        matched = next((c for c in candidates if made_from(c)), None)
    if matched is None:
        return (True, None) if message else (False, None)
    if matched.get("training_id"):
        return True, matched["training_id"]
    if newest is None or (not newest.get("training_id") and (matched is on_disk or matched is newest)):
        return False, None
    return True, None


def record_kaggle(competition: str, run: str, *, status: str, public: float | None,
                  path: Path | None = None, training_id: str | None = None, **extra) -> dict:
    """Append a Kaggle update row for a run: its submission's status and public score.

    The row names the training the submission was made from (training_id; found from the
    submission's ref or message when not given), so that a run name reused with --restart
    never shows the old training's public score. An update identical to the last one recorded
    for that training is not appended again."""
    row = {"kind": "kaggle", "competition": competition, "run": run, "status": status,
           "public": None if public is None else float(public),
           "date": datetime.now().isoformat(timespec="seconds"), **extra}
    lines = read_lines(path)
    known, found = (True, training_id) if training_id is not None else \
        _submitted_training(competition, run, lines, extra.get("ref"), extra.get("message"))
    if known:
        row["training_id"] = found
        previous = next((r for r in reversed(lines) if isinstance(r, dict) and r.get("kind") == "kaggle"
                         and (r.get("competition"), r.get("run")) == (competition, run)
                         and "training_id" in r and r["training_id"] == found), None)
        undated = [{k: v for k, v in r.items() if k != "date"} for r in (previous or {}, row)]
        if found is not None and previous is not None and undated[0] == undated[1]:
            return row
    append(row, path)
    return row


def ranked(rows: list[dict], competition: str | None = None) -> list[dict]:
    if competition:
        rows = [r for r in rows if r.get("competition") == competition]
    def key(row):
        sign = -1.0 if row.get("greater_is_better") else 1.0
        return (row.get("competition", ""), sign * float(row.get("cv", float("inf"))))
    return sorted(rows, key=key)


COLUMNS = [("competition", "competition"), ("dataset", "data"), ("run", "run"), ("config", "config"),
           ("params", "params"), ("metric", "metric"), ("cv", "CV"), ("cv_std", "fold std"), ("public", "public"),
           ("folds", "folds"), ("wall_s", "wall s"), ("device", "device"), ("date", "date")]
NOTE = ("note", "note")   # the last column, shown when a row has a note (a sweep's winner)
PARAMS_WIDTH = 40         # the params column's cells are cut to this many characters


def short_value(value) -> str:
    """A config value as --set takes it, short: 0.003, 1e-05, [64,32], true."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(short_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{short_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _recorded_params(row: dict) -> dict | None:
    """For a row recorded before runs kept their params: the run's config values (run.json on disk)
    that differ from a key its config file sets. None when the run or the file is not found."""
    try:
        run = json.loads((paths.runs_dir(str(row.get("competition"))) / str(row.get("run")) / "run.json").read_text())
    except (OSError, ValueError):
        return None
    values = run.get("config_values") if isinstance(run, dict) else None
    if not isinstance(values, dict):
        return None
    folders = [str(row.get("competition")), str(run.get("engine") or row.get("engine") or "")]
    written = configs.file_values(configs.find_file(folders, str(values.get("name", row.get("config", "")))))
    if written is None or not set(written) <= set(values):
        return None
    return configs.changed(values, written)


def params_text(row: dict, width: int | None = PARAMS_WIDTH) -> str:
    """The params cell: what the run's config changed (runs.params: its --set overrides), as
    `lr=0.003 hidden=[64]`; a blend's members; cut to `width` characters."""
    blend = row.get("blend")
    if isinstance(blend, dict) and isinstance(blend.get("members"), list):
        text = "members=" + ",".join(str(m.get("run") if isinstance(m, dict) else m) for m in blend["members"])
    else:
        found = row["params"] if "params" in row else _recorded_params(row)
        text = " ".join(f"{k}={short_value(v)}" for k, v in found.items()) if isinstance(found, dict) else ""
    if width is not None and len(text) > width:
        text = text[:width - 3] + "..."
    return text


def _cell(key: str, row: dict) -> str:
    if key == "params":
        return params_text(row)
    value = row.get(key, "")
    if key == "public":
        # Kaggle's public score once scored; else the submission's state (pending, error).
        if value not in ("", None):
            return f"{float(value):.5f}"
        return str((row.get("kaggle") or {}).get("status", ""))
    if key in ("cv", "cv_std") and value != "":
        return f"{float(value):.5f}"
    if key == "wall_s" and value != "":
        return f"{float(value):.1f}"
    if key == "date":
        return str(value)[:16].replace("T", " ")
    if key == "folds" and row.get("folds_scheme") not in (None, "stratified"):
        return f"{value} {row['folds_scheme']}"  # e.g. 5 group:patient, 5 time:date
    return str(value)


def _link_report(cells: list[str], row: dict) -> list[str]:
    """Markdown: the run's name links to its report (path relative to the project home) once written."""
    candidates = [paths.runs_dir(str(row.get("competition"))) / str(row.get("run"))]
    if row.get("path"):
        candidates.append(Path(row["path"]))
    found = next((paths.report_path(c) for c in candidates if paths.report_path(c).exists()), None)
    if found is None:
        return cells
    try:
        target = found.resolve().relative_to(paths.home())
    except ValueError:
        target = found
    i = [key for key, _ in COLUMNS].index("run")
    return cells[:i] + [f"[{cells[i]}]({target.as_posix()})"] + cells[i + 1:]


def table(rows: list[dict], markdown: bool = False) -> str:
    columns = COLUMNS + ([NOTE] if any(row.get("note") for row in rows) else [])
    header = [title for _, title in columns]
    body = [[_cell(key, row) for key, _ in columns] for row in rows]
    if markdown:
        body = [_link_report(cells, row) for cells, row in zip(body, rows)]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in body])


def show(competition: str | None = None, markdown: bool = False, config: str | None = None) -> str:
    """The leaderboard: every run (of `competition`; of `config`), best CV first, a sweep's
    winner marked in a note column."""
    rows = ranked(read(), competition)
    if not rows:
        where = f" for {competition}" if competition else ""
        raise UserError(f"no runs recorded{where} yet in {paths.registry_path()}; train one first")
    if config is not None:
        known = sorted({str(r.get("config")) for r in rows})
        rows = [r for r in rows if r.get("config") == config]
        if not rows:
            where = f" of {competition}" if competition else ""
            raise UserError(f"--config {config}: no run{where} of that config in {paths.registry_path()}; "
                            f"configs with runs: {', '.join(known)}")
    notes = sweep_notes({str(r.get("competition")) for r in rows})
    for i, row in enumerate(rows):
        note = notes.get((row.get("competition"), row.get("run")))
        if note:
            rows[i] = {**row, "note": note}
    return table(rows, markdown=markdown)


# --------------------------------------------------------------------------- sweeps

SWEEPS = "sweeps"          # runs/<competition>/sweeps/<sweep>/sweep.json, written by a sweep
SWEEP_FILE = "sweep.json"


def worse(a: float, b: float, greater_is_better: bool) -> bool:
    """Whether score a is strictly worse than score b."""
    return a < b if greater_is_better else a > b


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def sweep_note(sweep: dict) -> str:
    """The note on a sweep's winner: "sweep winner (S)", and when the winner's re-run CV (its mean
    over other fold seeds) is worse than the runner-up's, says so: the winner's lead was the luck of
    its folds. The runner-up's figure is its own re-run mean on the same seeds when the sweep made
    one (runner_up_rerun_mean: like for like, the figure the sweep's verdict uses), else its CV in
    the sweep (runner_up_cv)."""
    note = f"sweep winner ({sweep.get('sweep')})"
    rerun = _number(sweep.get("rerun_mean"))
    runner_up = _number(sweep.get("runner_up_rerun_mean"))
    what = "re-run CV"
    if runner_up is None:
        runner_up, what = _number(sweep.get("runner_up_cv")), "CV"
    if rerun is not None and runner_up is not None and sweep.get("runner_up") and \
            worse(rerun, runner_up, bool(sweep.get("greater_is_better"))):
        note = (f"sweep winner ({sweep.get('sweep')}): re-run CV worse than the runner-up "
                f"({rerun:.5f} vs {sweep['runner_up']}'s {what} {runner_up:.5f})")
    return note


def read_sweeps(competition: str) -> list[dict]:
    """Every runs/<competition>/sweeps/*/sweep.json (a file that is not a sweep record is skipped
    with a warning on stderr)."""
    found = []
    for path in sorted((paths.runs_dir(competition) / SWEEPS).glob(f"*/{SWEEP_FILE}")):
        try:
            sweep = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"warning: {path}: not readable as JSON ({exc}); skipped", file=sys.stderr)
            continue
        if not isinstance(sweep, dict) or not isinstance(sweep.get("winner"), str):
            print(f"warning: {path}: no \"winner\" run name; skipped", file=sys.stderr)
            continue
        found.append({"sweep": path.parent.name, **sweep})
    return found


def sweep_notes(competitions: set[str]) -> dict[tuple, str]:
    """(competition, run) -> its note, for the winners of the competitions' sweeps."""
    notes: dict[tuple, list[str]] = {}
    for competition in sorted(competitions):
        for sweep in read_sweeps(competition):
            notes.setdefault((competition, sweep["winner"]), []).append(sweep_note(sweep))
    return {key: "; ".join(value) for key, value in notes.items()}
