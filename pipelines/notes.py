"""One-line notes said once: inside `notes_once()`, a note already printed is not printed again
(the members of a blend read the same test file, and each would say the same thing about it)."""

from __future__ import annotations

import contextlib

_said: set[str] | None = None   # inside notes_once(): the notes already printed


@contextlib.contextmanager
def notes_once():
    """Within the block each note is printed once."""
    global _said
    outer, _said = _said, set() if _said is None else _said
    try:
        yield
    finally:
        _said = outer


def say(line: str) -> None:
    """Print a note (once per notes_once block)."""
    if _said is not None:
        if line in _said:
            return
        _said.add(line)
    print(line)
