"""A tabular spec (spec.py) as a Competition of the protocol (pipelines/competition.py).

`from_file(path)` is the tabular engine's entry in pipelines/specs.py. The competition's verbs are
SpecVerbs' (cli.py), made when first called so that loading a spec imports no model code; its
`submission` describes the two-column frames the shared stages write (test_predictions.csv of a
regression or binary run, and of a blend: id, then the value or P(positive); multiclass files have
one column per class and are written by the spec's own writer), while the verbs
validate the spec's own submission format (value, probability, label, probabilities: task.py). A
binary run's (and blend's) test_predictions.csv stays id + P(positive) whatever that format: for
`submission: probabilities` the verbs' writer (task.write_submission) makes one column per class of
it, so blends of such a spec submit and predict as its runs do.

Blend spaces: regression blends the value (log1p of it for rmsle), binary the logit of
P(positive) (its mean: the mean of the probabilities, as folds are averaged); multiclass the log
of each class probability, turned back into rows of probabilities by a softmax.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..competition import BlendSpace, Competition, DataLayout, Lazy, Metric, Submission
from ..errors import UserError
from . import metrics
from .spec import Spec, load as load_spec

EPS = 1e-6   # probabilities are clipped to [EPS, 1 - EPS] before their logit


class _Verb:
    """One of SpecVerbs' verbs, built on first call."""

    def __init__(self, spec: Spec, name: str):
        self.spec, self.name = spec, name

    def __call__(self, args) -> int:
        from .cli import SpecVerbs

        return getattr(SpecVerbs(self.spec), self.name)(args)

    def __repr__(self) -> str:
        return f"<{self.spec.name} {self.name}>"


class _WritePredicted:
    """`predict`'s submission for a spec (pipelines/api.py makes the frame): the template's columns,
    and its rows when the file holds exactly its ids (task.write_submission)."""

    def __init__(self, spec: Spec):
        self.spec = spec

    def __call__(self, run_dir: Path, run: dict, frame, out: Path, test: Path) -> Path:
        from . import task
        from .cli import SpecVerbs

        sample = SpecVerbs(self.spec).template(run, str(test))
        return task.write_submission(self.spec, frame, Path(out), sample, classes=run.get("classes"),
                                     template_rows=False, threshold=run.get("threshold", 0.5))


class SpecSpace(BlendSpace):
    """What every tabular blend space shares: the run files' columns (task.py) and prediction."""
    data_key, test_data_key = "train_sha", "test_sha"
    not_blendable: str | None = None

    def __init__(self, spec: Spec):
        self.spec = spec
        self.metric = metrics.get(spec.metric)
        self.oof_id, self.target, self.oof_value = spec.id, spec.target, f"oof_{spec.target}"
        self.test_id, self.test_value = spec.id, spec.target

    def scores(self, truth: np.ndarray, pred: np.ndarray, clip, threshold=0.5) -> dict:
        return metrics.scores(self.spec.task, self.spec.metric, np.asarray(truth), np.asarray(pred, float), threshold)

    def decisions(self, truth: np.ndarray, oof: np.ndarray, folds: np.ndarray):
        return metrics.out_of_fold_decisions(self.spec.task, self.spec.metric, truth, oof, folds)

    def test_frame(self, ids: np.ndarray, pred: np.ndarray, clip):
        import pandas as pd

        return pd.DataFrame({self.test_id: ids, self.test_value: pred})

    def predict_member(self, run_dir: Path, test: Path, device: str):
        from . import task

        return task.predict(run_dir, test, device)

    def extra(self, cv: dict, first_run: dict) -> dict:
        """What `submit` and the leaderboard read from a run.json: the members' classes and spec."""
        keys = ("dataset", "engine", "task", "classes", "submission", "spec", "folds_scheme")
        return {k: first_run[k] for k in keys if k in first_run}


class ValueSpace(SpecSpace):
    """Regression: values blended as they are (or as log1p(value) for rmsle, the metric's space);
    the weights minimise squared error there, or the absolute error for a spec scored by mae."""

    def __init__(self, spec: Spec):
        super().__init__(spec)
        self.log = spec.target_transform == "log1p"
        self.space = self.mean_space = "log1p(value)" if self.log else "value"
        self.loss = "absolute" if spec.metric == "mae" else "squared"

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
    """Multiclass: members are rows of class probabilities (oof_<class> / <class> columns, in the
    run's class order), blended on the log probabilities and mapped back by a softmax, so weights
    summing to 1 give a normalised geometric mean of the members; the weights are fitted on the
    multiclass log loss, and the stack fits non-negative member weights (which may sum to more or
    less than 1, a temperature) and one intercept per class. The mean is the mean of the
    probabilities."""
    loss = "multinomial"

    def __init__(self, spec: Spec):
        super().__init__(spec)
        self.space, self.mean_space = "log class probabilities", "class probabilities"

    @staticmethod
    def _classes(run: dict) -> list[str]:
        classes = run.get("classes")
        if not classes:
            raise UserError(f"run {run.get('name', '?')}: its run.json lists no classes, so its class "
                            f"probability columns are unknown")
        return [str(c) for c in classes]

    def oof_columns(self, run: dict) -> list[str]:
        return [f"oof_{c}" for c in self._classes(run)]

    def test_columns(self, run: dict) -> list[str]:
        return self._classes(run)

    def truth(self, oof, run: dict) -> np.ndarray:
        """oof.csv's target as written in train.csv -> its index in the run's classes."""
        classes = self._classes(run)
        index = {c: i for i, c in enumerate(classes)}
        labels = oof[self.target]
        text = labels.astype(str).str.strip()
        if not text.isin(classes).all():  # numeric labels read back as numbers (1.0 for "1")
            try:
                as_number = {float(c): i for i, c in enumerate(classes)}
                return np.array([as_number[float(v)] for v in labels], dtype=int)
            except (TypeError, ValueError, KeyError):
                unknown = text[~text.isin(classes)].iloc[0]
                raise UserError(f"oof.csv: label {unknown!r} is not one of the run's classes") from None
        return text.map(index).to_numpy(dtype=int)

    def fit_target(self, truth: np.ndarray) -> np.ndarray:
        return np.asarray(truth, int)

    def link(self, values: np.ndarray) -> np.ndarray:
        return np.log(np.clip(np.asarray(values, float), EPS, 1.0))

    def unlink(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, float)
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def stack(self, z: np.ndarray, target: np.ndarray, C: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Non-negative member weights and per-class intercepts (centred) that minimise the log
        loss of softmax(sum_j w_j z_j + b) on these rows plus an L2 penalty on all of them of
        |theta|^2 / (2 C rows), the binary stack's (scikit-learn's LogisticRegression, C=1): without
        it, rows the members separate perfectly send the weights to infinity."""
        from scipy.optimize import minimize

        from ..blending import softmax_loss, weighted

        z, target = np.asarray(z, float), np.asarray(target, int)
        n, m, k = z.shape
        l2 = 1.0 / (C * n)

        def objective(theta):
            w, b = theta[:m], theta[m:]
            value, grad = softmax_loss(weighted(z, w) + b, target)
            return (value + 0.5 * l2 * float(theta @ theta),
                    np.concatenate([np.einsum("nk,nmk->m", grad, z), grad.sum(axis=0)]) + l2 * theta)

        start = np.concatenate([np.full(m, 1.0 / m), np.zeros(k)])
        result = minimize(objective, start, jac=True, method="L-BFGS-B",
                          bounds=[(0.0, None)] * m + [(None, None)] * k, options={"maxiter": 2000})
        theta = np.asarray(result.x, float)
        if not np.isfinite(theta).all():
            raise UserError(f"blend: the stack fit failed ({result.message})")
        return theta[:m], theta[m:] - theta[m:].mean()

    def write_test(self, frame, path: Path, expected_ids, submission, run: dict):
        from . import task

        return task.write_predictions(self.spec, frame, path, expected_ids, self._classes(run))


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
        verbs={name: _Verb(spec, name) for name in ("prepare", "train", "submit")},
        write_predicted=_WritePredicted(spec),
        kaggle_slug=spec.kaggle,
        default_config=None,   # SpecVerbs picks --config, else the spec's `config:`, else lightgbm (configs/tabular/)
        test_input="test CSV",
        report_sections=report_sections(spec),
        portfolio=functools.partial(Lazy("pipelines.tabular.presets:portfolio"), spec),
    )


def from_file(path: str | Path) -> Competition:
    """The Competition of a tabular spec file (pipelines/specs.py's engine for kind: tabular)."""
    return from_spec(load_spec(path))
