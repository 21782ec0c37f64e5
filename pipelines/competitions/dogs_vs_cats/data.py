"""Dogs vs. Cats' images: where they are and what their file names say. Decoding and the cache are
the image engine's (pipelines/images/cache.py), re-exported here for the competition's code.

Sources (`scan`)
    * a folder holding ``train/`` and ``test1/`` (Kaggle's layout once unzipped),
    * a folder holding ``train.zip`` / ``test1.zip`` (Kaggle's download; read in place),
    * a folder of images directly (e.g. "predict on any folder of N.jpg"),
    * a .zip file directly.
    Train labels come from the names ``cat.N.jpg`` (0) / ``dog.N.jpg`` (1); test ids from
    ``N.jpg``.  Extensions .jpg/.jpeg/.png, any case.  Hidden files and ``__MACOSX/`` are
    skipped silently; other names in a train folder are ignored and reported.
"""

from __future__ import annotations

import os
import posixpath
import re
import zipfile
from collections import Counter
from pathlib import Path

from ...errors import UserError
from ...images.cache import *  # noqa: F401,F403  (decode, the cache and their constants)
from ...images.cache import IMAGE_SUFFIXES, TEST_LABEL, ImageEntry, ScanResult, _few, _read_checked  # noqa: F401

CLASS_NAMES = ("cat", "dog")
_SPLIT_FOLDERS = {"train": ("train",), "test": ("test1", "test")}
_TRAIN_NAME = re.compile(r"(cat|dog)\.(\d+)\.(jpe?g|png)", re.IGNORECASE)
_TEST_NAME = re.compile(r"(\d+)\.(jpe?g|png)", re.IGNORECASE)


# --------------------------------------------------------------------------- scan

def scan(source: str | os.PathLike, split: str) -> ScanResult:
    """List the images of `split` ("train" or "test") under `source`; see the module doc."""
    if split not in _SPLIT_FOLDERS:
        raise UserError(f"unknown split {split!r}: expected 'train' or 'test'")
    source = Path(source)
    if not source.exists():
        raise UserError(f"{source}: folder not found")
    where, files = _list_files(source, split)
    if not files:
        raise UserError(f"{where}: no files found (empty folder)")
    if split == "train":
        entries, ignored = _train_entries(where, files)
    else:
        entries, ignored = _test_entries(where, files)
    return ScanResult(entries, where, split, ignored, CLASS_NAMES if split == "train" else None)


def _list_files(source: Path, split: str) -> tuple[str, list[tuple[str, Path, str | None, int]]]:
    """(description, [(name, path, zip member or None, bytes)]) for the split's folder."""
    if source.is_dir():
        for name in _SPLIT_FOLDERS[split]:
            if (source / name).is_dir():
                return _list_dir(source / name)
        for name in _SPLIT_FOLDERS[split]:
            if (source / f"{name}.zip").is_file():
                return _list_zip(source / f"{name}.zip", split)
        return _list_dir(source)
    if zipfile.is_zipfile(source):
        return _list_zip(source, split)
    raise UserError(f"{source}: not a folder or a .zip file")


def _list_dir(folder: Path):
    files = []
    with os.scandir(folder) as it:
        for d in it:
            if d.name.startswith(".") or not d.is_file():
                continue
            files.append((d.name, Path(d.path), None, d.stat().st_size))
    return str(folder), files


def _list_zip(archive: Path, split: str):
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as e:
        raise UserError(f"{archive}: cannot read zip ({e})") from None
    infos = [i for i in infos if "__MACOSX/" not in i.filename
             and not posixpath.basename(i.filename).startswith(".")]
    nested = [i.filename for i in infos if i.filename.lower().endswith(".zip")]
    if nested:
        raise UserError(f"{archive}: holds zips ({', '.join(nested[:3])}); unzip it and "
                        "pass the folder that holds them")
    for name in _SPLIT_FOLDERS[split]:          # a zip holding train/ and test1/
        inside = [i for i in infos if i.filename.startswith(f"{name}/")]
        if inside:
            infos = inside
            break
    files = [(posixpath.basename(i.filename), archive, i.filename, i.file_size) for i in infos]
    counts = Counter(f[0] for f in files)
    dup = sorted(n for n, c in counts.items() if c > 1)
    if dup:
        raise UserError(f"{archive}: the same file name in several folders: {_few(dup)}")
    return str(archive), files


def _train_entries(where: str, files):
    entries, ignored = [], []
    for name, path, member, nbytes in files:
        m = _TRAIN_NAME.fullmatch(name)
        if m is None:
            ignored.append(name)
            continue
        label = CLASS_NAMES.index(m.group(1).lower())
        entries.append(ImageEntry(name, label, int(m.group(2)), path, member, nbytes))
    if not entries:
        raise UserError(f"{where}: no cat.N.jpg / dog.N.jpg images among {len(files)} files "
                        f"(e.g. {_few(sorted(ignored), 3)})")
    entries.sort(key=lambda e: e.key)
    return entries, sorted(ignored)


def _test_entries(where: str, files):
    entries, ignored, bad = [], [], []
    for name, path, member, nbytes in files:
        m = _TEST_NAME.fullmatch(name)
        if m is None:
            (bad if name.lower().endswith(IMAGE_SUFFIXES) else ignored).append(name)
            continue
        entries.append(ImageEntry(name, TEST_LABEL, int(m.group(1)), path, member, nbytes))
    if bad:
        raise UserError(f"{where}: test images must be named N.jpg with an integer N; "
                        f"{len(bad)} are not: {_few(sorted(bad))}")
    if not entries:
        raise UserError(f"{where}: no N.jpg images among {len(files)} files "
                        f"(e.g. {_few(sorted(ignored), 3)})")
    by_id: dict[int, list[str]] = {}
    for e in entries:
        by_id.setdefault(e.id, []).append(e.key)
    dup = [f"{i} ({' '.join(sorted(k))})" for i, k in sorted(by_id.items()) if len(k) > 1]
    if dup:
        raise UserError(f"{where}: duplicate test ids: {_few(dup)}")
    entries.sort(key=lambda e: e.id)
    return entries, sorted(ignored)
