"""The run registry (runs/registry.jsonl) and the leaderboard printed from it."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from . import paths
from .errors import UserError


def append(row: dict, path: Path | None = None) -> None:
    """Append one JSON line under an exclusive lock, so two runs finishing at once both land."""
    path = path or paths.registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(row, sort_keys=True, default=str) + "\n").encode()
    with open(path, "ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read(path: Path | None = None) -> list[dict]:
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


def ranked(rows: list[dict], competition: str | None = None) -> list[dict]:
    if competition:
        rows = [r for r in rows if r.get("competition") == competition]
    def key(row):
        sign = -1.0 if row.get("greater_is_better") else 1.0
        return (row.get("competition", ""), sign * float(row.get("cv", float("inf"))))
    return sorted(rows, key=key)


COLUMNS = [("competition", "competition"), ("dataset", "data"), ("run", "run"), ("config", "config"), ("metric", "metric"),
           ("cv", "CV"), ("cv_std", "fold std"), ("folds", "folds"), ("wall_s", "wall s"),
           ("device", "device"), ("date", "date")]


def _cell(key: str, row: dict) -> str:
    value = row.get(key, "")
    if key in ("cv", "cv_std") and value != "":
        return f"{float(value):.5f}"
    if key == "wall_s" and value != "":
        return f"{float(value):.1f}"
    if key == "date":
        return str(value)[:16].replace("T", " ")
    return str(value)


def table(rows: list[dict], markdown: bool = False) -> str:
    header = [title for _, title in COLUMNS]
    body = [[_cell(key, row) for key, _ in COLUMNS] for row in rows]
    if markdown:
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
