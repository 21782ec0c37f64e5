"""Small Dogs vs. Cats look-alikes the tests draw, in Kaggle's layout, so the image mechanics
need nothing beside the repository.

A "cat" is a warm disc, a "dog" a cool bar, on a noisy background of varying size: a class a
tiny network can learn in two epochs, at the sizes and file formats the real data has
(200 px training copies, originals of mixed sizes, a few odd modes among them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def draw(label: int, rng: np.random.Generator, size: tuple[int, int] = (200, 200)) -> Image.Image:
    """One picture: label 0 a cat (warm disc), 1 a dog (cool bar), on grey-ish noise."""
    width, height = size
    background = rng.integers(60, 196, 3)
    pixels = np.clip(background + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    pen = ImageDraw.Draw(image)
    side = min(width, height)
    cx, cy = (int(v * rng.uniform(0.35, 0.65)) for v in (width, height))
    r = int(side * rng.uniform(0.18, 0.3))
    if label == 0:
        colour = tuple(int(v) for v in (rng.integers(190, 256), rng.integers(80, 150), rng.integers(0, 60)))
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        colour = tuple(int(v) for v in (rng.integers(0, 60), rng.integers(80, 150), rng.integers(190, 256)))
        pen.rectangle((cx - r, cy - r // 3, cx + r, cy + r // 3), fill=colour)
    return image


def write_dogs_vs_cats(root: Path, per_class: int = 30, n_test: int = 10, n_originals: int = 12,
                       seed: int = 0) -> Path:
    """root/train/{cat,dog}.N.jpg (200 px, N from 0), root/test1/N.jpg (N from 1) and
    root/originals/{cat,dog}.N.jpg: full-size photos of mixed sizes, among them a greyscale, a
    CMYK and a progressive JPEG, and a PNG with alpha saved under a .jpg name."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for folder in ("train", "test1", "originals"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for n in range(per_class):
        for label, kind in enumerate(("cat", "dog")):
            draw(label, rng).save(root / "train" / f"{kind}.{n}.jpg", quality=90)
    for n in range(1, n_test + 1):
        draw(int(rng.integers(0, 2)), rng).save(root / "test1" / f"{n}.jpg", quality=90)
    for n in range(n_originals):
        label = n % 2
        size = (int(rng.integers(150, 900)), int(rng.integers(150, 700)))
        image = draw(label, rng, size)
        path = root / "originals" / f"{('cat', 'dog')[label]}.{1000 + n}.jpg"
        if n == 2:
            image.convert("L").save(path, quality=90)
        elif n == 3:
            image.convert("CMYK").save(path, "JPEG", quality=90)
        elif n == 4:
            image.save(path, quality=90, progressive=True)
        elif n == 5:
            rgba = image.convert("RGBA")
            rgba.putalpha(200)
            rgba.save(path, "PNG")
        else:
            image.save(path, quality=90)
    return root
