"""Heads on frozen features, and fitting them per fold: one implementation for every image
competition (the spec engine in task.py, Dogs vs. Cats), binary and multiclass alike.

A head maps what the feature stage cached for an image (features.stage: pooled features (D,), or
block activations for `tail`) to (num_classes,) logits; a binary competition has two outputs too
(class 1 is the positive class), so one code path, softmax, serves both:
  * ``logreg``: logistic regression (scikit-learn, on standardised features) as a linear layer on
    the raw features; for two classes its logits are (0, z), so softmax gives sigmoid(z);
  * ``mlp``: LayerNorm, dropout, a GELU layer, trained by training.fit, each epoch on a random view
    (the image or its mirror) of every training image;
  * ``mlp+logreg``: both, their logits averaged with equal weights (nothing fitted on the fold's
    validation rows);
  * ``tail``: the backbone's blocks after `block`, fine-tuned on the cached activations, and a new
    classifier; a checkpoint stores only that part (trainable_state).
With several backbones (`also`, join: logits) a JoinedHead holds a head per backbone, each on its
own slice of the concatenated features, and averages their logits.

KEYS declares the config keys each head reads, TRAINED the heads the training loop fits (they read
its keys too); recipes.py combines them into a config's allowed keys.

A config passed here needs the fields head, C, hidden, drop_rate, block, also, join, batch_size,
eval_batch_size and label_smoothing (DogsConfig and ImageConfig have them).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..training import Resume, TrainSettings, fit, seed_everything
from .backbones import BlockTail

# the config keys each head reads (beside the feature stage's, backbones.STAGE_KEYS)
KEYS: dict[str, set[str]] = {"logreg": {"C"}, "mlp": {"hidden"}, "mlp+logreg": {"hidden", "C"}, "tail": set()}
TRAINED = {"mlp", "mlp+logreg", "tail"}   # fitted by training.fit: the training loop's keys apply


class LinearHead(nn.Module):
    """Logistic regression (or any linear map) on pooled features: (B, D) -> (B, classes) logits."""

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
    """An MLP head and a logistic-regression head on the same features; the mean of their logits.

    With two classes and the logistic head's logits (0, z), softmax of the mean gives sigmoid of
    the mean of the two heads' positive-class logits: an equal-weight blend in logit space, with
    nothing fitted on the fold's validation rows."""

    def __init__(self, dim: int, hidden: int, drop: float, num_classes: int):
        super().__init__()
        self.mlp = MLPHead(dim, hidden, drop, num_classes)
        self.logreg = LinearHead(dim, num_classes)

    def forward(self, x):
        return (self.mlp(x) + self.logreg(x)) / 2


class TailHead(nn.Module):
    """The backbone's blocks after `block` + a new classifier, on cached activations."""

    def __init__(self, backbone: nn.Module, block: int, dim: int, num_classes: int):
        super().__init__()
        self.tail = BlockTail(backbone, block)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.fc(self.tail(x.float(), pre_logits=True))


class JoinedHead(nn.Module):
    """One head per backbone, each reading its own slice of the concatenated features; the mean of
    their logits (an equal-weight blend in logit space, nothing fitted on a fold's validation rows)."""

    def __init__(self, heads: list[nn.Module], dims: list[int]):
        super().__init__()
        self.heads = nn.ModuleList(heads)
        self.bounds = np.cumsum([0, *dims]).tolist()

    def forward(self, x):
        parts = [head(x[:, a:b]) for head, a, b in zip(self.heads, self.bounds[:-1], self.bounds[1:])]
        return torch.stack(parts).mean(0)


def joined(cfg) -> bool:
    """A head per backbone (`also` with join: logits), rather than one on the concatenated features."""
    return bool(cfg.also) and cfg.join == "logits"


def build_head(cfg, dim: int, num_classes: int, backbone: nn.Module | None = None,
               dims: list[int] | None = None) -> nn.Module:
    """The untrained head of cfg.head for features of width dim (dims: each backbone's part, with
    join: logits); `tail` copies the backbone's blocks after cfg.block."""
    if joined(cfg):
        one = dataclasses.replace(cfg, also=[])
        return JoinedHead([build_head(one, d, num_classes, backbone) for d in dims], dims)
    if cfg.head == "logreg":
        return LinearHead(dim, num_classes)
    if cfg.head == "mlp":
        return MLPHead(dim, cfg.hidden, cfg.drop_rate, num_classes)
    if cfg.head == "mlp+logreg":
        return PairHead(dim, cfg.hidden, cfg.drop_rate, num_classes)
    return TailHead(copy.deepcopy(backbone), cfg.block, backbone.num_features, num_classes)


def trainable_state(head: nn.Module, cfg) -> dict:
    """What a fold checkpoint stores for a head: for tail, only the blocks after `block`, the
    head convolution and the classifier (the frozen part is rebuilt from the pretrained weights)."""
    state = head.state_dict()
    if cfg.head != "tail":
        return state
    keep = [f"tail.backbone.blocks.{i}." for i in range(cfg.block + 1, 64)]
    keep += ["tail.backbone.conv_head.", "tail.backbone.bn2.", "fc."]
    return {k: v for k, v in state.items() if k.startswith(tuple(keep))}


def head_probabilities(head: nn.Module, feats: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities (N, classes), float64: the mean over the views of (N, views, ...) features
    of the head's softmax (computed in float32)."""
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


def fit_logreg(x: np.ndarray, y: np.ndarray, num_classes: int, C: float, seed: int, max_iter: int = 2000
               ) -> LinearHead:
    """Logistic regression (scikit-learn, on features standardised in their own precision, float32
    from the feature stage) as a LinearHead on the raw features. Two classes: scikit-learn's binary
    form, logits (0, z); more: multinomial. A class absent from these rows gets a very negative bias
    (probability ~0)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    mean, std = x.mean(0), x.std(0) + 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed).fit((x - mean) / std, y)
    weight = np.zeros((num_classes, x.shape[1]))
    bias = np.full(num_classes, -30.0)
    seen = np.asarray(model.classes_)
    rows = [(seen[1], model.coef_[0], model.intercept_[0])] if len(seen) == 2 else \
        list(zip(seen, model.coef_, model.intercept_))
    if len(seen) == 2:
        weight[seen[0]], bias[seen[0]] = 0.0, 0.0
    for label, coef, intercept in rows:
        weight[label] = coef / std
        bias[label] = intercept - float(np.sum(coef * mean / std))
    head = LinearHead(x.shape[1], num_classes)
    with torch.no_grad():
        head.fc.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
        head.fc.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    return head


def fit_head(cfg, feats: np.ndarray, labels: np.ndarray, num_classes: int, train_index: np.ndarray,
             valid_index: np.ndarray, seed: int, desc: str, settings: TrainSettings,
             figures: Callable[[np.ndarray, np.ndarray], dict], state: Resume | None = None,
             backbone: nn.Module | None = None, dims: list[int] | None = None):
    """One fold's head on (n, views, ...) features: (head with the kept weights, fit's result or None
    for a logistic head). settings: the training loop's (its monitor among figures' keys);
    figures(labels, probabilities (n, classes)): the validation figures of each epoch; state: where
    an interrupted fit resumes (not with a head per backbone); backbone: tail's blocks; dims: each
    backbone's part of the features (join: logits)."""
    seed_everything(seed)
    views = feats.shape[1]
    if joined(cfg) and dims is not None and len(dims) > 1:  # a head per backbone, as their own runs fit them
        one, parts, bounds = dataclasses.replace(cfg, also=[]), [], np.cumsum([0, *dims])
        result = None
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            part = np.ascontiguousarray(feats[..., a:b])
            head, result = fit_head(one, part, labels, num_classes, train_index, valid_index, seed,
                                    f"{desc} backbone {i + 1}/{len(dims)}", settings, figures, None, backbone)
            parts.append(head)
        return JoinedHead(parts, list(dims)), result
    if cfg.head == "logreg":
        x = np.asarray(feats[train_index], dtype=np.float32).reshape(len(train_index) * views, -1)
        return fit_logreg(x, np.repeat(labels[train_index], views), num_classes, cfg.C, seed), None
    if cfg.head == "mlp+logreg":
        mlp, result = fit_head(dataclasses.replace(cfg, head="mlp"), feats, labels, num_classes, train_index,
                               valid_index, seed, desc, settings, figures, state, backbone)
        linear, _ = fit_head(dataclasses.replace(cfg, head="logreg"), feats, labels, num_classes, train_index,
                             valid_index, seed, desc, settings, figures, None, backbone)
        pair = PairHead(feats.shape[-1], cfg.hidden, cfg.drop_rate, num_classes)
        pair.mlp.load_state_dict(mlp.state_dict())
        pair.logreg.load_state_dict(linear.state_dict())
        return pair, result
    head = build_head(cfg, feats.shape[-1], num_classes, backbone)
    if cfg.head == "tail":  # only the tail and classifier learn; BN statistics of the tail adapt
        for p in head.parameters():
            p.requires_grad_(False)
        for name, p in head.named_parameters():
            p.requires_grad_(name in trainable_state(head, cfg))
    train_feats = np.asarray(feats[train_index])
    train_labels = torch.from_numpy(labels[train_index].astype(np.int64))
    valid_feats, valid_labels = feats[valid_index], labels[valid_index]

    def train_batches(epoch: int):
        rng = np.random.default_rng(seed * 1000 + epoch)
        order = rng.permutation(len(train_index))
        view = rng.integers(0, views, len(train_index))  # a random view: flip as augmentation
        for start in range(0, len(order), cfg.batch_size):
            index = order[start:start + cfg.batch_size]
            yield torch.from_numpy(np.array(train_feats[index, view[index]], dtype=np.float32)), train_labels[index]

    def evaluate(net):
        return figures(valid_labels, head_probabilities(net, valid_feats, cfg.eval_batch_size))

    steps = (len(train_index) + cfg.batch_size - 1) // cfg.batch_size
    result = fit(head, train_batches, steps, nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), evaluate,
                 settings, torch.device("cpu"), desc=desc, resume=state)
    head.load_state_dict(result.best_state)
    return head, result
