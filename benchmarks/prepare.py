"""Prepare throughput: images decoded and cached per second, on the 20,000 shared 200 px
images and on the 960 full-size originals, against a plain single-process PIL loop.

Rows, for each image set and size:
  plain PIL loop      Image.open(path).convert("RGB").resize((S, S), BILINEAR), one process
  decode, PIL only    our decode() with JPEG draft mode, PIL decoding every JPEG (the decoder
                      before simplejpeg), one process
  decode              our decode(): simplejpeg at PIL's draft scale for colour JPEGs, one process
  build_cache, 1      the prepare stage in this process: read, SHA-256, decode, write the memmap
  build_cache, 2      the prepare stage with 2 worker processes (both cores)
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.competitions.dogs_vs_cats import data

from .common import DOGS, fmt, link_files, shared_train_files, stratified, table, warm_files


def _plain(paths: list[Path], size: int) -> np.ndarray:
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        with Image.open(p) as img:
            out[i] = np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    return out


def _decode(paths: list[Path], size: int, fast: bool) -> np.ndarray:
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        out[i] = data.decode(p.read_bytes(), size, fast=fast)
    return out


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the decoding workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(fn, *args):
    """(value, wall seconds, CPU seconds)."""
    t0, c0 = time.perf_counter(), _cpu()
    value = fn(*args)
    return value, time.perf_counter() - t0, _cpu() - c0


def measure(name: str, paths: list[Path], size: int, tmp: Path) -> tuple[list[list], str]:
    warm_files(paths)
    n = len(paths)
    folder = link_files(paths, tmp / f"{name}-{size}-src")
    entries = data.scan(folder, "train")
    by_key = {p.name: i for i, p in enumerate(paths)}
    order = [by_key[e.key] for e in entries]             # the cache's row order (sorted names)
    plain, t_plain, c_plain = _timed(_plain, paths, size)
    pil, t_pil, c_pil = _timed(_decode, paths, size, False)
    ours, t_ours, c_ours = _timed(_decode, paths, size, True)
    built = {}
    for workers in (1, 2):
        _, wall, cpu = _timed(data.build_cache, entries, tmp / f"{name}-{size}-cache{workers}", size, workers, False)
        built[workers] = (wall, cpu)
    cached = data.load_cache(tmp / f"{name}-{size}-cache2").images
    same_fast = int(sum(np.array_equal(a, b) for a, b in zip(pil, ours)))
    same_cache = int(sum(np.array_equal(cached[row], pil[i]) for row, i in enumerate(order)))
    diff = np.abs(plain.astype(np.int16) - pil.astype(np.int16))
    rows = []
    base = n / t_plain
    for label, seconds, cpu in (("plain PIL loop (no draft), 1 process", t_plain, c_plain),
                                ("our decode, PIL only (draft), 1 process", t_pil, c_pil),
                                ("our decode (simplejpeg at draft scale), 1 process", t_ours, c_ours),
                                ("prepare stage `build_cache`, 1 process", *built[1]),
                                ("prepare stage `build_cache`, 2 workers", *built[2])):
        rows.append([name, f"{size} px", label, fmt(n / seconds), f"{n / seconds / base:.2f}x", fmt(n / cpu),
                     f"{cpu / seconds:.2f}"])
    note = (f"{name} at {size} px: simplejpeg vs PIL-only decode identical for {same_fast:,} of {n:,} images, "
            f"the 2-worker cache identical to the PIL-only decode for {same_cache:,} of {n:,}; plain PIL (full "
            f"decode) vs ours (draft): mean absolute difference {diff.mean():.2f} grey levels, max {int(diff.max())}, "
            f"{100 * np.mean(diff.reshape(n, -1).max(1) > 0):.0f}% of images differ somewhere.")
    return rows, note


def run(quick: bool = False) -> str:
    train = shared_train_files()
    originals = sorted((DOGS / "originals").glob("*.jpg"))
    if quick:
        train, originals = stratified(train, 200), stratified(originals, 40)
    plan = [("shared 200 px", train, 64), ("originals", originals, 64)]
    if not quick:
        plan.append(("originals", originals, 224))
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        for i, (name, paths, size) in enumerate(plan):
            r, note = measure(name.replace(" ", "-"), paths, size, Path(tmp) / str(i))
            for row in r:
                row[0] = f"{name} ({len(paths):,})"
            rows += r
            notes.append(note)
    return ("## Prepare throughput (images decoded and cached per second)\n\n"
            "JPEG files read once before timing (in the page cache, as on any second run). The plain loop and "
            "the single-process decodes keep the arrays in memory; `build_cache` also hashes every file "
            "(SHA-256, the cache's fingerprint) and writes the rows into the memory-mapped cache, and the 2 "
            "workers are started for it (fork, a pool). Speed-up: against the plain loop on the same images. "
            "Images per CPU second (the workers' CPU included) measure the work itself, whatever the load; "
            "cores used shows how much CPU the run got: when other jobs keep both cores busy, Linux shares the "
            "CPU between sessions, so 2 workers get no more of it than 1 process and cannot go faster.\n\n"
            + table(["images", "size", "method", "images/s", "speed-up", "images per CPU second",
                     "cores used (CPU s / wall s)"], rows)
            + "\nPixels: " + " ".join(notes) + "\n")
