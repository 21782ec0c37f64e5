"""Model families for spec competitions: a registry from a config's `model` to an entry that fits,
predicts, saves and loads, each with its own config keys (plus the common ones).

- `linear`: ridge regression (regression), logistic regression (binary, multiclass); saved as its
  coefficients in safetensors, predicted with numpy (no scikit-learn object is kept).
- `lightgbm`: gradient-boosted trees, a fixed number of rounds; saved in LightGBM's text format.
- `mlp`: a torch MLP trained by pipelines.training.fit on a standardised target (regression), with
  BCE (binary) or cross entropy (multiclass); saved as safetensors. It keeps the last epoch and
  never stops early by default (`keep: last`, `patience: 0`): the fold's validation rows are the
  rows its CV scores, and picking an epoch on them would flatter the CV.

Every entry predicts in the competition's model space: the (transformed) regression target,
P(positive) for binary, an (n, classes) probability matrix for multiclass. A new family is one
class registered here plus a config in configs/tabular/; nothing else changes.

Configs are YAML files in configs/tabular/, validated against the family's schema on load: an
unknown key is an error naming the closest valid key, or the family the key belongs to.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml
from torch import nn

from .. import atomic, checkpoint, config as configs
from ..device import cpu_threads
from ..errors import UserError
from ..training import Resume, TrainSettings, fit as fit_network, seed_everything

CONFIG_FOLDER = "tabular"  # configs/tabular/<name>.yaml


@dataclass(frozen=True)
class Problem:
    """What a fold model needs to know about the target."""
    task: str              # regression | binary | multiclass
    n_classes: int = 0     # multiclass: how many classes (the width of the prediction matrix)

    @property
    def outputs(self) -> int:
        return self.n_classes if self.task == "multiclass" else 1


# --------------------------------------------------------------------------- configs

@dataclass
class TabularConfig:
    """The keys every family has: the run's folds and seed, and the fold preprocessing
    (preprocess.py)."""
    name: str = configs.option("custom")
    model: str = configs.option("mlp")
    folds: int = configs.option(5, min=2, max=20)
    seed: int = configs.option(42)
    missing_indicator: bool = configs.option(True)
    scaling: str = configs.option("standard", choices=["standard", "none"])
    clip_quantile: float = configs.option(0.0, min=0.0, max=0.2)
    max_levels: int = configs.option(30, min=1, max=1000)
    min_level_count: int = configs.option(3, min=1)


@dataclass
class LinearConfig(TabularConfig):
    model: str = configs.option("linear", choices=["linear"])
    l2: float = configs.option(1.0, min=0.0)  # ridge's alpha; logistic regression's 1 / C
    max_iter: int = configs.option(2000, min=1)


@dataclass
class LightGBMConfig(TabularConfig):
    model: str = configs.option("lightgbm", choices=["lightgbm"])
    scaling: str = configs.option("none", choices=["standard", "none"])  # trees do not care
    n_estimators: int = configs.option(400, min=1)   # rounds, fixed: never chosen on the scored rows
    lr: float = configs.option(0.03, min=0.0)
    num_leaves: int = configs.option(15, min=2)
    min_child_samples: int = configs.option(20, min=1)
    subsample: float = configs.option(0.8, min=0.1, max=1.0)
    colsample: float = configs.option(0.8, min=0.01, max=1.0)
    l2: float = configs.option(1.0, min=0.0)         # lambda_l2 on leaf values
    # one thread by default: on small tables it is as fast, and on a machine whose cores are busy two
    # threads were 10x slower (OpenMP threads waiting on each other: penguins 1.5 s vs 16.8 s)
    threads: int = configs.option(1, min=1)


@dataclass
class MLPConfig(TabularConfig):
    model: str = configs.option("mlp", choices=["mlp"])
    clip_quantile: float = configs.option(0.01, min=0.0, max=0.2)
    hidden: list[int] = configs.option([256, 256], min=1)
    dropout: float = configs.option(0.1, min=0.0, max=0.95)
    skip_linear: bool = configs.option(True)         # a linear map from inputs to outputs beside the MLP
    epochs: int = configs.option(30, min=1)
    batch_size: int = configs.option(128, min=1)
    optimizer: str = configs.option("adamw", choices=["adam", "adamw", "sgd"])
    lr: float = configs.option(1e-3, min=0.0)
    weight_decay: float = configs.option(1e-4, min=0.0)
    schedule: str = configs.option("cosine", choices=["cosine", "constant"])
    warmup_epochs: float = configs.option(0.0, min=0.0)
    # keep: last and patience: 0 train a fixed number of epochs; best or patience choose the epoch on
    # the fold's validation rows, the rows its CV scores (an optimistic CV)
    patience: int = configs.option(0, min=0)
    keep: str = configs.option("last", choices=["best", "last"])


# --------------------------------------------------------------------------- families

class Family:
    """One registry entry. fit returns (fitted, info); info's best_epoch and history go into the
    fold's meta.json. valid_figures(prediction) scores model-space predictions of the validation
    rows (for a network's learning curves)."""
    name: str
    config: type
    description: str

    def fit(self, cfg, problem: Problem, x: np.ndarray, y: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
            seed: int, device: torch.device, resume: Resume | None, desc: str,
            valid_figures: Callable[[np.ndarray], dict]) -> tuple[object, dict]:
        raise NotImplementedError

    def predict(self, fitted, x: np.ndarray, device: torch.device) -> np.ndarray:
        raise NotImplementedError

    def save(self, fitted, folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors for the fold's model.safetensors, meta for its meta.json); may write its own file."""
        raise NotImplementedError

    def load(self, cfg, problem: Problem, folder: Path, tensors: dict[str, torch.Tensor], meta: dict,
             device: torch.device):
        raise NotImplementedError


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # exact-enough and overflow-free


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class LinearModel:
    coef: np.ndarray       # (outputs, features)
    intercept: np.ndarray  # (outputs,)
    task: str

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, dtype=np.float64) @ self.coef.T + self.intercept
        if self.task == "regression":
            return z[:, 0]
        return _sigmoid(z[:, 0]) if self.task == "binary" else _softmax(z)


class Linear(Family):
    name, config = "linear", LinearConfig
    description = "ridge (regression) or logistic regression (binary, multiclass)"

    def fit(self, cfg, problem, x, y, x_valid, y_valid, seed, device, resume, desc, valid_figures):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression, Ridge

        x = np.asarray(x, dtype=np.float64)
        if problem.task == "regression":
            model = Ridge(alpha=cfg.l2).fit(x, y)
            return LinearModel(model.coef_.reshape(1, -1), np.atleast_1d(model.intercept_), problem.task), {}
        c = 1.0 / cfg.l2 if cfg.l2 > 0 else 1e12
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(C=c, max_iter=cfg.max_iter, random_state=seed).fit(x, y)
        coef, intercept = model.coef_, model.intercept_
        if problem.task == "multiclass":
            coef, intercept = self._all_classes(model.classes_, coef, intercept, problem.n_classes)
        return LinearModel(coef, intercept, problem.task), {}

    @staticmethod
    def _all_classes(seen, coef, intercept, n_classes):
        """One row per class of the competition, also for classes missing from the fold's training
        rows (a tiny class): those get a very negative intercept, so probability ~0."""
        if len(seen) == 2:  # scikit-learn's binary form: P(seen[1]) = sigmoid(w x + b) = softmax([0, w x + b])
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([[0.0], intercept])
        full_coef = np.zeros((n_classes, coef.shape[1]))
        full_intercept = np.full(n_classes, -30.0)
        full_coef[np.asarray(seen)] = coef
        full_intercept[np.asarray(seen)] = intercept
        return full_coef, full_intercept

    def predict(self, fitted, x, device):
        return fitted.predict(x)

    def save(self, fitted, folder):
        return {"coef": torch.from_numpy(np.ascontiguousarray(fitted.coef, dtype=np.float64)),
                "intercept": torch.from_numpy(np.ascontiguousarray(fitted.intercept, dtype=np.float64))}, {}

    def load(self, cfg, problem, folder, tensors, meta, device):
        try:
            coef, intercept = tensors["coef"].cpu().numpy(), tensors["intercept"].cpu().numpy()
        except KeyError as exc:
            raise UserError(f"{folder}: checkpoint has no {exc.args[0]!r} tensor for a linear model") from None
        if coef.ndim != 2 or coef.shape[0] != problem.outputs or intercept.shape != (problem.outputs,):
            raise UserError(f"{folder}: linear weights of shape {tuple(coef.shape)} do not fit a {problem.task} "
                            f"model with {problem.outputs} output(s)")
        return LinearModel(coef, intercept, problem.task)


class LightGBM(Family):
    name, config = "lightgbm", LightGBMConfig
    description = "LightGBM gradient-boosted trees"
    FILE = "model.lgb.txt"

    def fit(self, cfg, problem, x, y, x_valid, y_valid, seed, device, resume, desc, valid_figures):
        import lightgbm as lgb

        objective = {"regression": {"objective": "regression"}, "binary": {"objective": "binary"},
                     "multiclass": {"objective": "multiclass", "num_class": problem.n_classes}}[problem.task]
        params = {**objective, "learning_rate": cfg.lr, "num_leaves": cfg.num_leaves, "max_depth": -1,
                  "min_data_in_leaf": cfg.min_child_samples, "feature_fraction": cfg.colsample,
                  "bagging_fraction": cfg.subsample, "bagging_freq": 1 if cfg.subsample < 1 else 0,
                  "lambda_l2": cfg.l2, "max_bin": 255, "seed": seed, "deterministic": True,
                  "force_row_wise": True, "num_threads": cfg.threads, "verbose": -1}
        data = lgb.Dataset(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        return lgb.train(params, data, num_boost_round=cfg.n_estimators), {}

    def predict(self, fitted, x, device):
        return np.asarray(fitted.predict(np.asarray(x, dtype=np.float64)), dtype=np.float64)

    def save(self, fitted, folder):
        atomic.write_text(Path(folder) / self.FILE, fitted.model_to_string())
        return {}, {"model_file": self.FILE}

    def load(self, cfg, problem, folder, tensors, meta, device):
        import lightgbm as lgb

        path = Path(folder) / self.FILE
        if not path.exists():
            raise UserError(f"{path}: LightGBM model file missing")
        try:
            return lgb.Booster(model_str=path.read_text())
        except lgb.basic.LightGBMError as exc:
            raise UserError(f"{path}: not a LightGBM model ({str(exc).splitlines()[0]})") from None


class MLPNet(nn.Module):
    def __init__(self, n_in: int, hidden: list[int], n_out: int, dropout: float, skip_linear: bool):
        super().__init__()
        layers, width = [], n_in
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_out)
        self.skip = nn.Linear(n_in, n_out) if skip_linear else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.body(x))
        return out + self.skip(x) if self.skip is not None else out


@dataclass
class MLPModel:
    net: MLPNet
    scale: tuple[float, float]  # regression: the target's mean and standard deviation in training
    task: str


class MLP(Family):
    name, config = "mlp", MLPConfig
    description = "a torch MLP (with a linear skip) trained by pipelines.training.fit"
    THREADS = 1         # small networks: one CPU thread is as fast, and makes every fold's numbers
                        # independent of the machine's core count (as House Prices does)
    PREDICT_ROWS = 65536

    @staticmethod
    def _loss(task: str) -> Callable:
        if task == "regression":
            return lambda out, y: nn.functional.mse_loss(out[:, 0], y)
        if task == "binary":
            return lambda out, y: nn.functional.binary_cross_entropy_with_logits(out[:, 0], y)
        return nn.functional.cross_entropy

    @staticmethod
    def _targets(task: str, y: np.ndarray, scale: tuple[float, float]) -> torch.Tensor:
        if task == "multiclass":
            return torch.from_numpy(np.asarray(y, dtype=np.int64))
        return torch.from_numpy(((np.asarray(y, dtype=np.float64) - scale[0]) / scale[1]).astype(np.float32))

    @staticmethod
    def _output(task: str, out: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
        out = np.asarray(out, dtype=np.float64)
        if task == "regression":
            return out[:, 0] * scale[1] + scale[0]
        return _sigmoid(out[:, 0]) if task == "binary" else _softmax(out)

    def fit(self, cfg, problem, x, y, x_valid, y_valid, seed, device, resume, desc, valid_figures):
        seed_everything(seed)
        if problem.task == "regression":
            scale = (float(np.mean(y)), float(np.std(y)) or 1.0)
        else:
            scale = (0.0, 1.0)
        net = MLPNet(x.shape[1], cfg.hidden, problem.outputs, cfg.dropout, cfg.skip_linear)
        xt, yt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), self._targets(problem.task, y, scale)
        xv = torch.from_numpy(np.ascontiguousarray(x_valid, dtype=np.float32)).to(device)
        yv = self._targets(problem.task, y_valid, scale).to(device)
        loss_fn = self._loss(problem.task)

        def evaluate(model):
            out = model(xv).float()
            return {"loss": float(loss_fn(out, yv)),
                    **valid_figures(self._output(problem.task, out.cpu().numpy(), scale))}

        def batches(epoch: int):  # a function of (seed, epoch) only: a resumed fold sees the same data
            generator = torch.Generator().manual_seed(seed * 1000 + epoch)
            order = torch.randperm(len(xt), generator=generator)
            for start in range(0, len(xt), cfg.batch_size):
                index = order[start:start + cfg.batch_size]
                yield xt[index], yt[index]

        settings = TrainSettings(epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                 optimizer=cfg.optimizer, schedule=cfg.schedule, warmup_epochs=cfg.warmup_epochs,
                                 patience=cfg.patience, monitor="loss", keep=cfg.keep)
        steps = (len(xt) + cfg.batch_size - 1) // cfg.batch_size
        with cpu_threads(self.THREADS):
            result = fit_network(net, batches, steps, loss_fn, evaluate, settings, device, desc=desc, resume=resume)
        net.load_state_dict(result.best_state)
        return MLPModel(net, scale, problem.task), {"best_epoch": result.best_epoch, "history": result.history}

    def predict(self, fitted, x, device):
        fitted.net.eval()
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        outs = []
        with torch.no_grad(), cpu_threads(self.THREADS):
            for start in range(0, len(x), self.PREDICT_ROWS):
                outs.append(fitted.net(x[start:start + self.PREDICT_ROWS].to(device)).float().cpu().numpy())
        out = np.concatenate(outs) if outs else np.zeros((0, fitted.net.head.out_features), np.float32)
        return self._output(fitted.task, out, fitted.scale)

    def save(self, fitted, folder):
        return fitted.net.state_dict(), {"target_scale": list(fitted.scale)}

    def load(self, cfg, problem, folder, tensors, meta, device):
        net = MLPNet(int(meta["n_features"]), cfg.hidden, problem.outputs, cfg.dropout, cfg.skip_linear)
        problem_text = checkpoint.mismatch(net, tensors)
        if problem_text is not None:
            raise UserError(f"{folder}: weights do not fit the mlp in its config ({problem_text})")
        net.load_state_dict(tensors)
        net.to(device)
        return MLPModel(net, tuple(meta["target_scale"]), problem.task)


REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
    REGISTRY[family.name] = family
    return family


for _family in (Linear(), LightGBM(), MLP()):
    register(_family)


def get(name: str, where: str = "config") -> Family:
    if name not in REGISTRY:
        close = difflib.get_close_matches(str(name), list(REGISTRY), n=1, cutoff=0.4)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"{where}: model: {name!r} is not one of {', '.join(REGISTRY)}{hint}")
    return REGISTRY[name]


# --------------------------------------------------------------------------- loading configs

def build_config(values: dict, where: str):
    """A config from its mapping: the schema of its `model`'s family, validated."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping of keys to values")
    if values.get("model") is None:
        raise UserError(f"{where}: model: missing (one of {', '.join(REGISTRY)})")
    family = get(values["model"], where)
    own = {f.name for f in fields(family.config)}
    for key in values:
        if key in own:
            continue
        owners = [name for name, other in REGISTRY.items() if key in {f.name for f in fields(other.config)}]
        if owners:
            raise UserError(f"{where}: unknown key {key!r}: it is a key of model {' and '.join(owners)}, and this "
                            f"config's model is {family.name}")
        break  # configs.build names the closest valid key
    return configs.build(family.config, values, where)


def load_config(name_or_path: str, overrides: dict | None = None):
    """configs/tabular/<name>.yaml (or a YAML path), with --set overrides, validated."""
    path = configs.config_path(CONFIG_FOLDER, name_or_path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{line} is not valid YAML") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a mapping of keys to values")
    values = {**values, **(overrides or {})}
    values.setdefault("name", path.stem)
    return build_config(values, str(path))
