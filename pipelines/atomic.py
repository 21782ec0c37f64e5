"""Atomic file writes: a temporary file in the same folder, then os.replace.

A crash at any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import DiskFull

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None, sync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    sync=False skips the fsync: still safe against a killed process, not against a power cut.
    A full disk (or quota) becomes DiskFull naming `path`; the old file stays, the temporary goes.
    """
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=suffix if suffix is not None else f".tmp{path.suffix}",
            dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        if sync:
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise DiskFull(path, exc) from exc
        raise
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes, sync: bool = True) -> None:
    with atomic_path(path, sync=sync) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str, sync: bool = True) -> None:
    write_bytes(path, text.encode("utf-8"), sync=sync)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_with(path: str | os.PathLike, writer: Callable[[Path], None], sync: bool = True) -> None:
    """Call writer(tmp_path) and move the result into place atomically."""
    with atomic_path(path, sync=sync) as tmp:
        writer(tmp)
