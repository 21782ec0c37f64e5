"""House Prices models: the d2l linear layer and an MLP with a linear skip (wide and deep)."""

from __future__ import annotations

import torch
from torch import nn


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


def build(config, n_features: int) -> nn.Module:
    if config.model == "linear":
        return Linear(n_features)
    return MLP(n_features, config.hidden, config.dropout, config.skip_linear)
