"""Dogs vs. Cats (Kaggle's Redux edition) as a competition (pipelines.competition): registered
when this package is imported.

Kept light (numpy only): the verbs (cli.py), the report section (report.py) and everything that
reads images or checkpoints (task.py, torch) are imported when first used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...competition import BlendSpace, Competition, DataLayout, Lazy, Metric, Submission, lazy_verbs, register
from ...metrics import log_loss

NAME = "dogs-vs-cats"
METRIC = "log_loss"
ID, TARGET = "id", "label"
PROB_EPS = 1e-6          # P(dog) is kept in [eps, 1 - eps] before taking logits

SUBMISSION = Submission(columns=(ID, TARGET), format="probability", value_ok=lambda v: (v >= 0) & (v <= 1),
                        value_rule="a probability in [0, 1]")


def _clip_of(run: dict) -> float:
    return float(run.get("config_values", {}).get("clip") or 0.0)


class LogitPDog(BlendSpace):
    """Members are blended as logits of P(dog): weights fitted on the log loss, a logistic
    regression as the stack; the mean is the mean of the probabilities. Members' P(dog) are
    clipped with their own `clip` first, as their test predictions were; the blend clips with
    the smallest of its members' clips."""
    space, mean_space = "logit of P(dog)", "P(dog)"
    loss = "logistic"
    oof_id, target, oof_value = "key", TARGET, "oof_p_dog"
    test_id, test_value = ID, TARGET
    data_key, test_data_key = "train_fingerprint", "test_fingerprint"

    def member_values(self, values: np.ndarray, run: dict) -> np.ndarray:
        clip = max(_clip_of(run), PROB_EPS)
        return np.clip(np.asarray(values, float), clip, 1.0 - clip)

    def link(self, values: np.ndarray) -> np.ndarray:
        p = np.clip(values, PROB_EPS, 1.0 - PROB_EPS)
        return np.log(p) - np.log1p(-p)

    def unlink(self, z: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-z))

    def fit_target(self, truth: np.ndarray) -> np.ndarray:
        return np.asarray(truth, float)

    def mean(self, values: np.ndarray) -> np.ndarray:
        return values.mean(axis=1)

    def blend_clip(self, member_runs: list[dict]) -> float:
        """The smallest clip of the members: the blend never clips harder than any of them."""
        return min(_clip_of(r) for r in member_runs)

    def scores(self, truth: np.ndarray, pred: np.ndarray, clip) -> dict:
        from . import task

        return task.scores(truth, pred, clip)

    def cv_extras(self, truth: np.ndarray, oof: np.ndarray) -> dict:
        from . import task

        return task.clip_scan(truth, oof)

    def stack(self, z: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=1.0, max_iter=2000).fit(z, target.astype(int))
        return np.asarray(model.coef_[0], float), float(model.intercept_[0])

    def test_frame(self, ids: np.ndarray, pred: np.ndarray, clip):
        from . import task

        return task.submission_frame(ids, pred, clip)

    def predict_member(self, run_dir: Path, test: Path, device: str):
        """A trained run's P(dog) (clipped by its own clip) for an image folder, from its fold checkpoints."""
        from . import task

        return task.predict_folder(run_dir, test, device)

    def extra(self, cv: dict, first_run: dict) -> dict:
        return {"accuracy": cv["accuracy"], "roc_auc": cv["roc_auc"]}


def portfolio(preset: str, data):
    """`train dogs-vs-cats --preset best|fast`: the default (`effnet-lite2-int8`), or `effnet-lite0-fast`
    (about half its time); one recipe each, nothing to blend."""
    from ...presets import Member, Plan

    config = "effnet-lite2-int8" if preset == "best" else "effnet-lite0-fast"
    return Plan((Member(config, config),))


DOGS_VS_CATS = register(Competition(
    name=NAME,
    title="Dogs vs. Cats",
    # Redux: train.zip, test.zip, sample_submission.csv inside one archive. The image zips
    # stay zipped: the prepare stage reads them in place (no 37,500 small files on disk).
    kaggle_slug="dogs-vs-cats-redux-kernels-edition",
    kind="images",
    task="binary",
    metric=Metric(METRIC, log_loss, greater_is_better=False),
    data=DataLayout(present=("train", "train.zip"), keep_zipped=("train.zip", "test.zip", "test1.zip")),
    id_column=ID,
    target_column=TARGET,
    submission=SUBMISSION,
    blend=LogitPDog(),
    verbs=lazy_verbs(f"{__package__}.cli", "prepare", "train", "submit", "summary"),
    write_predicted=Lazy(f"{__name__}:write_predicted"),
    default_config="effnet-lite2-int8",
    test_input="image folder",
    report_sections=Lazy(f"{__package__}.report:sections"),
    portfolio=portfolio,
))


def write_predicted(run_dir: Path, run: dict, frame, out: Path, test: Path) -> Path:
    """`predict`'s submission (pipelines/api.py): id,label for the predicted images, validated."""
    from . import task

    return task.write_submission(frame, Path(out), frame[task.ID])
