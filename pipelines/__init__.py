"""pipelines: Kaggle competitions from raw download to a scored submission.

The Python API (pipelines/api.py): `import pipelines as pl`, then pl.train, pl.predict, pl.submit,
pl.export, pl.blend, pl.prepare, pl.run, pl.leaderboard; imported on first use, so `python -m pipelines`
starts as fast as before.
"""

__version__ = "0.1.0"

API = ("prepare", "train", "predict", "submit", "export", "blend", "run", "leaderboard", "load", "Run")


def __getattr__(name: str):
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *API])
