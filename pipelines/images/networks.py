"""One registry for every Dogs vs. Cats network: LeNet (d2l), a modern LeNet, any timm
architecture from scratch, and pretrained timm backbones (via weights.create_backbone).

Every model maps (B, 3, S, S) float images to (B, 2) logits: class 1 is "dog".
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import UserError
from . import weights

NUM_CLASSES = 2


def lenet() -> nn.Sequential:
    """d2l's LeNet (chapter 7.6) for RGB input: sigmoid activations, average pooling."""
    return nn.Sequential(
        nn.Conv2d(3, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.LazyLinear(120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, NUM_CLASSES))


def lenet_modern() -> nn.Sequential:
    """LeNet's shape with batch norm, ReLU and max pooling (d2l 8.5's BN LeNet, RGB)."""
    return nn.Sequential(
        nn.Conv2d(3, 6, kernel_size=5, padding=2), nn.BatchNorm2d(6), nn.ReLU(),
        nn.MaxPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.LazyLinear(120), nn.BatchNorm1d(120), nn.ReLU(),
        nn.Linear(120, 84), nn.BatchNorm1d(84), nn.ReLU(),
        nn.Linear(84, NUM_CLASSES))


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, channels),
                                  nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x):
        return torch.relu(x + self.body(x))


def cnn_small(widths=(32, 64, 128, 256), drop: float = 0.2) -> nn.Sequential:
    """A compact ResNet for a CPU: every stage halves the side with a strided 3x3 conv and
    adds one residual block, so most work happens on small feature maps (~50 MMAC at 64 px)."""
    layers: list[nn.Module] = [_conv_bn(3, widths[0], 2)]
    for c_in, c_out in zip(widths[:-1], widths[1:]):
        layers += [_conv_bn(c_in, c_out, 2), Residual(c_out)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(drop), nn.Linear(widths[-1], NUM_CLASSES)]
    return nn.Sequential(*layers)


REGISTRY: dict[str, Callable[[], nn.Module]] = {"lenet": lenet, "lenet-modern": lenet_modern,
                                                 "cnn-small": cnn_small}


def known(arch: str) -> bool:
    import timm

    return arch in REGISTRY or timm.is_model(arch)


def build(arch: str, image_size: int, pretrained: bool | str = False, drop_rate: float = 0.0,
          width: int = 32) -> nn.Module:
    """The network for `arch` with its lazy layers materialised for image_size inputs.
    width: cnn-small's first stage channels (then x2, x4, x8)."""
    if arch in REGISTRY:
        if pretrained:
            raise UserError(f"pretrained: {arch} has no pretrained weights; use pretrained: false")
        model = cnn_small((width, 2 * width, 4 * width, 8 * width)) if arch == "cnn-small" else REGISTRY[arch]()
    else:
        import timm

        if not timm.is_model(arch):
            import difflib

            names = list(REGISTRY) + timm.list_models()
            close = difflib.get_close_matches(arch, names, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"arch: unknown model {arch!r}{hint}; use lenet, lenet-modern or a timm name")
        kw = {"drop_rate": drop_rate} if drop_rate else {}
        model = weights.create_backbone(arch, pretrained=pretrained, num_classes=NUM_CLASSES, **kw)
    was_training = model.training
    model.eval()
    with torch.no_grad():  # materialises LazyLinear for this input size
        model(torch.zeros(2, 3, image_size, image_size))
    model.train(was_training)
    return model


def normalization(model: nn.Module, arch: str) -> dict:
    """What inputs the model expects; from-scratch models use [0, 1] -> mean/std 0.5."""
    norm = getattr(model, "normalization", None)
    if norm is not None and arch not in REGISTRY:
        return {"mean": list(norm.mean), "std": list(norm.std)}
    return {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def layer_summary(model: nn.Module, image_size: int) -> tuple[list[tuple[str, tuple, int]], int, int]:
    """(name, output shape, parameters) of each leaf layer for one input, as d2l walks LeNet;
    plus total and trainable parameter counts."""
    rows: list[tuple[str, tuple, int]] = []
    hooks = []
    for name, module in model.named_modules():
        if len(list(module.children())) == 0:
            def hook(mod, args, output, name=name):
                shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()
                params = sum(p.numel() for p in mod.parameters(recurse=False))
                rows.append((f"{name} {type(mod).__name__}", shape, params))
            hooks.append(module.register_forward_hook(hook))
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in hooks:
            h.remove()
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return rows, total, trainable
