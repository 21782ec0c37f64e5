"""The run registry (runs/registry.jsonl) and the leaderboard printed from it."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime
from pathlib import Path

from . import paths
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


COLUMNS = [("competition", "competition"), ("dataset", "data"), ("run", "run"), ("config", "config"), ("metric", "metric"),
           ("cv", "CV"), ("cv_std", "fold std"), ("public", "public"), ("folds", "folds"), ("wall_s", "wall s"),
           ("device", "device"), ("date", "date")]


def _cell(key: str, row: dict) -> str:
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
    header = [title for _, title in COLUMNS]
    body = [[_cell(key, row) for key, _ in COLUMNS] for row in rows]
    if markdown:
        body = [_link_report(cells, row) for cells, row in zip(body, rows)]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in body])


def show(competition: str | None = None, markdown: bool = False) -> str:
    rows = ranked(read(), competition)
    if not rows:
        where = f" for {competition}" if competition else ""
        raise UserError(f"no runs recorded{where} yet in {paths.registry_path()}; train one first")
    return table(rows, markdown=markdown)
