"""Competitions defined by a spec file (YAML), reachable from every verb by path or by name.

`loader(name_or_path)` is added to the registry with `pipelines.competition.add_loader` (by
pipelines/competitions/__init__.py): the competition argument of a verb that names no built-in is
looked for, in this order, as

1. a spec file's path (`*.yaml` / `*.yml`);
2. a spec shipped with the package: pipelines/competitions/specs/<name>.yaml;
3. a spec in the user's folder of specs, <PIPELINES_HOME>/specs/, by its `name:` (a file
   <name>.yaml there is read first);
4. a spec used before by path: using a spec by its path remembers it in
   <PIPELINES_HOME>/runs/<name>/.spec.json (the file's absolute path), so every later command,
   hint and `make` target can call the competition by its name.

`known()` lists every name the loader answers to (for errors and --help). The spec's `kind` picks
the engine that turns it into a Competition: ENGINES maps each kind to a "module:function" (a spec
path -> Competition), imported only when a spec of that kind is loaded, so registering the loader
stays cheap.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from . import atomic, paths
from .errors import UserError

SPECS_DIR = Path(__file__).resolve().parent / "competitions" / "specs"
SUFFIXES = (".yaml", ".yml")
ENGINES = {
    "tabular": "pipelines.tabular.competition:from_file",
    "images": "pipelines.images.competition:from_file",
}
_FROM_SPECS: set[str] = set()   # names registered from a spec file (a later spec may replace them)
USER_FOLDER = "specs"           # <PIPELINES_HOME>/specs/: the user's own specs, known by name
REMEMBERED = ".spec.json"       # runs/<name>/.spec.json: the path of a spec used by path


def shipped() -> dict[str, Path]:
    """name -> path of every spec in pipelines/competitions/specs/."""
    if not SPECS_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(SPECS_DIR.iterdir()) if p.suffix in SUFFIXES and p.is_file()}


def _spec_name(path: Path) -> str | None:
    """The `name:` of a spec file, None when it has none or is not readable YAML."""
    import yaml

    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    name = values.get("name") if isinstance(values, dict) else None
    return str(name) if isinstance(name, (str, int, float)) and not isinstance(name, bool) else None


def user_folder() -> Path:
    return paths.home() / USER_FOLDER


def user_specs() -> dict[str, Path]:
    """name -> path of every spec in the user's folder of specs (<PIPELINES_HOME>/specs/), by its
    `name:`; where two files give the same name, the one whose file name is <name>.yaml wins, else
    the first in sorted order."""
    folder = user_folder()
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix not in SUFFIXES or not path.is_file():
            continue
        name = _spec_name(path)
        if name and (name not in found or path.stem == name):
            found[name] = path
    return found


def remembered() -> dict[str, Path]:
    """name -> path of every spec used before by its path (runs/<name>/.spec.json)."""
    root = paths.home() / "runs"
    found = {}
    if root.is_dir():
        for note in sorted(root.glob(f"*/{REMEMBERED}")):
            try:
                found[note.parent.name] = Path(json.loads(note.read_text())["path"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return found


def known() -> list[str]:
    """Every spec name the loader answers to: shipped, in the user's folder, used before."""
    names = list(shipped())
    for more in (user_specs(), remembered()):
        names += [n for n in more if n not in names]
    return names


def remember(name: str, path: Path) -> None:
    """Let `name` call the spec at `path` from now on (a spec used by its path). Said in one line
    when the name called another spec file before."""
    note = paths.runs_dir(name) / REMEMBERED
    path = path.resolve()
    before = remembered().get(name)
    if before == path:
        return
    if before is not None:
        print(f"note: {name} now names the spec {path} (was {before})", file=sys.stderr)
    atomic.write_json(note, {"path": str(path)})


def find(name_or_path: str) -> Path | None:
    """The spec file a command line names: an existing *.yaml/*.yml path, or a known spec's name
    (module docstring: shipped, the user's folder, used before)."""
    text = str(name_or_path)
    if text.endswith(SUFFIXES):
        path = Path(text).expanduser()
        return path if path.is_file() else None
    if "/" in text or "\\" in text:
        return None
    for source in (shipped, user_specs):
        found = source().get(text)
        if found is not None:
            return found
    found = remembered().get(text)
    if found is not None and not found.is_file():
        raise UserError(f"competition {text!r}: its spec {found} (remembered from an earlier use by path) is gone; "
                        f"pass the spec file's new path once, or put it in {user_folder()}/")
    return found


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
    if str(name_or_path).endswith(SUFFIXES):
        by_name = (shipped() | user_specs()).get(made.name)
        if by_name is None:
            remember(made.name, path)
        elif by_name.resolve() != path.resolve():
            print(f"note: the name {made.name} calls {by_name}; this spec ({path}) is reached by its path only",
                  file=sys.stderr)
    return made
