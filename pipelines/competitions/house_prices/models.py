"""House Prices models: the d2l linear layer, an MLP with a linear skip (wide and deep), and TabM
(pipelines/tabular/networks.py) built from its config."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...errors import UserError
from ...tabular.networks import Bins, TabMNet, bins_from_state, compute_bins


# the config keys each network reads (task.py adds the data keys every model shares)
TRAINING_KEYS = {"epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "warmup_epochs",
                 "patience", "keep", "loss"}
MLP_KEYS = TRAINING_KEYS | {"hidden", "dropout", "skip_linear"}
KEYS = {
    "linear": TRAINING_KEYS,
    "mlp": MLP_KEYS,
    "tabm": MLP_KEYS | {"tabm_k", "num_embeddings", "n_bins", "d_embedding"},
}


class MLP(nn.Module):
    """Hidden layers with ReLU and dropout; with skip_linear, a linear term is added to the output,
    so the network learns a ridge-like model plus the non-linear corrections."""

    def __init__(self, n_features: int, hidden: list[int], dropout: float, skip_linear: bool):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.body = nn.Sequential(*layers)
        self.skip = nn.Linear(n_features, 1, bias=False) if skip_linear else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.skip is not None:
            out = out + self.skip(x)
        return out.squeeze(-1)


class Linear(nn.Module):
    """d2l's model: one linear layer."""

    def __init__(self, n_features: int):
        super().__init__()
        self.net = nn.Linear(n_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def build(config, n_features: int, bins: "Bins | None" = None) -> nn.Module:
    """The configured network; a pwl TabM needs its fold's bins (fit_bins, or saved_bins for predict)."""
    if config.model == "linear":
        return Linear(n_features)
    if config.model == "tabm":
        if config.num_embeddings == "pwl" and bins is None:
            raise UserError("tabm with num_embeddings: pwl needs the fold's bins")
        return TabMNet(n_features, config.tabm_k, len(config.hidden), config.hidden[0], config.dropout,
                       config.skip_linear, bins if config.num_embeddings == "pwl" else None, config.d_embedding)
    return MLP(n_features, config.hidden, config.dropout, config.skip_linear)


def fit_bins(config, x_train: np.ndarray, n_numeric: int) -> Bins | None:
    """The fold's bins for num_embeddings: pwl (None otherwise): quantile bins, on the training
    rows only, of the recipe's numeric columns (the first n_numeric of the matrix) that take more
    than two values there; the others stay plain inputs."""
    if getattr(config, "model", None) != "tabm" or config.num_embeddings != "pwl":
        return None
    return compute_bins(x_train, config.n_bins, n_numeric)


def saved_bins(config, state: dict, where: str) -> Bins | None:
    """The bins a fold checkpoint of a pwl TabM holds (None for every other model)."""
    if getattr(config, "model", None) != "tabm" or config.num_embeddings != "pwl":
        return None
    return bins_from_state(state, where)
