"""An images spec (spec.py) as a Competition of the protocol (pipelines/competition.py).

`from_file(path)` is the image engine's entry in pipelines/specs.py (ENGINES["images"]). The verbs
are ImageSpecVerbs' (cli.py), made when first called, so loading a spec imports no model code.
The run files have pipelines/tabular's layout (task.py's docstring), so the submission rule, the
blend spaces and the report section are the tabular engine's, with the image runs' data
fingerprints and prediction from a folder of images: binary runs blend as logits of P(positive),
multiclass runs as log class probabilities (a softmax maps them back), as tabular ones do.
"""

from __future__ import annotations

import functools
from pathlib import Path

from ..competition import Competition, DataLayout, Lazy, Metric
from ..tabular import competition as tabular, metrics
from .spec import ImageSpec, load as load_spec


class _Verb:
    """One of ImageSpecVerbs' verbs, built on first call."""

    def __init__(self, spec: ImageSpec, name: str):
        self.spec, self.name = spec, name

    def __call__(self, args) -> int:
        from .cli import ImageSpecVerbs

        return getattr(ImageSpecVerbs(self.spec), self.name)(args)

    def __repr__(self) -> str:
        return f"<{self.spec.name} {self.name}>"


class _WritePredicted:
    """`predict`'s submission for an images spec (pipelines/api.py makes the frame): the template's
    columns, and its rows when the folder holds exactly its ids."""

    def __init__(self, spec: ImageSpec):
        self.spec = spec

    def __call__(self, run_dir: Path, run: dict, frame, out: Path, test: Path) -> Path:
        from . import task
        from .cli import ImageSpecVerbs

        sample = ImageSpecVerbs(self.spec)._template(run, f"{test}, by id")
        return task.write_submission(self.spec, frame, Path(out), run.get("classes"), sample, template_rows=False,
                                     threshold=run.get("threshold", 0.5))


class _ImageRuns:
    """What image runs change in a tabular blend space: where their data fingerprints are, and how
    a member predicts a new test folder."""
    data_key, test_data_key = "train_fingerprint", "test_fingerprint"

    def predict_member(self, run_dir: Path, test: Path, device: str):
        from . import task

        return task.predict(run_dir, test, device)

    def extra(self, cv: dict, first_run: dict) -> dict:
        keys = ("dataset", "engine", "task", "classes", "submission", "spec", "image_size")
        return {k: first_run[k] for k in keys if k in first_run}


class ProbabilitySpace(_ImageRuns, tabular.ProbabilitySpace):
    pass


class ClassProbabilitySpace(_ImageRuns, tabular.ClassProbabilitySpace):
    pass


SPACES = {"binary": ProbabilitySpace, "multiclass": ClassProbabilitySpace}


def from_spec(spec: ImageSpec) -> Competition:
    metric = metrics.get(spec.metric)
    return Competition(
        name=spec.name,
        title=spec.description or spec.name,
        kind="images",
        task=spec.task,
        metric=Metric(spec.metric, metric, greater_is_better=metric.greater_is_better),
        data=DataLayout(present=(spec.marker, f"{spec.marker}.zip")),
        id_column=spec.id,
        target_column=spec.target,
        submission=tabular.submission(spec),
        blend=SPACES[spec.task](spec),
        verbs={name: _Verb(spec, name) for name in ("prepare", "train", "submit")},
        write_predicted=_WritePredicted(spec),
        kaggle_slug=spec.kaggle,
        default_config=None,   # ImageSpecVerbs picks --config, else the spec's `config:`, else task.DEFAULT_CONFIG
        test_input="image folder",
        report_sections=tabular.report_sections(spec),
        portfolio=functools.partial(Lazy("pipelines.images.presets:portfolio"), spec),
    )


def from_file(path: str | Path) -> Competition:
    """The Competition of an images spec file (pipelines/specs.py's engine for kind: images)."""
    return from_spec(load_spec(path))
