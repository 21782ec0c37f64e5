"""House Prices: k-fold training, prediction from fold checkpoints, submission."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ... import atomic, checkpoint, config as configs, distributed, folds as folding, kfold, resume, runs, submission
from ...device import cpu_threads, resolve
from ...errors import UserError
from ...metrics import rmse, rmse_log
from ...progress import fold_label
from ...training import Resume, TrainSettings, fit, seed_everything
from ...tabular import networks
from . import comps, estimators, models
from .data import ID, TARGET, fingerprint, read_csv
from .features import Preprocessor, parse_interactions

NAME = "house-prices"
METRIC = "rmse_log"
DEFAULT_CONFIG = "tabm"
SUBMISSION_COLUMNS = [ID, TARGET]
# The networks here (a few hundred inputs, one hidden layer) train as fast on one CPU thread as on
# two (benchmarks/house_prices.py), and one thread everywhere makes every fold's numbers the same
# whatever OMP_NUM_THREADS or core count the process that trains it has (device.cpu_threads).
NETWORK_THREADS = 1


@dataclass
class HouseConfig:
    name: str = configs.option("custom")
    model: str = configs.option("mlp", choices=["mlp", "linear", "tabm", *estimators.CLASSICAL])
    features: str = configs.option("full", choices=["full", "d2l"])
    target: str = configs.option("log", choices=["log", "raw"])
    folds: int = configs.option(5, min=2, max=20)
    seed: int = configs.option(42)
    hidden: list[int] = configs.option([256], min=1)
    dropout: float = configs.option(0.1, min=0.0, max=0.95)
    skip_linear: bool = configs.option(True)
    epochs: int = configs.option(200, min=1)
    batch_size: int = configs.option(64, min=1)
    optimizer: str = configs.option("adamw", choices=["adam", "adamw", "sgd"])
    lr: float = configs.option(1e-3, min=0.0)
    weight_decay: float = configs.option(0.0, min=0.0)
    schedule: str = configs.option("cosine", choices=["cosine", "constant"])
    warmup_epochs: float = configs.option(0.0, min=0.0)
    patience: int = configs.option(0, min=0)
    # last: the CV scores the model that also predicts the test set, after a fixed number of epochs.
    # best (or patience) picks the epoch on the fold's validation rows, the rows the CV then scores:
    # 0.0017 (mlp) to 0.0025 (mlp-ix) better-looking than the same networks' honest CV.
    keep: str = configs.option("last", choices=["best", "last"])
    loss: str = configs.option("mse", choices=["mse", "huber"])
    drop_outliers: bool = configs.option(False)
    clip_quantile: float = configs.option(0.0, min=0.0, max=0.2)
    seeds_per_fold: int = configs.option(1, min=1, max=20)
    scaling: str = configs.option("standard", choices=["standard", "robust"])
    # category-specific slopes, "CATEGORICAL*NUMERIC" (full recipe), e.g. Neighborhood*GrLivArea
    interactions: list[str] = configs.option([])
    # classical models (estimators.py): lasso / elasticnet / ridge
    alpha: float = configs.option(0.0005, min=0.0)
    l1_ratio: float = configs.option(0.5, min=0.0, max=1.0)
    max_iter: int = configs.option(50000, min=1)
    # gbm (LightGBM; lr is its learning rate, weight_decay its L2 on leaf values)
    n_estimators: int = configs.option(2000, min=1)
    num_leaves: int = configs.option(8, min=2)
    min_child_samples: int = configs.option(10, min=1)
    subsample: float = configs.option(0.8, min=0.1, max=1.0)
    colsample: float = configs.option(0.3, min=0.01, max=1.0)
    gbm_objective: str = configs.option("huber", choices=["regression", "huber"])
    linear_tree: bool = configs.option(False)   # a linear model in each leaf (LightGBM linear_tree)
    linear_lambda: float = configs.option(0.0, min=0.0)  # L2 on those linear models
    # comparable-sales adjustment (comps.py), any model: how many nearest training houses, and how
    # much more a shared neighbourhood counts than the other coordinates; 0 = off
    comps: int = configs.option(0, min=0, max=200)
    comps_hood_weight: float = configs.option(3.0, min=0.0)
    # tabm (models.TabMNet): k members sharing the MLP `hidden` (len(hidden) blocks of one width),
    # `dropout` and `skip_linear`; its numeric columns plain or through piecewise-linear embeddings
    # (pwl: n_bins quantile bins per column from the fold's training rows, d_embedding per column)
    tabm_k: int = configs.option(32, min=1, max=256)
    num_embeddings: str = configs.option("none", choices=["none", "pwl"])
    n_bins: int = configs.option(48, min=2, max=512)
    d_embedding: int = configs.option(16, min=1, max=256)
    # catboost: tree depth (n_estimators its iterations, lr, weight_decay its l2_leaf_reg,
    # subsample and colsample its rsm, as for gbm)
    depth: int = configs.option(6, min=1, max=16)


# The keys each model family reads (a config, and --set, may name only these): every model shares
# the data keys (preprocessing, folds, seeds, comparable sales); each family declares its own next to
# its code (models.KEYS: the networks; estimators.KEYS: the classical models). HouseConfig stays one
# flat record (run.json, config hashes and resumed runs read it as before); a key outside its family
# keeps its default and is never read.
DATA_KEYS = {"name", "model", "features", "target", "folds", "seed", "clip_quantile", "drop_outliers",
             "seeds_per_fold", "scaling", "interactions", "comps", "comps_hood_weight"}
FAMILY_KEYS = {**models.KEYS, **estimators.KEYS}


def family_keys(values: dict) -> tuple[str, set[str]]:
    """("model: <model>", the keys a config of that model may hold): config.load's family check."""
    return f"model: {values['model']}", DATA_KEYS | FAMILY_KEYS[values["model"]]


def load_config(name: str, overrides: dict | None = None) -> HouseConfig:
    cfg = configs.load(NAME, HouseConfig, name, overrides, family_keys=family_keys)
    parse_interactions(cfg.interactions, cfg.features, f"config {cfg.name}: interactions")  # before a run exists
    if cfg.model == "tabm" and len(set(cfg.hidden)) != 1:
        raise UserError(f"config {cfg.name}: tabm's blocks share one width; hidden: {cfg.hidden} has several")
    if cfg.comps and (cfg.features != "full" or cfg.target != "log"):
        raise UserError(f"config {cfg.name}: comps: {cfg.comps} corrects log prices on the full recipe "
                        f"(features: full, target: log); set comps: 0")
    return cfg


def outlier_mask(frame: pd.DataFrame) -> np.ndarray:
    """The two huge, cheap partial sales that De Cock's documentation warns about."""
    return ((frame["GrLivArea"] > 4000) & (frame[TARGET] < 300_000)).to_numpy()


def _target(prices: np.ndarray, cfg: HouseConfig) -> np.ndarray:
    return np.log(prices) if cfg.target == "log" else prices


def _price(values: np.ndarray, cfg: HouseConfig) -> np.ndarray:
    return np.exp(values) if cfg.target == "log" else values


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
    def make(epoch: int):
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            yield x[index], y[index]
    return make


def _train_one(cfg: HouseConfig, x_train, y_train, x_valid, y_valid_price, seed: int, device, desc: str,
               state: Resume | None = None, n_numeric: int = 0):
    """Fit one network; returns (model, scale, fit result). y is standardised for training.
    With `state`, training resumes from (and keeps) its per-epoch state there. n_numeric: how many
    leading columns of x are the recipe's numeric ones (pwl embeddings bin those)."""
    seed_everything(seed)
    if cfg.target == "log":
        y_mean, y_std = float(y_train.mean()), float(y_train.std())
    else:
        y_mean, y_std = 0.0, 1.0  # d2l trains on raw prices
    model = models.build(cfg, x_train.shape[1], models.fit_bins(cfg, x_train, n_numeric))
    xt = torch.from_numpy(x_train)
    yt = torch.from_numpy(((y_train - y_mean) / y_std).astype(np.float32))
    xv = torch.from_numpy(x_valid).to(device)

    def evaluate(net):
        predicted = networks.point(net(xv)).double().cpu().numpy() * y_std + y_mean
        return {"rmse_log": rmse_log(y_valid_price, _price(predicted, cfg))}

    base_loss = torch.nn.MSELoss() if cfg.loss == "mse" else torch.nn.HuberLoss(delta=1.0)

    def loss_fn(out, target):  # TabM's (batch, k): the mean of the k members' losses
        return base_loss(out, target.unsqueeze(-1).expand_as(out) if out.ndim == 2 else target)
    settings = TrainSettings(epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                             optimizer=cfg.optimizer, schedule=cfg.schedule, warmup_epochs=cfg.warmup_epochs,
                             patience=cfg.patience, monitor="rmse_log", keep=cfg.keep)
    steps = (len(xt) + cfg.batch_size - 1) // cfg.batch_size
    with cpu_threads(NETWORK_THREADS):
        result = fit(model, _batches(xt, yt, cfg.batch_size, seed), steps, loss_fn, evaluate, settings,
                     device, desc=desc, resume=state)
    model.load_state_dict(result.best_state)
    return model, (y_mean, y_std), result


def _predict(model, scale, x: np.ndarray, device) -> np.ndarray:
    if not isinstance(model, torch.nn.Module):  # a classical estimator: predicts the log price
        return model.predict(x) * scale[1] + scale[0]
    model.eval()
    with torch.no_grad(), cpu_threads(NETWORK_THREADS):
        out = networks.point(model(torch.from_numpy(x).to(device))).double().cpu().numpy()
    return out * scale[1] + scale[0]


def train(cfg: HouseConfig, data_dir: Path, run_name: str | None, device_spec: str = "auto",
          only_folds: list[int] | None = None, quiet: bool = False,
          test_path: Path | None = None, restart: bool = False) -> dict:
    """k-fold training. Rerunning an interrupted run (same name, or no name: the newest unfinished
    run with this config and data) keeps its finished folds and members and resumes the others from
    their last epoch; restart starts over (resume.py)."""
    started = time.perf_counter()
    distributed.refuse_launched(f"{NAME} trains small models")
    if cfg.model in estimators.CLASSICAL and cfg.target != "log":
        raise UserError(f"config {cfg.name}: model {cfg.model} predicts the log price; set target: log")
    device = resolve(device_spec)
    train_path = Path(data_dir) / "train.csv"
    test_path = Path(test_path) if test_path else Path(data_dir) / "test.csv"
    train_frame = read_csv(train_path, with_target=True)
    test_frame = read_csv(test_path, with_target=False) if test_path.exists() else None
    data_sha = {"train_sha": fingerprint(train_path),
                "test_sha": fingerprint(test_path) if test_frame is not None else None}
    run = resume.open_run(NAME, run_name, cfg, data_sha, restart=restart)
    run_dir = run.path
    config_values = configs.as_dict(cfg)

    fold_of_row = folding.make_folds(np.log(train_frame[TARGET].to_numpy()), cfg.folds, cfg.seed, "bins")
    folding.save_folds(run_dir / "folds.csv", train_frame[ID], fold_of_row)
    prices = train_frame[TARGET].to_numpy()
    outliers = outlier_mask(train_frame) if cfg.drop_outliers else np.zeros(len(train_frame), bool)

    def fit_fold(fold: int, train_index: np.ndarray, valid_index: np.ndarray) -> kfold.FoldOutput:
        fit_index = train_index[~outliers[train_index]]  # outliers leave training, never scoring
        pre = Preprocessor(cfg.features, clip_quantile=cfg.clip_quantile, scaling=cfg.scaling,
                           interactions=cfg.interactions).fit(train_frame.iloc[fit_index])
        x_fit = pre.transform(train_frame.iloc[fit_index])
        x_valid = pre.transform(train_frame.iloc[valid_index])
        x_test = pre.transform(test_frame) if test_frame is not None else None
        if cfg.model in estimators.CLASSICAL:
            # seeds_per_fold members (bagged LightGBM models differ by seed; linear models do not),
            # averaged in log price as the MLP's members are
            valid_log, test_log = [], []
            for member in range(cfg.seeds_per_fold):
                seed = folding.fold_seed(cfg.seed, fold, member)
                estimator = estimators.fit(cfg, x_fit, np.log(prices[fit_index]), seed)
                folder = run_dir / f"fold{fold}" / f"member{member}"
                checkpoint.save(folder, estimators.save(folder, estimator),
                                {"competition": NAME, "config": config_values, "fold": fold, "member": member,
                                 "n_features": int(x_fit.shape[1]), "target_scale": [0.0, 1.0],
                                 "preprocessor": pre.state, "best_epoch": 0, "history": []})
                valid_log.append(estimator.predict(x_valid))
                if x_test is not None:
                    test_log.append(estimator.predict(x_test))
            adjust, info = _fold_comps(pre, fold, x_fit, prices[fit_index])
            test_prediction = None if x_test is None else np.exp(np.mean(test_log, axis=0) + adjust(x_test))
            return kfold.FoldOutput(np.exp(np.mean(valid_log, axis=0) + adjust(x_valid)), test_prediction,
                                    {"train_rows": int(len(fit_index)), **info})
        valid_sum, test_sum, best_epochs = 0.0, 0.0, []
        for member in range(cfg.seeds_per_fold):
            seed = folding.fold_seed(cfg.seed, fold, member)
            folder = run_dir / f"fold{fold}" / f"member{member}"
            if (folder / checkpoint.META).exists():  # finished by an earlier, interrupted attempt
                model, _, scale, _ = _model_from_checkpoint(folder, device)
                valid_sum = valid_sum + _predict(model, scale, x_valid, device)
                if x_test is not None:
                    test_sum = test_sum + _predict(model, scale, x_test, device)
                best_epochs.append(int(checkpoint.load_meta(folder)["best_epoch"]))
                continue
            state = Resume(run_dir / f"fold{fold}" / "last", f"fold {fold} member {member} seed {seed}",
                           {"fold": fold, "member": member})
            label = fold_label(fold, cfg.folds, member if cfg.seeds_per_fold > 1 else None)  # 'fold 4/5 seed 0'
            model, scale, result = _train_one(cfg, x_fit, _target(prices[fit_index], cfg), x_valid,
                                              prices[valid_index], seed, device, label, state,
                                              n_numeric=len(pre.state["numeric"]))
            valid_sum = valid_sum + _predict(model, scale, x_valid, device)
            if x_test is not None:
                test_sum = test_sum + _predict(model, scale, x_test, device)
            best_epochs.append(result.best_epoch)
            checkpoint.save(folder, model.state_dict(),
                            {"competition": NAME, "config": config_values, "fold": fold, "member": member,
                             "n_features": int(x_fit.shape[1]), "target_scale": list(scale),
                             "preprocessor": pre.state, "best_epoch": result.best_epoch,
                             "valid_rmse_log": result.best_score, "history": result.history})
        n = cfg.seeds_per_fold
        adjust, info = _fold_comps(pre, fold, x_fit, prices[fit_index])
        test_prediction = None if x_test is None else _price(test_sum / n + adjust(x_test), cfg)
        return kfold.FoldOutput(_price(valid_sum / n + adjust(x_valid), cfg), test_prediction,
                                {"best_epochs": best_epochs, "train_rows": int(len(fit_index)), **info})

    def _fold_comps(pre, fold, x_fit, fit_prices):
        """The fold's comparable-sales adjustment (a function of x, in log price; zero without
        `comps`), fitted and saved once, and its trust for the fold's scores."""
        if not cfg.comps:
            return (lambda x: 0.0), {}
        fold_dir = run_dir / f"fold{fold}"
        if comps.exists(fold_dir):  # computed by an earlier, interrupted attempt
            fitted = comps.load(fold_dir, cfg.comps, cfg.comps_hood_weight)
        else:
            seed = folding.fold_seed(cfg.seed, fold)

            def fit_predict(x_train, y_train, x_held, y_held, inner):
                # one model per inner fold, not seeds_per_fold: bagged residuals gave the same CV
                if cfg.model in estimators.CLASSICAL:
                    return estimators.fit(cfg, x_train, y_train, seed).predict(x_held)
                model, scale, _ = _train_one(cfg, x_train, y_train, x_held, np.exp(y_held), seed, device,
                                             f"{fold_label(fold, cfg.folds)} comps {inner}",
                                             n_numeric=len(pre.state["numeric"]))
                return _predict(model, scale, x_held, device)

            residuals = comps.inner_residuals(fit_predict, x_fit, np.log(fit_prices), seed)
            fitted = comps.Comps.fit(x_fit, residuals, _comps_columns(pre), cfg.comps, cfg.comps_hood_weight)
            fitted.save(fold_dir, {"competition": NAME, "fold": fold})
        return fitted.adjust, {"comps_trust": round(float(fitted.trust[0]), 4)}

    def score(index: np.ndarray, predicted_price: np.ndarray) -> dict:
        return {METRIC: rmse_log(prices[index], predicted_price),
                "rmse": rmse(prices[index], predicted_price)}

    result = kfold.run(fold_of_row, fit_fold, score, METRIC, only_folds, store=run_dir)
    if not result.assembled:  # other processes still train folds of this run: the last one assembles it
        print(kfold.pending_message(run_dir, result))
        resume.release(run_dir)
        return {"row": None, "result": result, "run_dir": run_dir}
    resume.refresh(run)
    oof = pd.DataFrame({ID: train_frame[ID], "fold": fold_of_row, TARGET: prices,
                        "oof_" + TARGET: result.oof_prediction})
    atomic.write_text(run_dir / "oof.csv", oof.to_csv(index=False))
    if test_frame is not None:
        write_submission(pd.DataFrame({ID: test_frame[ID], TARGET: result.test_prediction}),
                         run_dir / "test_predictions.csv", test_frame[ID])
    wall = time.perf_counter() - started + result.resumed_seconds  # a resumed run: its earlier folds too
    folds_done = [s["fold"] for s in result.fold_scores]
    row = runs.record(run_dir, competition=NAME, config=cfg, result=result, metric=METRIC,
                      greater_is_better=False, wall_s=wall, device=str(device),
                      extra={"dataset": train_path.parent.name, "resumed_folds": result.resumed_folds},
                      data={"train": str(train_path), **data_sha},
                      register=run.recorded_folds != folds_done)
    resume.mark_recorded(run, folds_done)
    resume.release(run_dir)
    return {"row": row, "result": result, "run_dir": run_dir}


def _comps_columns(pre: Preprocessor) -> tuple[list[int], list[int]]:
    return [pre.numeric_position(c) for c in comps.NUMERIC], pre.one_hot_positions(comps.CATEGORY)


def _model_from_checkpoint(folder: Path, device) -> tuple:
    state, meta = checkpoint.load(folder, device)
    if meta.get("competition") != NAME:
        raise UserError(f"{folder}: checkpoint is for {meta.get('competition')!r}, not {NAME}")
    cfg = configs.build(HouseConfig, meta["config"], str(folder / checkpoint.META))
    if cfg.model in estimators.CLASSICAL:
        return (estimators.load(cfg, folder, state), Preprocessor(state=meta["preprocessor"]),
                tuple(meta["target_scale"]), cfg)
    model = models.build(cfg, meta["n_features"], models.saved_bins(cfg, state, str(folder)))
    problem = checkpoint.mismatch(model, state)
    if problem is not None:
        raise UserError(f"{folder}: weights do not fit the {cfg.model} model in its config ({problem})")
    model.load_state_dict(state)
    model.to(device)
    return model, Preprocessor(state=meta["preprocessor"]), tuple(meta["target_scale"]), cfg


def predict(run_dir: Path, test_path: Path, device_spec: str = "auto") -> pd.DataFrame:
    """Fold-averaged predictions from the run's checkpoints only; no training data needed."""
    device = resolve(device_spec)
    test_frame = read_csv(test_path, with_target=False)
    members = sorted(m for fold in kfold.finished_fold_dirs(run_dir) for m in fold.glob("member*"))
    if not members:
        raise UserError(f"{run_dir}: no fold checkpoints found")
    per_fold: dict[str, list[np.ndarray]] = {}
    adjustments: dict[str, np.ndarray] = {}
    cfg = None
    for folder in members:
        first = cfg
        model, pre, scale, cfg = _model_from_checkpoint(folder, device)
        differs = first and configs.first_difference(configs.as_dict(first), configs.as_dict(cfg))
        if differs:
            raise UserError(f"{folder}: checkpoint from another config than {members[0]} ({differs}); "
                            f"a run's folds must share one config")
        x = pre.transform(test_frame)
        per_fold.setdefault(folder.parent.name, []).append(_predict(model, scale, x, device))
        if cfg.comps and len(per_fold[folder.parent.name]) == 1:
            adjustments[folder.parent.name] = comps.load(folder.parent, cfg.comps, cfg.comps_hood_weight).adjust(x)
    # As in training: members averaged in the model's target space (plus the fold's comparable-sales
    # adjustment), folds averaged as prices.
    prices = np.mean([_price(np.mean(v, axis=0) + adjustments.get(fold, 0.0), cfg) for fold, v in per_fold.items()],
                     axis=0)
    return pd.DataFrame({ID: test_frame[ID], TARGET: prices})


def submission_rules(expected_ids) -> dict:
    from .competition import SUBMISSION  # the rules live with the competition (competition.py)

    return SUBMISSION.rules(expected_ids)


def write_submission(frame: pd.DataFrame, path: Path, expected_ids) -> Path:
    return submission.write(frame, path, **submission_rules(expected_ids))
