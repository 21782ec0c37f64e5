"""The built-in competitions, one package each. Importing this package imports every one of
them, and each registers its Competition (pipelines/competition.py) as it is imported; the
shared stages look competitions up there, never here."""

from __future__ import annotations

import importlib

BUILTIN = ("house_prices", "dogs_vs_cats")   # registration order: the order `known:` lists them in

for _package in BUILTIN:
    importlib.import_module(f"{__name__}.{_package}")

from ..competition import add_loader  # noqa: E402
from ..specs import known as _known_specs, loader as _spec_loader  # noqa: E402

add_loader(_spec_loader, _known_specs)  # spec files (pipelines/specs.py): names and paths no package registered
