"""Registry of competitions: name -> module with the competition's verbs."""

from __future__ import annotations

import difflib
import importlib

from ..errors import UserError

COMPETITIONS = {
    "house-prices": "pipelines.competitions.house_prices.cli",
    "dogs-vs-cats": "pipelines.competitions.dogs_vs_cats.cli",
}


def get(name: str):
    if name not in COMPETITIONS:
        close = difflib.get_close_matches(name, list(COMPETITIONS), n=1, cutoff=0.4)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown competition {name!r}{hint}; known: {', '.join(COMPETITIONS)}")
    return importlib.import_module(COMPETITIONS[name])
