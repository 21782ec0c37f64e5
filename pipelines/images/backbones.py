"""The frozen backbones of a frozen-feature recipe: the config's `arch` with its `pretrained`
weights, more backbones whose pooled features are concatenated after it (`also`), and the INT8
copy of the backbone that computes the features (`quantize: int8`).

  * ``also``: a list of weights packages (efficientnet-lite1-package) or ARCH=WEIGHTS entries;
    with ``join: logits`` a head per backbone on its own features (heads.JoinedHead), with
    ``join: concat`` one head on the concatenation. Each backbone's features are their own cached
    stage.
  * ``quantize: int8``: the pooled-feature network exported to ONNX and statically quantised
    (pretrained.quantize_onnx), calibrated on evenly spaced training images and cached with the
    features; a run carries its copy (QUANTIZED, beside its folds) and predicts with that very file.

A run records the fingerprints of its backbones' weights (and of its INT8 file), and prediction
refuses weights or a file that differ (check_weights, carried_int8).

STAGE_KEYS: the config keys of the feature stage (block and train_flip: features.stage);
check_stage refuses combinations that cannot work, in one line each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from .. import atomic
from ..errors import UserError
from . import pretrained as P

STAGE_KEYS = {"head", "block", "train_flip", "quantize", "also", "join"}
QUANTIZED = "backbone.int8.onnx"  # a run's INT8 network, beside its folds: predict needs the very same file


def make_backbone(arch: str, pretrained: bool | str) -> nn.Module:
    """The frozen backbone without a classifier (num_classes=0), so its fingerprint depends only on
    the pretrained weights."""
    return P.create_backbone(arch, pretrained=pretrained, num_classes=0).eval()


def also_backbone(item: str, where: str) -> tuple[str, str]:
    """(architecture, weights) of one `also` entry: a weights package's name, or ARCH=WEIGHTS."""
    if "=" in item:
        arch, weights = (part.strip() for part in item.split("=", 1))
        if arch and weights:
            return arch, weights
    elif item in P.PACKAGES:
        return P.PACKAGES[item][0], item
    raise UserError(f"{where}: also entry {item!r} is neither a weights package ({', '.join(P.PACKAGES)}) "
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
    shas = [P.state_fingerprint(b) for _, b in backbones]
    extra = {"also_sha": shas[1:], "feature_dims": feature_dims(backbones)} if len(backbones) > 1 else {}
    return {"backbone_sha": shas[0], **extra}


def check_weights(cfg, backbones: list[tuple[str, nn.Module]], meta: dict, where) -> None:
    """Refuse backbones whose weights differ from those a run was trained with (meta: a fold's)."""
    trained = [meta["backbone_sha"], *meta.get("also_sha", [])]
    for (_, net), sha, weights in zip(backbones, trained, [cfg.pretrained, *cfg.also]):
        if P.state_fingerprint(net) != sha:
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


# --------------------------------------------------------------------------- INT8

def int8_network(backbone: nn.Module, image_size: int, train_images: np.ndarray, cache_dir: Path) -> Path:
    """The INT8 copy of the backbone's pooled-feature network, calibrated on evenly spaced training
    images, cached in cache_dir (the same images give the same file)."""
    rows = P.calibration_rows(len(train_images))
    return P.quantize_onnx(backbone, image_size, cache_dir, np.asarray(train_images[rows]))


def carry_int8(network: Path, run_dir: Path) -> Path:
    """The run's copy of its INT8 network (QUANTIZED), written when missing or different."""
    target = Path(run_dir) / QUANTIZED
    if not target.is_file() or P.file_fingerprint(target) != P.file_fingerprint(network):
        atomic.write_bytes(target, network.read_bytes())
    return target


def carried_int8(run_dir: Path, sha: str | None) -> Path:
    """The INT8 network a run carries, refused when missing or not the file it trained with."""
    path = Path(run_dir) / QUANTIZED
    if not path.is_file():
        raise UserError(f"{path}: missing; a run with quantize int8 predicts with the network it "
                        f"was trained with")
    if P.file_fingerprint(path) != sha:
        raise UserError(f"{path}: differs from the INT8 network the run was trained with (fingerprint {sha})")
    return path
