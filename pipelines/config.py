"""Experiment configs: YAML files validated against a dataclass schema.

An unknown key is an error naming the closest valid key; a wrong type or an
out-of-range value is an error naming the key and what it accepts.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs"


def option(default, *, choices=None, min=None, max=None, help: str = ""):
    """A config field with a default and optional validation rules."""
    metadata = {"choices": choices, "min": min, "max": max, "help": help}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(key: str, value: Any, tp, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg, where)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"{where}: {key} has a bad value {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: {key} must be a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", item, args[0], where) for i, item in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{where}: {key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise UserError(f"{where}: {key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise UserError(f"{where}: {key} must be a number, got {value!r}")
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads 1e-3 as a string
            except ValueError:
                pass
        if not isinstance(value, (int, float)):
            raise UserError(f"{where}: {key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: {key} must be a string, got {value!r}")
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: {key} must be a mapping, got {value!r}")
        return value
    raise UserError(f"{where}: {key} has unsupported type {_type_name(tp)}")


def build(schema: type, values: dict, where: str):
    """Validate a mapping against a dataclass schema and return the instance."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping of keys to values")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"{where}: unknown key {key!r}{hint}")
        field = fields[key]
        value = _coerce(key, value, hints[key], where)
        meta = field.metadata
        if meta.get("choices") is not None and value not in meta["choices"]:
            raise UserError(f"{where}: {key}={value!r} is not one of {', '.join(map(str, meta['choices']))}")
        for bound, ok in (("min", lambda v, b: v >= b), ("max", lambda v, b: v <= b)):
            limit = meta.get(bound)
            if limit is not None and value is not None:
                items = value if isinstance(value, list) else [value]
                if any(not ok(item, limit) for item in items):
                    word = "at least" if bound == "min" else "at most"
                    raise UserError(f"{where}: {key}={value!r} must be {word} {limit}")
        kwargs[key] = value
    return schema(**kwargs)


def parse_overrides(pairs: list[str] | None) -> dict:
    """--set key=value pairs, values parsed as YAML (so 1e-3, true, [64, 32] work)."""
    result = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"--set {pair!r}: expected KEY=VALUE")
        key, raw = pair.split("=", 1)
        result[key.strip()] = yaml.safe_load(raw)
    return result


def config_path(competition: str, name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.exists():
            raise UserError(f"config file {candidate} not found")
        return candidate
    folder = CONFIG_ROOT / competition
    path = folder / f"{name_or_path}.yaml"
    if not path.exists():
        names = available(competition)
        close = difflib.get_close_matches(name_or_path, names, n=1, cutoff=0.4)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown config {name_or_path!r} for {competition}{hint}; "
                        f"available: {', '.join(names)}")
    return path


def available(competition: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_ROOT / competition).glob("*.yaml"))


def check_family(values: dict, family: str, allowed: set[str], where: str) -> None:
    """Refuse a key that the config's model family does not read (a config holds the keys of its
    family: `num_leaves` in an MLP's config is a mistake, not a setting), naming the family's keys.
    family: how the error names it, e.g. "model: mlp"."""
    for key in values:
        if key not in allowed:
            raise UserError(f"{where}: key {key!r} does not apply to {family} "
                            f"(its keys: {', '.join(sorted(allowed - {'name'}))})")


def load(competition: str, schema: type, name_or_path: str, overrides: dict | None = None,
         family_keys=None):
    """Load configs/<competition>/<name>.yaml (or a path), apply overrides, validate.

    family_keys: optionally (config as a dict) -> (family as the error names it, allowed keys): the
    keys the family of a config reads. The file may hold only its own family's keys, and overrides
    only the keys of the family they make (check_family)."""
    path = config_path(competition, name_or_path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{line} is not valid YAML") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a mapping of keys to values")
    written = dict(values)
    values = {**values, **(overrides or {})}
    values.setdefault("name", path.stem)
    config = build(schema, values, str(path))  # unknown keys and bad values first
    if family_keys is not None:
        # the file holds the keys of its own family; --set may change the family (--set
        # model=lasso), and then must name only keys of the new one (the file's others go unread)
        family, allowed = family_keys(as_dict(build(schema, written, str(path))))
        check_family(written, family, allowed, str(path))
        family, allowed = family_keys(as_dict(config))
        check_family(overrides or {}, family, allowed, f"{path} with --set")
    return config


def as_dict(config) -> dict:
    return dataclasses.asdict(config)


def config_hash(config) -> str:
    """Short hash of the resolved config, ignoring its name: equal hashes mean equal settings."""
    values = {k: v for k, v in as_dict(config).items() if k != "name"}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]


def first_difference(a: dict, b: dict) -> str | None:
    """The first key (sorted) whose value differs between two config dicts, as "key=A vs key=B"."""
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            left = f"{key}={a[key]!r}" if key in a else f"no {key}"
            right = f"{key}={b[key]!r}" if key in b else f"no {key}"
            return f"{left} vs {right}"
    return None


# --------------------------------------------------------------------------- what a run changed

def find_file(folders: list[str], name: str) -> Path | None:
    """configs/<folder>/<name>.yaml for the first of the folders that has one (a competition's own
    folder first, then its kind's: tabular, images), or None."""
    for folder in folders:
        if not folder:
            continue
        path = CONFIG_ROOT / folder / f"{name}.yaml"
        if path.is_file():
            return path
    return None


def file_values(path: Path | None) -> dict | None:
    """The keys a config file sets, as YAML reads them (None: no file, or not a mapping)."""
    if path is None:
        return None
    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8-sig")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return values if isinstance(values, dict) else None


def schema_defaults(schema: type) -> dict:
    """Each field's default (fields without one are left out)."""
    found = {}
    for field in dataclasses.fields(schema):
        if field.default is not dataclasses.MISSING:
            found[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            found[field.name] = field.default_factory()  # type: ignore[misc]
    return found


def same_value(a: Any, b: Any) -> bool:
    """Equal as config values: 1 and 1.0, 1e-3 and "1e-3" (YAML reads that as a string), a tuple and a list."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else a == b
    numbers = []
    for value in (a, b):
        if isinstance(value, (int, float)):
            numbers.append(float(value))
        elif isinstance(value, str):
            try:
                numbers.append(float(value))
            except ValueError:
                return a == b
        else:
            return a == b
    return numbers[0] == numbers[1]


def changed(values: dict, baseline: dict) -> dict:
    """values' keys (sorted, the config's name left out) whose value differs from baseline's; a key
    baseline does not know is left out (nothing to tell it from)."""
    return {key: values[key] for key in sorted(values)
            if key != "name" and key in baseline and not same_value(values[key], baseline[key])}


def params(config, folders: list[str]) -> dict | None:
    """What a run's config changed: its values that differ from what the config file of its name
    gives (the file's keys over the schema's defaults), i.e. its --set overrides; without such a file
    (a YAML path elsewhere), its values that differ from the schema's defaults. None when neither is
    known (a schema with required fields and no file)."""
    values = as_dict(config)
    written = file_values(find_file(folders, str(values.get("name", ""))))
    defaults = schema_defaults(type(config))
    if written is not None and not set(written) <= set(values):
        written = None  # a file of another schema that happens to share the name
    if written is None and set(values) - set(defaults) - {"name"}:
        return None  # required fields (a blend's members): no default to tell a change from
    return changed(values, {**defaults, **(written or {})})
