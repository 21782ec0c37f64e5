"""The image presets (`train SPEC --preset best|fast`, pipelines/presets.py): one recipe, chosen by
the size of the competition's images.

Photos (the shorter side of the typical training image at least TINY pixels) get the frozen-feature
recipe of Dogs vs. Cats' default (`effnet-lite2-int8`; fast: `effnet-lite0-head`); tiny images
(scikit-learn's 8 px digits, CIFAR's 32 px) get the compact CNN trained from scratch (`cnn`). On
the digits the CNN's log loss was 0.029 against the frozen features' 0.41; on photos the frozen
features win by as much (docs/results.md, "Spec competitions"; docs/decisions.md, "The best preset").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..presets import Member, Plan
from .spec import ImageSpec

TINY = 64       # pixels: a shorter side under this is a tiny image
SAMPLE = 25     # training images whose size is read (evenly spaced; headers only)


def typical_side(files) -> int:
    """The median shorter side of up to SAMPLE of the images (data.ImageFile), from their headers."""
    import io
    import zipfile

    from PIL import Image

    if not files:
        return 0
    picked = [files[int(i)] for i in np.linspace(0, len(files) - 1, min(SAMPLE, len(files)))]
    sides = []
    for image in picked:
        if image.member is None:
            with Image.open(image.path) as opened:
                sides.append(min(opened.size))
        else:
            with zipfile.ZipFile(image.path) as archive, Image.open(io.BytesIO(archive.read(image.member))) as opened:
                sides.append(min(opened.size))
    return int(np.median(sides))


def portfolio(spec: ImageSpec, preset: str, data: str | Path | None) -> Plan:
    from . import data as image_data
    from .cli import ImageSpecVerbs

    folder = ImageSpecVerbs(spec).data_dir(str(data) if data else None)
    train, _ = image_data.read_train(spec, folder)
    side = typical_side(train.files)
    if side < TINY:
        return Plan((Member("cnn", "cnn"),), note=f"images of {side} px: tiny, so the CNN from scratch")
    config = "effnet-lite2-int8" if preset == "best" else "effnet-lite0-head"
    return Plan((Member(config, config),), note=f"photos of {side} px: frozen ImageNet features")
