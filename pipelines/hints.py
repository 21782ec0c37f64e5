"""The commands the package prints for the user to run next, written to run as printed where the
user is.

- `python -m pipelines ...` is spelled with the interpreter that runs now, as the current folder
  reaches it: `python` when that name on PATH is this very interpreter (an activated virtual
  environment), else its path relative to the current folder (`.venv/bin/python` in the project
  folder, where `make` runs), else its absolute path.
- `make TARGET ...` is offered only in a folder whose Makefile is this project's (it calls
  `-m pipelines`); elsewhere the same step is given as the command line it stands for.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def python() -> str:
    """How to call the running interpreter from the current folder (module docstring)."""
    executable = sys.executable
    if not executable:
        return "python"
    here = Path(executable).absolute()
    on_path = shutil.which("python")
    if on_path and Path(on_path).absolute() == here:   # not resolved: a venv's python links to its base
        return "python"
    try:
        relative = here.relative_to(Path.cwd())
    except ValueError:
        return shlex.quote(str(here))
    text = str(relative)
    return shlex.quote(text if os.sep in text else f".{os.sep}{text}")


def pipelines(arguments: str) -> str:
    """`<python> -m pipelines ARGUMENTS`, runnable from the current folder."""
    return f"{python()} -m pipelines {arguments}"


def has_makefile() -> bool:
    """Whether `make` here runs this project's Makefile."""
    makefile = Path.cwd() / "Makefile"
    try:
        return makefile.is_file() and "-m pipelines" in makefile.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def make_or_cli(make_arguments: str, cli_arguments: str) -> str:
    """`make MAKE_ARGUMENTS` in the project folder, else `<python> -m pipelines CLI_ARGUMENTS`."""
    return f"make {make_arguments}" if has_makefile() else pipelines(cli_arguments)


def submit(competition: str, run: str, kaggle: bool = False) -> str:
    return make_or_cli(f"submit COMP={competition} RUN={run}" + (" KAGGLE=1" if kaggle else ""),
                       f"submit {competition} --run {run}" + (" --kaggle" if kaggle else ""))


def prepare(competition: str, data: str | None = None) -> str:
    return make_or_cli(f"data COMP={competition}" + (f" DATA={data}" if data else ""),
                       f"prepare {competition}" + (f" --data {data}" if data else ""))
