"""The frozen backbones of a frozen-feature recipe: the config's `arch` with its `pretrained`
weights (weights.create_backbone), more backbones whose pooled features are concatenated after it
(`also`), and where a backbone is cut for its features (FeatureHead, BlockTail).

  * ``also``: a list of weights packages (efficientnet-lite1-package) or ARCH=WEIGHTS entries;
    with ``join: logits`` a head per backbone on its own features (heads.JoinedHead), with
    ``join: concat`` one head on the concatenation. Each backbone's features are their own cached
    stage.
  * ``quantize: int8``: the pooled-feature network exported to ONNX and statically quantised
    (onnx_export.int8_network), calibrated on evenly spaced training images and cached with the
    features; a run carries its copy (onnx_export.QUANTIZED, beside its folds) and predicts with
    that very file.
  * FeatureHead(backbone) gives the pooled pre-classifier features, FeatureHead(backbone, block)
    the activations after blocks[block], and BlockTail(backbone, block) finishes those (the `tail`
    head fine-tunes it).

A run records the fingerprints of its backbones' weights (and of its INT8 file), and prediction
refuses weights or a file that differ (check_weights, onnx_export.carried_int8).

STAGE_KEYS: the config keys of the feature stage (block and train_flip: features.stage);
check_stage refuses combinations that cannot work, in one line each.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from . import weights as W

STAGE_KEYS = {"head", "block", "train_flip", "quantize", "also", "join"}


def make_backbone(arch: str, pretrained: bool | str) -> nn.Module:
    """The frozen backbone without a classifier (num_classes=0), so its fingerprint depends only on
    the pretrained weights."""
    return W.create_backbone(arch, pretrained=pretrained, num_classes=0).eval()


def also_backbone(item: str, where: str) -> tuple[str, str]:
    """(architecture, weights) of one `also` entry: a weights package's name, or ARCH=WEIGHTS."""
    if "=" in item:
        arch, weights = (part.strip() for part in item.split("=", 1))
        if arch and weights:
            return arch, weights
    elif item in W.PACKAGES:
        return W.PACKAGES[item][0], item
    raise UserError(f"{where}: also entry {item!r} is neither a weights package ({', '.join(W.PACKAGES)}) "
                    f"nor ARCH=WEIGHTS")


def make_backbones(cfg) -> list[tuple[str, nn.Module]]:
    """(architecture, frozen backbone) of cfg.arch and of each `also` entry, in the order their
    features are concatenated."""
    extra = [also_backbone(item, "also") for item in cfg.also]
    return [(cfg.arch, make_backbone(cfg.arch, cfg.pretrained))] + [(arch, make_backbone(arch, weights))
                                                                   for arch, weights in extra]


def feature_dims(backbones: list[tuple[str, nn.Module]]) -> list[int]:
    """Each backbone's width in the concatenated features."""
    return [int(backbone.num_features) for _, backbone in backbones]


def fingerprints(backbones: list[tuple[str, nn.Module]]) -> dict:
    """What a fold checkpoint records of its backbones (check_weights reads it back)."""
    shas = [W.state_fingerprint(b) for _, b in backbones]
    extra = {"also_sha": shas[1:], "feature_dims": feature_dims(backbones)} if len(backbones) > 1 else {}
    return {"backbone_sha": shas[0], **extra}


def check_weights(cfg, backbones: list[tuple[str, nn.Module]], meta: dict, where) -> None:
    """Refuse backbones whose weights differ from those a run was trained with (meta: a fold's)."""
    trained = [meta["backbone_sha"], *meta.get("also_sha", [])]
    for (_, net), sha, weights in zip(backbones, trained, [cfg.pretrained, *cfg.also]):
        if W.state_fingerprint(net) != sha:
            raise UserError(f"{where}: the pretrained weights {weights!r} here differ from the ones "
                            f"the run was trained with (fingerprint {sha})")


def check_stage(cfg, where: str, known, build) -> None:
    """One line for a stage that cannot work: tail without a block, INT8 or `also` with block
    activations, `also` with INT8, an `also` entry that names no known architecture.
    known(arch) -> bool and build(arch) (raises the UserError with a suggestion): the engine's."""
    if cfg.head == "tail" and cfg.block < 0:
        raise UserError(f"{where}: head tail needs block >= 0 (the blocks after it are fine-tuned)")
    if cfg.quantize != "none" and cfg.block >= 0:
        raise UserError(f"{where}: quantize {cfg.quantize} quantises the pooled features' network; "
                        f"it needs block: -1, got block: {cfg.block}")
    if cfg.also:
        if cfg.block >= 0:
            raise UserError(f"{where}: also concatenates pooled features; it needs block: -1, got {cfg.block}")
        if cfg.quantize != "none":
            raise UserError(f"{where}: also and quantize {cfg.quantize} do not go together (one INT8 network "
                            f"per run); quantize: none")
        for item in cfg.also:
            arch, _ = also_backbone(item, where)
            if not known(arch):
                build(arch)


# --------------------------------------------------------------------------- cut points

class FeatureHead(nn.Module):
    """backbone -> pooled pre-classifier features (forward_features + forward_head(pre_logits)).

    With `block` set: the activations after backbone.blocks[block] instead (EfficientNet-style
    timm models only: conv_stem, bn1, blocks), to be finished by BlockTail(backbone, block).
    """

    def __init__(self, backbone: nn.Module, block: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.block = None if block is None else check_block(backbone, block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bb = self.backbone
        if self.block is not None:
            x = bb.bn1(bb.conv_stem(x))
            return bb.blocks[: self.block + 1](x)
        x = bb.forward_features(x)
        x = bb.forward_head(x, pre_logits=True)
        return x.flatten(1)


class BlockTail(nn.Module):
    """The rest of `backbone` after blocks[block]: cached activations -> logits (or pooled
    features with pre_logits=True). Shares the backbone's parameters, so training the tail
    (e.g. on extraction.extract_intermediate's output) trains the backbone's last blocks and head."""

    def __init__(self, backbone: nn.Module, block: int):
        super().__init__()
        self.block = check_block(backbone, block)
        self.backbone = backbone

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        bb = self.backbone
        x = bb.blocks[self.block + 1:](x)
        x = bb.bn2(bb.conv_head(x))
        return bb.forward_head(x, pre_logits=pre_logits)


def check_block(backbone: nn.Module, block: int) -> int:
    """`block` as an int, refused unless the backbone is EfficientNet-style and has that block."""
    needed = ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "forward_head")
    if not all(hasattr(backbone, a) for a in needed) or not isinstance(backbone.blocks, nn.Sequential):
        raise UserError(f"block: intermediate features need an EfficientNet-style timm model "
                        f"(conv_stem, bn1, blocks, conv_head), not {type(backbone).__name__}")
    count = len(backbone.blocks)
    if not isinstance(block, (int, np.integer)) or not 0 <= int(block) < count:
        raise UserError(f"block: must be an integer in 0..{count - 1} for "
                        f"{type(backbone).__name__}, got {block!r}")
    return int(block)
