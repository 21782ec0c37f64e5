"""The tabular families that are networks (`mlp`, `tabm`): torch models trained by
pipelines.training.fit. Imported when one of them is used (models.py registers them by name), so the
other families run where torch is not installed (docs/kaggle.md, the smallest install)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from .. import checkpoint
from ..device import cpu_threads
from ..errors import UserError
from ..training import TrainSettings, fit as fit_network, seed_everything
from . import networks
from .models import Family, MLPConfig, Problem, TabMConfig, _sigmoid, _softmax


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
class NetworkModel:
    net: nn.Module
    scale: tuple[float, float]  # regression: the target's mean and standard deviation in training
    task: str


class Network(Family):
    """A torch network trained by pipelines.training.fit (the MLP's and TabM's shared loop). A
    subclass builds the network and says whether its output has an ensemble axis (TabM's k members:
    (batch, k, outputs)); the loss is the mean of the members' losses, the prediction the mean of
    their predictions (of their probabilities, for classification)."""
    THREADS = 1         # small networks: one CPU thread is as fast, and makes every fold's numbers
                        # independent of the machine's core count (as House Prices does)
    PREDICT_ROWS = 65536
    members_axis = False

    def build(self, cfg, problem: Problem, n_features: int, bins=None) -> nn.Module:
        raise NotImplementedError

    def bins(self, cfg, x: np.ndarray):
        return None

    def _outputs(self, out: torch.Tensor) -> torch.Tensor:
        """(batch, [members,] outputs) whatever the network returns."""
        if self.members_axis and out.ndim == 2:  # TabM with one output: (batch, k)
            return out.unsqueeze(-1)
        return out if self.members_axis else out.unsqueeze(1)

    def _loss(self, cfg, task: str) -> Callable:
        if task == "multiclass":
            def loss(out, y):
                out = self._outputs(out)
                return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.repeat_interleave(out.shape[1]))
            return loss
        if task == "binary":
            base = nn.functional.binary_cross_entropy_with_logits
        else:
            base = {"mse": nn.functional.mse_loss, "huber": nn.functional.huber_loss,
                    "l1": nn.functional.l1_loss}[cfg.loss]

        def loss(out, y):
            out = self._outputs(out)[:, :, 0]
            return base(out, y.unsqueeze(1).expand_as(out)) if out.shape[1] > 1 else base(out[:, 0], y)
        return loss

    @staticmethod
    def _targets(task: str, y: np.ndarray, scale: tuple[float, float]) -> torch.Tensor:
        if task == "multiclass":
            return torch.from_numpy(np.asarray(y, dtype=np.int64))
        return torch.from_numpy(((np.asarray(y, dtype=np.float64) - scale[0]) / scale[1]).astype(np.float32))

    def _output(self, task: str, out: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
        """(batch, members, outputs) raw outputs -> the model space, averaged over members."""
        out = np.asarray(out, dtype=np.float64)
        if task == "regression":
            return out[:, :, 0].mean(axis=1) * scale[1] + scale[0]
        if task == "binary":
            return _sigmoid(out[:, :, 0]).mean(axis=1)
        return np.mean([_softmax(out[:, m]) for m in range(out.shape[1])], axis=0)

    def _raw(self, net: nn.Module, x: torch.Tensor) -> np.ndarray:
        return self._outputs(net(x)).float().cpu().numpy()

    def fit(self, cfg, problem, x, y, x_valid, y_valid, seed, device, resume, desc, valid_figures):
        seed_everything(seed)
        if problem.task == "regression":
            scale = (float(np.mean(y)), float(np.std(y)) or 1.0)
        else:
            scale = (0.0, 1.0)
        net = self.build(cfg, problem, x.shape[1], self.bins(cfg, x))
        xt, yt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), self._targets(problem.task, y, scale)
        xv = torch.from_numpy(np.ascontiguousarray(x_valid, dtype=np.float32)).to(device)
        yv = self._targets(problem.task, y_valid, scale).to(device)
        loss_fn = self._loss(cfg, problem.task)

        def evaluate(model):
            out = model(xv).float()
            return {"loss": float(loss_fn(out, yv)),
                    **valid_figures(self._output(problem.task, self._outputs(out).cpu().numpy(), scale))}

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
        return NetworkModel(net, scale, problem.task), {"best_epoch": result.best_epoch, "history": result.history}

    def predict(self, fitted, x, device):
        fitted.net.eval()
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        outs = []
        with torch.no_grad(), cpu_threads(self.THREADS):
            for start in range(0, len(x), self.PREDICT_ROWS):
                outs.append(self._raw(fitted.net, x[start:start + self.PREDICT_ROWS].to(device)))
        if not outs:
            return self._output(fitted.task, np.zeros((0, 1, 1)), fitted.scale)[:0]
        return self._output(fitted.task, np.concatenate(outs), fitted.scale)

    def save(self, fitted, folder):
        return fitted.net.state_dict(), {"target_scale": list(fitted.scale)}

    def load(self, cfg, problem, folder, tensors, meta, device):
        net = self.build(cfg, problem, int(meta["n_features"]), self.saved_bins(cfg, tensors, str(folder)))
        problem_text = checkpoint.mismatch(net, tensors)
        if problem_text is not None:
            raise UserError(f"{folder}: weights do not fit the {self.name} in its config ({problem_text})")
        net.load_state_dict(tensors)
        net.to(device)
        return NetworkModel(net, tuple(meta["target_scale"]), problem.task)

    def saved_bins(self, cfg, tensors, where: str):
        return None


class MLP(Network):
    name, config = "mlp", MLPConfig
    description = "a torch MLP (with a linear skip) trained by pipelines.training.fit"

    def build(self, cfg, problem, n_features, bins=None):
        return MLPNet(n_features, cfg.hidden, problem.outputs, cfg.dropout, cfg.skip_linear)


class TabM(Network):
    name, config = "tabm", TabMConfig
    description = "TabM: k MLPs sharing their weights (BatchEnsemble), plain or with piecewise-linear embeddings"
    members_axis = True

    def bins(self, cfg, x):
        # every column taking more than two values (numeric ones; one-hot and indicator columns take two)
        return networks.compute_bins(x, cfg.n_bins) if cfg.num_embeddings == "pwl" else None

    def saved_bins(self, cfg, tensors, where):
        return networks.bins_from_state(tensors, where) if cfg.num_embeddings == "pwl" else None

    def build(self, cfg, problem, n_features, bins=None):
        if cfg.num_embeddings == "pwl" and bins is None:
            raise UserError("tabm with num_embeddings: pwl needs the fold's bins")
        return networks.TabMNet(n_features, cfg.tabm_k, len(cfg.hidden), cfg.hidden[0], cfg.dropout, cfg.skip_linear,
                                bins, cfg.d_embedding, n_out=problem.outputs)


FAMILIES = {family.name: family for family in (MLP(), TabM())}
