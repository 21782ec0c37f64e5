"""Networks and heads with `num_classes` outputs.

Networks (recipe: train) are Dogs vs. Cats' registry (pipelines/images/networks.py:
lenet, lenet-modern, cnn-small, or any timm name) with the classifier sized for the competition:
its registry networks end in a 2-way nn.Linear, replaced here by a num_classes-way one; timm
networks are made with num_classes directly. Heads (recipe: features) map frozen pooled features
(B, D) to (B, num_classes) logits: logistic regression, an MLP, or both with their logits averaged.

A binary competition has two outputs too (class 1 is the positive class): one code path, softmax.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import networks as dogs_models
from . import pretrained as P
from ..errors import UserError

known = dogs_models.known
normalization = dogs_models.normalization
layer_summary = dogs_models.layer_summary
REGISTRY = dogs_models.REGISTRY


def build(arch: str, image_size: int, num_classes: int, pretrained: bool | str = False, drop_rate: float = 0.0,
          width: int = 32) -> nn.Module:
    """The network for `arch` with num_classes outputs, its lazy layers materialised for image_size."""
    if num_classes < 2:
        raise UserError(f"a classifier needs at least two classes, got {num_classes}")
    if arch in REGISTRY:
        model = dogs_models.build(arch, image_size, pretrained, drop_rate, width)
        last = model[-1]
        if not isinstance(last, nn.Linear):  # pragma: no cover - every registry network ends in one
            raise UserError(f"arch: {arch} does not end in a linear classifier")
        if last.out_features != num_classes:
            model[-1] = nn.Linear(last.in_features, num_classes)
        return model
    if not known(arch):
        dogs_models.build(arch, image_size)  # the UserError with a suggestion
    kw = {"drop_rate": drop_rate} if drop_rate else {}
    model = P.create_backbone(arch, pretrained=pretrained, num_classes=num_classes, **kw)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, 3, image_size, image_size))
    model.train(was_training)
    return model


def make_backbone(arch: str, pretrained: bool | str) -> nn.Module:
    """The frozen backbone without a classifier (num_classes=0), so its fingerprint depends only on
    the pretrained weights."""
    return P.create_backbone(arch, pretrained=pretrained, num_classes=0).eval()


# --------------------------------------------------------------------------- heads

class LinearHead(nn.Module):
    """Logistic regression on pooled features: (B, D) -> (B, classes) logits."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.fc(x)


class MLPHead(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float, num_classes: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Dropout(drop), nn.Linear(dim, hidden), nn.GELU(),
                                 nn.Dropout(drop), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.net(x)


class PairHead(nn.Module):
    """An MLP head and a logistic-regression head on the same features; the mean of their logits
    (an equal-weight blend in logit space, nothing fitted on the fold's validation rows)."""

    def __init__(self, dim: int, hidden: int, drop: float, num_classes: int):
        super().__init__()
        self.mlp = MLPHead(dim, hidden, drop, num_classes)
        self.logreg = LinearHead(dim, num_classes)

    def forward(self, x):
        return (self.mlp(x) + self.logreg(x)) / 2


HEADS = ("logreg", "mlp", "mlp+logreg")


def build_head(head: str, dim: int, num_classes: int, hidden: int = 512, drop: float = 0.0) -> nn.Module:
    if head == "logreg":
        return LinearHead(dim, num_classes)
    if head == "mlp":
        return MLPHead(dim, hidden, drop, num_classes)
    if head == "mlp+logreg":
        return PairHead(dim, hidden, drop, num_classes)
    raise UserError(f"head: {head!r} is not one of {', '.join(HEADS)}")


def fit_logreg(x: np.ndarray, y: np.ndarray, num_classes: int, C: float, seed: int, max_iter: int = 2000
               ) -> LinearHead:
    """Multinomial logistic regression (scikit-learn, on standardised features) as a LinearHead on the
    raw features. A class absent from these rows gets a very negative bias (probability ~0)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from ..tabular.models import Linear

    x = np.asarray(x, dtype=np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed).fit((x - mean) / std, y)
    coef, intercept = Linear._all_classes(model.classes_, model.coef_, model.intercept_, num_classes)
    weight = coef / std
    bias = intercept - (coef * (mean / std)).sum(axis=1)
    head = LinearHead(x.shape[1], num_classes)
    with torch.no_grad():
        head.fc.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
        head.fc.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    return head


def head_probabilities(head: nn.Module, feats: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities (N, classes), float64, the mean over the views of (N, views, D) features."""
    head.eval()
    n, views = feats.shape[:2]
    total = None
    with torch.no_grad():
        for v in range(views):
            parts = []
            for start in range(0, n, batch_size):
                x = torch.from_numpy(np.array(feats[start:start + batch_size, v], dtype=np.float32))
                parts.append(torch.softmax(head(x).float(), 1).double().numpy())
            prob = np.concatenate(parts)
            total = prob if total is None else total + prob
    return total / views
