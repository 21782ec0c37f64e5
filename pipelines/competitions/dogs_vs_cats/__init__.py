"""Dogs vs. Cats (binary image classification): importing the package registers it (competition.py)."""

from .competition import DOGS_VS_CATS  # noqa: F401  (registers it)
