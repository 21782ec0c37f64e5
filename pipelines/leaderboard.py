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
    """One row per run, with later update rows merged in.

    The registry stays append-only: an update row {"kind": "kaggle", "competition", "run",
    "status", "public", ...} sets the "kaggle" record and "public" score of the latest run
    row of that competition and name above it; an update for an unknown run is ignored.
    """
    rows: list[dict] = []
    latest: dict[tuple, dict] = {}
    for row in read_lines(path):
        if not isinstance(row, dict):
            continue
        kind = row.get("kind")
        if kind is None:
            row = dict(row)
            rows.append(row)
            latest[(row.get("competition"), row.get("run"))] = row
        elif kind == "kaggle":
            target = latest.get((row.get("competition"), row.get("run")))
            if target is not None:
                target["kaggle"] = {k: v for k, v in row.items() if k not in ("kind", "competition", "run")}
                target["public"] = row.get("public")
    return rows


def record_kaggle(competition: str, run: str, *, status: str, public: float | None,
                  path: Path | None = None, **extra) -> dict:
    """Append a Kaggle update row for a run: its submission's status and public score."""
    row = {"kind": "kaggle", "competition": competition, "run": run, "status": status,
           "public": None if public is None else float(public),
           "date": datetime.now().isoformat(timespec="seconds"), **extra}
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
    from .report import report_path

    candidates = [paths.runs_dir(str(row.get("competition"))) / str(row.get("run"))]
    if row.get("path"):
        candidates.append(Path(row["path"]))
    found = next((report_path(c) for c in candidates if report_path(c).exists()), None)
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
