"""Networks with `num_classes` outputs (recipe: train).

The registry's networks (pipelines/images/networks.py: lenet, lenet-modern, cnn-small, or any timm
name) with the classifier sized for the competition: its registry networks end in a 2-way
nn.Linear, replaced here by a num_classes-way one; timm networks are made with num_classes directly.
The heads of recipe features are heads.py's.

A binary competition has two outputs too (class 1 is the positive class): one code path, softmax.
"""

from __future__ import annotations

import torch
from torch import nn

from . import networks as dogs_models
from . import weights
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
    model = weights.create_backbone(arch, pretrained=pretrained, num_classes=num_classes, **kw)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, 3, image_size, image_size))
    model.train(was_training)
    return model
