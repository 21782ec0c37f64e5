"""`export COMP --run RUN --out DIR [--base FREEZE.txt]`: a run as a bundle that predicts offline,
the way a Kaggle code competition runs a notebook with the internet off.

DIR holds
  runs/<competition>/<run>/   the run's folder (checkpoints, run.json); for a blend, its members too
  specs/<name>.yaml           a spec competition's spec file, and its plugin beside it
  configs/<run>.yaml          each exported run's config values, as it was trained
  wheels/                     the package as a wheel and every distribution it needs installed, each at
                              the version installed here (with --base: only those the base lacks or
                              pins to another version); none with wheels=False
  predict.py                  `python predict.py --test PATH --out submission.csv`
  inference.ipynb             installs from wheels/ with no index, then runs predict.py
  bundle.json                 what was exported, from where, for which Python and platform
The bundle is its own PIPELINES_HOME (predict.py sets it) and is only read: Kaggle mounts a
dataset read-only. A tabular run needs the package alone; an image run adds its `images` extra.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as metadata
import io
import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, paths, runs as run_records
from .errors import UserError

DISTRIBUTION = "pipelines"
PREDICT = "predict.py"
NOTEBOOK = "inference.ipynb"
MANIFEST = "bundle.json"


def export(competition: str, run: str, out: str | Path, *, base: str | Path | None = None,
           wheels: bool = True, quiet: bool = False) -> Path:
    """Write the bundle (module docstring) for `run` of `competition` to the new folder `out`."""
    from . import specs
    from .competition import load as load_competition

    comp = load_competition(str(competition))
    name = run_records.resolve_run(comp.name, str(run))
    run_dir = paths.find_run(comp.name, name)
    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: exists and is not an empty folder; choose a new --out")
    pinned = _read_base(Path(base)) if base else None
    folders = _run_folders(comp.name, run_dir)
    spec_file = specs.find(str(competition)) or specs.find(comp.name)   # None: a built-in competition
    extras = _extras(comp, folders, spec_file is None)
    needed = requirements(extras) if wheels else {}
    out.mkdir(parents=True, exist_ok=True)
    try:
        for folder in folders:
            _copy_run(folder, out / "runs" / comp.name / folder.name)
            values = run_records.load_run(folder).get("config_values") or {}
            _write(out / "configs" / f"{folder.name}.yaml", _yaml(values))
        if spec_file is not None:
            _copy_spec(spec_file, out / "specs")
        written = []
        if wheels:
            written = _wheels(out / "wheels", needed, pinned, quiet)
        install = f"{DISTRIBUTION}[{','.join(extras)}]" if extras else DISTRIBUTION
        manifest = {
            "competition": comp.name, "run": name, "kind": comp.kind, "members": [f.name for f in folders[1:]],
            "package": __version__, "install": install, "wheels": written,
            "base": str(Path(base).resolve()) if base else None,
            "python": f"{sys.version_info.major}.{sys.version_info.minor}", "platform": sysconfig.get_platform(),
            "kaggle": comp.kaggle_slug, "test_input": comp.test_input,
            "exported": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        _write(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        _write(out / PREDICT, predict_script(comp.name, name))
        _write(out / NOTEBOOK, json.dumps(notebook(manifest), indent=1) + "\n")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)   # never a half bundle that looks whole
        raise
    if not quiet:
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        print(f"exported {'blend ' if len(folders) > 1 else ''}{name} of {comp.name} to {out} "
              f"({size / 1e6:.1f} MB; {len(written)} wheels)")
        print(f"  offline: pip install --no-index --find-links {out / 'wheels'} '{install}'; "
              f"python {out / PREDICT} --test PATH --out submission.csv")
    return out


def _extras(comp, folders: list[Path], builtin: bool) -> tuple[str, ...]:
    """The package's extras the runs need: `images` for an image competition, `nn` for a network
    (House Prices' engine imports torch; a spec run's family says), none for the rest."""
    if comp.kind == "images":
        return ("images",)
    if builtin:
        return ("nn",)
    from .tabular import models

    for folder in folders:
        model = (run_records.load_run(folder).get("config_values") or {}).get("model")
        if model in models.REGISTRY and isinstance(models.REGISTRY[model], models.NeedsTorch):
            return ("nn",)
    return ()


def _run_folders(competition: str, run_dir: Path) -> list[Path]:
    """The run's folder, then (for a blend, recursively) each member's, each once; all in the home."""
    from . import blending

    found = blending.run_dirs(competition, run_dir)
    outside = [f for f in found if f.resolve().parent != paths.runs_dir(competition).resolve()]
    if outside:
        raise UserError(f"run {outside[0]} is not in {paths.runs_dir(competition)}; export exports the runs "
                        f"of the project home (PIPELINES_HOME)")
    return found


def _copy_run(source: Path, target: Path) -> None:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.tmp", "*.lock"))


def _copy_spec(spec_file: Path, folder: Path) -> None:
    """The spec, and its plugin beside it (the spec's `plugin:` rewritten to the copy's name)."""
    import yaml

    text = spec_file.read_text(encoding="utf-8-sig")
    values = yaml.safe_load(text)
    plugin = values.get("plugin") if isinstance(values, dict) else None
    folder.mkdir(parents=True, exist_ok=True)
    if plugin:
        source = (spec_file.parent / plugin).resolve()
        shutil.copy2(source, folder / source.name)
        values["plugin"] = source.name
        text = _yaml(values)
    _write(folder / f"{values['name']}.yaml", text)


def _yaml(values: dict) -> str:
    import yaml

    return yaml.safe_dump(values, sort_keys=False)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# ---- what to install -------------------------------------------------------------------------------

def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def requirements(extras: tuple[str, ...] = ()) -> dict[str, str]:
    """{distribution: installed version} of everything the package (with `extras`) needs installed,
    following each requirement through the installed distributions' own requirements and markers."""
    from packaging.requirements import Requirement

    from packaging.markers import default_environment

    environment = default_environment()
    found: dict[str, str] = {}
    todo = [(DISTRIBUTION, tuple(extras))]
    seen: set[tuple[str, tuple]] = set()
    while todo:
        name, wanted = todo.pop()
        canonical = _canonical(name)
        key = (canonical, tuple(sorted(wanted)))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = _installed() if canonical == DISTRIBUTION else metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise UserError(f"{name} is needed but not installed here; install it, then export again") from None
        if canonical != DISTRIBUTION:
            found[canonical] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not any(
                    requirement.marker.evaluate({**environment, "extra": extra}) for extra in ("", *wanted)):
                continue
            todo.append((requirement.name, tuple(requirement.extras)))
    return dict(sorted(found.items()))


def _read_base(path: Path) -> dict[str, str]:
    """{distribution: version} of a `pip freeze --all` (name==version lines; others, e.g. `name @ URL`,
    pin nothing and so are installed from the bundle). Without --all, freeze leaves out setuptools,
    which then comes in the bundle (torch needs a recent one)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        raise UserError(f"--base {path}: cannot read it ({exc.strerror or exc})") from None
    pinned = {}
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        if "==" in line:
            name, _, version = line.partition("==")
            pinned[_canonical(name.split("[")[0].strip())] = version.strip()
        elif " @ " not in line:
            raise UserError(f"--base {path}: line {number} ({line!r}) is not NAME==VERSION; pass `pip freeze`'s output")
    return pinned


def _wheels(folder: Path, needed: dict[str, str], base: dict[str, str] | None, quiet: bool) -> list[str]:
    """The package's wheel and one wheel per needed distribution the base lacks at its version."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [package_wheel(folder).name]
    wanted = {n: v for n, v in needed.items() if base is None or base.get(n) != v}
    if wanted:
        if not quiet:
            print(f"fetching {len(wanted)} wheels ({', '.join(wanted)})", flush=True)
        pins = [f"{n}=={v}" for n, v in wanted.items()]
        try:
            _pip("download", "--no-deps", "--only-binary=:all:", "--dest", str(folder), *pins)
        except UserError:
            for pin in pins:   # one by one: a distribution with no wheel is built from its source
                try:
                    _pip("download", "--no-deps", "--only-binary=:all:", "--dest", str(folder), pin)
                except UserError:
                    _pip("wheel", "--no-deps", "--wheel-dir", str(folder), pin)
    written += sorted(p.name for p in folder.iterdir() if p.name not in written)
    return written


def _pip(*arguments: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *arguments, "--disable-pip-version-check", "--quiet"],
                          capture_output=True, text=True)
    if done.returncode:
        last = [line for line in done.stderr.splitlines() if line.strip()]
        raise UserError(f"pip {arguments[0]} failed: {last[-1].strip() if last else f'exit {done.returncode}'}")


# ---- the package as a wheel ------------------------------------------------------------------------

def _installed():
    """The package's installed distribution (its .dist-info), not a build's .egg-info that the
    current folder may hold."""
    found = [d for d in metadata.distributions(name=DISTRIBUTION) if d.read_text("METADATA")]
    if not found:
        raise UserError(f"{DISTRIBUTION} is not installed as a distribution here (pip install -e . first)")
    return found[0]


def package_wheel(folder: Path) -> Path:
    """pipelines-<version>-py3-none-any.whl from the installed package's files and metadata (no
    build step, no network): what `pip install` puts back is this very code."""
    dist = _installed()
    package = Path(__file__).resolve().parent
    info = f"{DISTRIBUTION}-{dist.version}.dist-info"
    files: list[tuple[str, bytes]] = []
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            files.append((f"{DISTRIBUTION}/{path.relative_to(package).as_posix()}", path.read_bytes()))
    files.append((f"{info}/METADATA", (dist.read_text("METADATA") or "").encode()))
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        files.append((f"{info}/entry_points.txt", entry_points.encode()))
    files.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: pipelines export\nRoot-Is-Purelib: true\n"
                                   b"Tag: py3-none-any\n"))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for arcname, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([arcname, f"sha256={digest}", len(data)])
    writer.writerow([f"{info}/RECORD", "", ""])
    files.append((f"{info}/RECORD", record.getvalue().encode()))
    target = folder / f"{DISTRIBUTION}-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as wheel:
        for arcname, data in files:
            entry = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            wheel.writestr(entry, data, zipfile.ZIP_DEFLATED)
    return target


# ---- what runs on the other side -------------------------------------------------------------------

def predict_script(competition: str, run: str) -> str:
    return f'''"""Predict with run {run} of {competition}, exported by pipelines: needs the package installed
(the notebook beside this file installs it from wheels/ with no index). Writes the submission at --out."""

import argparse
import os
import sys
import time
from pathlib import Path

BUNDLE = Path(__file__).resolve().parent
COMPETITION, RUN = {competition!r}, {run!r}

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--test", required=True, help="what `predict` takes: the test file or image folder")
parser.add_argument("--out", default="submission.csv", help="where to write the submission (default: %(default)s)")
parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
args = parser.parse_args()

os.environ["PIPELINES_HOME"] = str(BUNDLE)   # the bundle's runs and specs, only read
started = time.perf_counter()
import pipelines as pl  # noqa: E402
from pipelines.errors import UserError  # noqa: E402

try:
    pl.predict(COMPETITION, RUN, args.test, args.out, device=args.device)
except UserError as exc:
    sys.exit(f"error: {{exc}}")
print(f"inference: {{time.perf_counter() - started:.1f}} s (import, load and predict)")
'''


def notebook(manifest: dict) -> dict:
    """The inference notebook (nbformat 4): find the bundle, install it with no index, predict."""
    slug = manifest.get("kaggle")
    default_test = f"/kaggle/input/{slug}/" + ("test.csv" if manifest["kind"] == "tabular" else "test") if slug else ""
    cells = [
        ("markdown", f"# {manifest['competition']}: run {manifest['run']}, offline\n\n"
                     f"Exported by pipelines {manifest['package']} for Python {manifest['python']} "
                     f"({manifest['platform']}). Attach the bundle as a dataset; the notebook installs "
                     f"`{manifest['install']}` from its `wheels/` with no index and writes `submission.csv`. "
                     f"`PIPELINES_BUNDLE` and `PIPELINES_TEST` (environment variables) override the paths found."),
        ("code", "import glob, json, os, subprocess, sys, time\n"
                 "found = sorted(glob.glob('/kaggle/input/*/bundle.json') + glob.glob('/kaggle/input/*/*/bundle.json'))\n"
                 "BUNDLE = os.environ.get('PIPELINES_BUNDLE') or (os.path.dirname(found[0]) if found else os.getcwd())\n"
                 f"TEST = os.environ.get('PIPELINES_TEST') or {default_test!r}\n"
                 "OUT = os.environ.get('PIPELINES_OUT', 'submission.csv')\n"
                 "manifest = json.load(open(os.path.join(BUNDLE, 'bundle.json')))\n"
                 "python = f'{sys.version_info.major}.{sys.version_info.minor}'\n"
                 "assert python == manifest['python'], f\"the bundle's wheels are for Python {manifest['python']}, "
                 "this is {python}: export it again under {python}\"\n"
                 "assert TEST, 'set PIPELINES_TEST to the test file or folder'\n"
                 "print('bundle', BUNDLE, '| test', TEST)"),
        ("code", "def run(*command):\n"
                 "    done = subprocess.run([sys.executable, *command], capture_output=True, text=True)\n"
                 "    print(done.stdout, end='')\n"
                 "    print(done.stderr, end='', file=sys.stderr)\n"
                 "    done.check_returncode()\n"
                 "\n"
                 "started = time.perf_counter()\n"
                 "run('-m', 'pip', 'install', '--quiet', '--no-index', '--find-links', os.path.join(BUNDLE, 'wheels'),\n"
                 "    manifest['install'])\n"
                 "print(f'install: {time.perf_counter() - started:.1f} s')"),
        ("code", "run(os.path.join(BUNDLE, 'predict.py'), '--test', TEST, '--out', OUT)"),
    ]
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "language_info": {"name": "python"}},
        "cells": [{"cell_type": kind, "id": f"cell{i}", "metadata": {}, "source": text,
                   **({"execution_count": None, "outputs": []} if kind == "code" else {})}
                  for i, (kind, text) in enumerate(cells)],
    }
