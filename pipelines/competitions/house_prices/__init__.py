"""House Prices (tabular regression): importing the package registers it (competition.py)."""

from .competition import HOUSE_PRICES  # noqa: F401  (registers it)
