"""A tabular spec (spec.py) as a Competition of the protocol (pipelines/competition.py).

`from_file(path)` is the tabular engine's entry in pipelines/specs.py. The competition's verbs are
SpecVerbs' (cli.py), made when first called so that loading a spec imports no model code; its
`submission` describes the two-column frames the shared stages write (test_predictions.csv of a
regression or binary run, and of a blend: id, then the value or P(positive)), while the verbs
validate the spec's own submission format (value, probability, label, probabilities: task.py).

Blend spaces: regression blends the value (log1p of it for rmsle), binary the logit of
P(positive) (its mean: the mean of the probabilities, as folds are averaged); multiclass runs are
refused by `blend` in one line (pipelines/blend.py blends one prediction column per run).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..competition import BlendSpace, Competition, DataLayout, Metric, Submission
from . import metrics
from .spec import Spec, load as load_spec

EPS = 1e-6   # probabilities are clipped to [EPS, 1 - EPS] before their logit


class _Verb:
    """One of SpecVerbs' verbs, built on first call."""

    def __init__(self, spec: Spec, name: str):
        self.spec, self.name = spec, name

    def __call__(self, args) -> int:
        from .cli import SpecVerbs

        if self.name == "predict":
            return _predict(self.spec, args)
        return getattr(SpecVerbs(self.spec), self.name)(args)

    def __repr__(self) -> str:
        return f"<{self.spec.name} {self.name}>"


def _predict(spec: Spec, args) -> int:
    """SpecVerbs' predict, and for a blend run its members' predictions combined as the blend
    combined them (pipelines/blend.py), written in the spec's submission format."""
    from .. import blend, paths, runs
    from . import data, task
    from .cli import SpecVerbs

    run_dir = paths.find_run(spec.name, args.run)
    if not blend.is_blend_dir(run_dir):
        return SpecVerbs(spec).predict(args)
    run = runs.load_run(run_dir)
    frame = blend.predict(spec.name, run_dir, Path(args.test), getattr(args, "device", None) or "auto")
    sample = Path(run["data"]["train"]).with_name(data.SAMPLE)
    path = task.write_submission(spec, frame, Path(args.out), sample if sample.exists() else None,
                                 classes=run.get("classes"))
    print(f"wrote {path} ({len(frame)} rows) from blend {run_dir.name}")
    return 0


class SpecSpace(BlendSpace):
    """What every tabular blend space shares: the run files' columns (task.py) and prediction."""
    data_key, test_data_key = "train_sha", "test_sha"
    not_blendable: str | None = None

    def __init__(self, spec: Spec):
        self.spec = spec
        self.metric = metrics.get(spec.metric)
        self.oof_id, self.target, self.oof_value = spec.id, spec.target, f"oof_{spec.target}"
        self.test_id, self.test_value = spec.id, spec.target

    def scores(self, truth: np.ndarray, pred: np.ndarray, clip) -> dict:
        return metrics.scores(self.spec.task, self.spec.metric, np.asarray(truth), np.asarray(pred, float))

    def test_frame(self, ids: np.ndarray, pred: np.ndarray, clip):
        import pandas as pd

        return pd.DataFrame({self.test_id: ids, self.test_value: pred})

    def predict_member(self, run_dir: Path, test: Path, device: str):
        from . import task

        return task.predict(run_dir, test, device)

    def extra(self, cv: dict, first_run: dict) -> dict:
        """What `submit` and the leaderboard read from a run.json: the members' classes and spec."""
        keys = ("dataset", "engine", "task", "classes", "submission", "spec")
        return {k: first_run[k] for k in keys if k in first_run}


class ValueSpace(SpecSpace):
    """Regression: values blended as they are (or as log1p(value) for rmsle, the metric's space)."""

    def __init__(self, spec: Spec):
        super().__init__(spec)
        self.log = spec.target_transform == "log1p"
        self.space = self.mean_space = "log1p(value)" if self.log else "value"
    loss = "squared"

    def link(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, float)
        return np.log1p(np.clip(values, 0.0, None)) if self.log else values

    def unlink(self, z: np.ndarray) -> np.ndarray:
        return np.clip(np.expm1(z), 0.0, None) if self.log else np.asarray(z, float)

    def fit_target(self, truth: np.ndarray) -> np.ndarray:
        return self.link(truth)

    def stack(self, z: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
        from sklearn.linear_model import LinearRegression

        model = LinearRegression(positive=True).fit(z, target)
        return np.asarray(model.coef_, float), float(model.intercept_)


class ProbabilitySpace(SpecSpace):
    """Binary: P(positive) blended as logits (weights fitted on the log loss, a logistic stack);
    the mean is the mean of the probabilities."""
    loss = "logistic"

    def __init__(self, spec: Spec):
        super().__init__(spec)
        self.space, self.mean_space = "logit of P(positive)", "P(positive)"

    def truth(self, oof, run: dict) -> np.ndarray:
        """oof.csv's target as written in train.csv -> 1 for the run's positive class, else 0."""
        labels = oof[self.target]
        classes = run.get("classes") or []
        if len(classes) != 2:
            return labels.to_numpy(dtype=float)
        negative, positive = (str(c) for c in classes)
        text = labels.astype(str).str.strip()
        if not text.isin([negative, positive]).all():  # numeric labels read back as numbers (0/1, 1.0)
            try:
                number = labels.astype(float).to_numpy()
                return (number == float(positive)).astype(float)
            except (TypeError, ValueError):
                pass
        return (text == positive).to_numpy(dtype=float)

    def member_values(self, values: np.ndarray, run: dict) -> np.ndarray:
        return np.clip(np.asarray(values, float), 0.0, 1.0)

    def link(self, values: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(values, float), EPS, 1.0 - EPS)
        return np.log(p) - np.log1p(-p)

    def unlink(self, z: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.asarray(z, float)))

    def fit_target(self, truth: np.ndarray) -> np.ndarray:
        return np.asarray(truth, float)

    def mean(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, float).mean(axis=1)

    def stack(self, z: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=1.0, max_iter=2000).fit(z, target.astype(int))
        return np.asarray(model.coef_[0], float), float(model.intercept_[0])


class ClassProbabilitySpace(ProbabilitySpace):
    """Multiclass: one probability column per class, which pipelines/blend.py cannot combine yet;
    `blend` refuses these runs (not_blendable) instead of blending one column of them."""
    not_blendable = "blending multiclass runs is not supported yet"

    def __init__(self, spec: Spec):
        super().__init__(spec)
        self.space = self.mean_space = "class probabilities"


SPACES = {"regression": ValueSpace, "binary": ProbabilitySpace, "multiclass": ClassProbabilitySpace}


def submission(spec: Spec) -> Submission:
    """The two-column frame the shared stages write (module docstring), under the spec's format."""
    if spec.task == "regression" and spec.metric == "rmsle":
        ok, rule = (lambda v: v >= 0), "a finite number >= 0"
    elif spec.task == "regression":
        ok, rule = (lambda v: np.isfinite(v)), "a finite number"
    else:
        ok, rule = (lambda v: (v >= 0) & (v <= 1)), "a probability in [0, 1]"
    return Submission(columns=(spec.id, spec.target), format=spec.submission, value_ok=ok, value_rule=rule)


def report_sections(spec: Spec):
    def sections(run_dir: Path, run: dict, out: Path) -> list[str]:
        classes = run.get("classes")
        lines = ["## Spec", "", f"- task: {spec.task}; metric: {spec.metric} "
                 f"({'higher' if spec.greater_is_better else 'lower'} is better); submission: {spec.submission}"]
        if classes:
            lines.append(f"- classes: {', '.join(map(str, classes))}" +
                         (f" (positive: {classes[-1]})" if spec.task == "binary" else ""))
        if run.get("spec"):
            lines.append(f"- spec file: {run['spec']}")
        return lines + [""]
    return sections


def from_spec(spec: Spec) -> Competition:
    metric = metrics.get(spec.metric)
    return Competition(
        name=spec.name,
        title=spec.description or spec.name,
        kind="tabular",
        task=spec.task,
        metric=Metric(spec.metric, metric, greater_is_better=metric.greater_is_better),
        data=DataLayout(present=("train.csv",)),
        id_column=spec.id,
        target_column=spec.target,
        submission=submission(spec),
        blend=SPACES[spec.task](spec),
        verbs={name: _Verb(spec, name) for name in ("prepare", "train", "predict", "submit")},
        kaggle_slug=spec.kaggle,
        default_config=None,   # SpecVerbs picks --config, else the spec's `config:`, else lightgbm (configs/tabular/)
        test_input="test CSV",
        report_sections=report_sections(spec),
    )


def from_file(path: str | Path) -> Competition:
    """The Competition of a tabular spec file (pipelines/specs.py's engine for kind: tabular)."""
    return from_spec(load_spec(path))
