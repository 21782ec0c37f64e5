"""`--track mlflow`: every run a command records is also logged to MLflow, so that `mlflow ui`
shows the same leaderboard (an optional extra: `pip install -e '.[track]'`).

What a run logs, once its run.json, metrics.json and report are written (report.py):
- params: the config's values (run.json's config_values; a blend's method and members);
- metrics: every CV figure (`cv_<name>`), the main metric per fold (`fold_<metric>`, step = fold),
  and each fold's learning curve where training kept one (`fold<k>_<figure>`, e.g.
  `fold0_valid_logloss`, step = epoch);
- tags: the competition, config, engine, fold scheme, the run's folder and training_id;
- artifacts: the run's report folder (report.md and its plots) and run.json.

The store: MLFLOW_TRACKING_URI when set (a server's URL, or any store MLflow takes), else a local
SQLite file, `mlflow.db` in the project home, its artifacts in `mlartifacts/` beside it (`mlflow ui
--backend-store-uri sqlite:///mlflow.db` there). The experiment is the competition's name. A run logged again (resumed, re-recorded) updates
its MLflow run, found by its training_id, instead of adding another.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from . import paths
from .errors import UserError

ENV = "PIPELINES_TRACK"   # set by --track (the command) or track= (the API): the tracker's name
TRACKERS = ("mlflow",)
STORE = "mlflow.db"
ARTIFACTS = "mlartifacts"   # the local store's artifacts, beside it


def enable(tracker: str | None) -> None:
    """Turn tracking on for this process and the processes it starts (a preset's members), after
    checking the tracker can be imported: one line naming the extra to install otherwise."""
    if tracker is None:
        return
    if tracker not in TRACKERS:
        raise UserError(f"--track {tracker!r}: choose one of {', '.join(TRACKERS)}")
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        raise UserError("--track mlflow needs MLflow, an optional extra: pip install -e '.[track]' "
                        "(or pip install mlflow)")
    os.environ[ENV] = tracker


@contextlib.contextmanager
def tracked(tracker: str | None):
    """Tracking by `tracker` (None: as it was) inside the block, as it was after it (the API's
    track=, one command of the command line)."""
    before = os.environ.get(ENV)
    try:
        enable(tracker)
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


def enabled() -> bool:
    return os.environ.get(ENV, "") in TRACKERS


def local_store() -> str:
    return f"sqlite:///{(paths.home() / STORE).resolve()}"


def store_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or local_store()


def _params(run: dict) -> dict:
    values = dict(run.get("config_values") or {})
    blend = run.get("blend")
    if blend:
        values.update(method=blend.get("method"), members=",".join(m["run"] for m in blend.get("members", [])))
    return {k: (json.dumps(v) if isinstance(v, (list, dict)) else str(v))[:6000] for k, v in values.items()}


def _curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Each fold's learning curve from its checkpoint's meta.json history: name -> [(epoch, value)]."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for meta_path in sorted(run_dir.glob("fold*/meta.json")):
        fold = meta_path.parent.name
        try:
            history = json.loads(meta_path.read_text()).get("history") or []
        except (OSError, json.JSONDecodeError):
            continue
        for entry in history:
            epoch = entry.get("epoch")
            for name, value in entry.items():
                if name not in ("epoch", "seconds") and isinstance(value, (int, float)) and isinstance(epoch, int):
                    curves.setdefault(f"{fold}_{name}", []).append((epoch, float(value)))
    return curves


def log_run(run_dir: str | Path) -> str:
    """Log one recorded run (its folder) to the store; returns the MLflow run id."""
    import logging

    import mlflow
    from mlflow.tracking import MlflowClient

    for logger in ("alembic", "mlflow"):  # a new SQLite store migrates, and experiments appear, quietly
        logging.getLogger(logger).setLevel(logging.WARNING)
    run_dir = Path(run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    figures = json.loads((run_dir / "metrics.json").read_text())
    uri = store_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    name = str(run["competition"])
    if client.get_experiment_by_name(name) is None and uri == local_store():
        # the local store keeps its artifacts beside it in the project home, not in the current folder
        client.create_experiment(name, artifact_location=(paths.home() / ARTIFACTS).resolve().as_uri())
    experiment = mlflow.set_experiment(name)
    training_id = str(run.get("training_id", ""))
    found = client.search_runs([experiment.experiment_id], f"tags.`pipelines.training_id` = '{training_id}'",
                               max_results=1) if training_id else []
    tags = {"pipelines.competition": str(run["competition"]), "pipelines.config": str(run.get("config")),
            "pipelines.engine": str(run.get("engine", "")), "pipelines.folds": str(run.get("folds_scheme", "stratified")),
            "pipelines.path": str(run_dir.resolve()), "pipelines.training_id": training_id,
            "pipelines.metric": str(run.get("metric"))}
    with mlflow.start_run(run_id=found[0].info.run_id if found else None, run_name=run["run"], tags=tags) as active:
        params = _params(run)
        logged = set(found[0].data.params) if found else set()
        new = {k: v for k, v in params.items() if k not in logged}  # MLflow refuses to change a logged param
        if new:
            mlflow.log_params(new)
        mlflow.log_metrics({f"cv_{k}": float(v) for k, v in figures["cv"].items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
        metric = run["metric"]
        for entry in figures.get("folds", []):
            if isinstance(entry.get(metric), (int, float)):
                mlflow.log_metric(f"fold_{metric}", float(entry[metric]), step=int(entry["fold"]))
        for name, points in _curves(run_dir).items():
            for epoch, value in points:
                mlflow.log_metric(name, value, step=epoch)
        report = paths.report_path(run_dir).parent
        if report.is_dir():
            mlflow.log_artifacts(str(report), "report")
        mlflow.log_artifact(str(run_dir / "run.json"))
        return active.info.run_id


def after_training(run_dir: str | Path) -> None:
    """log_run when tracking is on; a store that fails is one warning line (the run is recorded)."""
    if not enabled():
        return
    try:
        log_run(run_dir)
    except Exception as exc:  # a server down or a store it cannot write: the run itself is fine
        print(f"warning: run {Path(run_dir).name} not logged to MLflow at {store_uri()} "
              f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})", file=sys.stderr)
