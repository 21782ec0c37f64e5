"""Competitions defined by a spec file (YAML), reachable from every verb.

`loader(name_or_path)` is added to the registry with `pipelines.competition.add_loader` (by
pipelines/competitions/__init__.py): the competition argument of a verb that names no built-in is
looked for as a spec file path (`*.yaml` / `*.yml`) or as the name of a spec shipped in
pipelines/competitions/specs/<name>.yaml. The spec's `kind` picks the engine that turns it into a
Competition: ENGINES maps each kind to a "module:function" (a spec path -> Competition), imported
only when a spec of that kind is loaded, so registering the loader stays cheap.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .errors import UserError

SPECS_DIR = Path(__file__).resolve().parent / "competitions" / "specs"
SUFFIXES = (".yaml", ".yml")
ENGINES = {
    "tabular": "pipelines.tabular.competition:from_file",
    "images": "pipelines.images.competition:from_file",
}
_FROM_SPECS: set[str] = set()   # names registered from a spec file (a later spec may replace them)


def shipped() -> dict[str, Path]:
    """name -> path of every spec in pipelines/competitions/specs/."""
    if not SPECS_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(SPECS_DIR.iterdir()) if p.suffix in SUFFIXES and p.is_file()}


def find(name_or_path: str) -> Path | None:
    """The spec file a command line names: an existing *.yaml/*.yml path, or a shipped spec's name."""
    text = str(name_or_path)
    if text.endswith(SUFFIXES):
        path = Path(text).expanduser()
        return path if path.is_file() else None
    if "/" in text or "\\" in text:
        return None
    return shipped().get(text)


def kind_of(path: Path) -> str:
    """The spec's `kind`, read before any engine is imported (one line naming the file otherwise)."""
    import yaml

    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise UserError(f"{path}:{f' line {mark.line + 1}' if mark else ''} is not valid YAML") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a mapping of keys to values (a spec needs name, kind, id, target, "
                        f"task, metric)")
    kind = values.get("kind")
    if kind not in ENGINES:
        raise UserError(f"{path}: kind: {kind!r} is not one of {', '.join(ENGINES)}" if kind is not None
                        else f"{path}: kind: missing (tabular or images)")
    return kind


def engine(kind: str):
    """The function that builds a Competition from a spec file of this kind, or a UserError when
    this version has none."""
    module, _, attribute = ENGINES[kind].partition(":")
    try:
        builder = getattr(importlib.import_module(module), attribute, None)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module.startswith(exc.name):
            raise  # a dependency of the engine is missing: a bug or a broken install, not the spec's fault
        builder = None
    if not callable(builder):
        raise UserError(f"{kind} specs are not supported by this version")
    return builder


def load(path: str | Path):
    """The Competition of a spec file (not registered)."""
    path = Path(path)
    return engine(kind_of(path))(path)


def loader(name_or_path: str):
    """For pipelines.competition.add_loader: the spec's Competition, or None when the argument names
    no spec file. A spec may not take a built-in competition's name."""
    from . import competition

    path = find(name_or_path)
    if path is None:
        if str(name_or_path).endswith(SUFFIXES):
            raise UserError(f"unknown competition {str(name_or_path)!r}: spec file {name_or_path} not found")
        return None
    made = load(path)
    taken = competition._REGISTRY.get(made.name)
    if taken is not None and made.name not in _FROM_SPECS:
        raise UserError(f"{path}: name: {made.name!r} is a built-in competition's name; give the spec another name")
    _FROM_SPECS.add(made.name)
    return made
