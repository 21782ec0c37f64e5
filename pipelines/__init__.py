"""pipelines: Kaggle competitions from raw download to a scored submission."""

__version__ = "0.1.0"
