"""Reading an image competition: the labels file, the image folders, Kaggle's template; the caches.

Layout (names from the spec): `labels` (a CSV with the id and target columns, one row per training
image), `train_images` and `test_images` (folders, or zips of the same name read in place, or 7z archives of
the same name unpacked once beside them, of `<id>.<ext>` files)
and, when present, `sample_submission`. The id of an image is its file name without the extension,
unless the labels file's ids carry an image extension themselves ("0a1b.jpg", as some Kaggle
competitions write them): then it is the whole file name.

Checks, each one line naming the file, and the row and id where there is one: a labels file without
the id or target column, an id missing or twice, a target missing, a single class; a labels row
whose image is not there; two images with one id (`5.png` and `5.jpg`), among the test images too;
a template whose ids are not the test images' ids. Training images without a labels row are left
out and counted; a labels column without a name (a saved pandas index) is left out with a note; a
missing template is said in one line (what the submission follows instead).

Decoding and caching are the engine's (pipelines/images/cache.py, which Dogs vs. Cats uses too): every mode to
8-bit RGB, squashed to size x size, in a uint8 memmap with a manifest written last and a fingerprint
of the files' contents, rebuilt whenever the files or the size change. Its entries carry no label
here (the labels come from the labels file each time, so relabelling never invalidates pixels): a
cache row's `id` is the entry's position. A training image that does not decode is left out and
reported; a test image that does not decode stops the command (a submission must cover every id).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from .. import archives, paths, plugins
from . import cache as images
from ..errors import UserError
from ..progress import bar as progress_bar
from ..tabular.data import Target, class_order, default_header, encode_target, read_table
from .spec import ImageSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
ARCHIVES_TO_UNPACK = {".tar": "tar xf", ".tar.gz": "tar xzf", ".tgz": "tar xzf", ".rar": "unrar x"}


@dataclass
class ImageFile:
    name: str                 # the file name, e.g. "1.png"
    path: Path                # the file, or the zip holding `member`
    member: str | None
    nbytes: int


@dataclass
class Folder:
    """The image files of one folder (or zip), by id."""
    where: str                          # for messages: the folder or zip
    files: dict[str, list[ImageFile]]   # id -> files with that id (two: an ambiguous id)
    other: list[str]                    # names that are not images

    def __len__(self) -> int:
        return len(self.files)


@dataclass
class TrainSet:
    ids: np.ndarray            # text ids, in the labels file's row order
    target: Target             # class indices, labels, classes (tabular.data.Target)
    files: list[ImageFile]     # one per row
    labels_path: Path
    folder: Folder
    unlabelled: int            # images in the folder without a labels row


@dataclass
class TestSet:
    ids: np.ndarray            # text ids, sorted (as numbers when they all are)
    files: list[ImageFile]
    folder: Folder


@dataclass
class CompetitionData:
    """What a data folder holds for a spec, checked."""
    spec: ImageSpec
    folder: Path
    id_style: str              # "stem" (1.png -> 1) or "name" (ids are whole file names)
    train: TrainSet
    test: TestSet | None
    sample_path: Path | None
    sample_ids: np.ndarray | None  # the template's ids in its row order


def fingerprint(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _suffix(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def image_id(name: str, id_style: str) -> str:
    return name if id_style == "name" else PurePosixPath(name).stem


def id_style_of(ids) -> str:
    """"name" when every id ends with an image extension ("0a1b.jpg"), else "stem"."""
    ids = [str(i) for i in ids]
    return "name" if ids and all(_suffix(i) in IMAGE_SUFFIXES for i in ids) else "stem"


def sort_ids(ids) -> np.ndarray:
    """Ids in order: as numbers when they all are (2 before 10), else as text."""
    return np.asarray(class_order(ids), dtype=object)


# --------------------------------------------------------------------------- folders

def locate(base: Path, relative: str) -> Path | None:
    """The folder `relative` under base, else its zip; None when neither is there. A `relative`.7z
    (CIFAR-10's train.7z; solid, too slow to read member by member) is unpacked once into that folder
    beside it (pipelines.archives.unpack_beside), which is returned. Another archive that Python
    cannot read in place (tar, rar), a 7z that py7zr cannot read, or a 7z in a folder that cannot be
    written is a one-line error saying how to unpack it."""
    folder = base / relative
    if folder.is_dir():
        return folder
    archive = base / f"{relative}.zip"
    if archive.is_file():
        return archive
    if folder.is_file() and zipfile.is_zipfile(folder):
        return folder
    packed = base / f"{relative}{archives.SEVEN_ZIP}"
    if packed.is_file():
        how = f"`cd {base} && 7z x {packed.name}`"
        try:
            count = archives.unpack_beside(packed, folder)
        except archives.Unreadable as exc:
            raise UserError(f"{packed}: unpack it first ({how}), so that {folder} holds the images; it is not a "
                            f"readable 7z archive for py7zr ({exc})") from None
        except OSError as exc:
            raise UserError(f"cannot unpack {packed} into {folder} ({exc.strerror or exc}): copy {base} somewhere "
                            f"you can write and pass that as --data, or unpack it there as its owner "
                            f"({how})") from None
        print(f"unpacked {packed.name} into {folder} ({count} files)", flush=True)
        return folder
    for suffix, command in ARCHIVES_TO_UNPACK.items():
        packed = base / f"{relative}{suffix}"
        if packed.is_file():
            raise UserError(f"{packed}: unpack it first (`cd {base} && {command} {packed.name}`), so that {folder} "
                            f"holds the images")
    return None


def list_folder(source: Path, id_style: str) -> Folder:
    """The images of a folder or a zip (its members at any depth; hidden files and __MACOSX/ skipped)."""
    source = Path(source)
    entries: list[ImageFile] = []
    other: list[str] = []
    if source.is_dir():
        with os.scandir(source) as it:
            for d in it:
                if d.name.startswith(".") or not d.is_file():
                    continue
                if _suffix(d.name) in IMAGE_SUFFIXES:
                    entries.append(ImageFile(d.name, Path(d.path), None, d.stat().st_size))
                else:
                    other.append(d.name)
    elif zipfile.is_zipfile(source):
        try:
            with zipfile.ZipFile(source) as archive:
                infos = [i for i in archive.infolist() if not i.is_dir()]
        except (zipfile.BadZipFile, OSError) as exc:
            raise UserError(f"{source}: cannot read zip ({exc})") from None
        for info in infos:
            name = PurePosixPath(info.filename).name
            if "__MACOSX/" in info.filename or name.startswith("."):
                continue
            if _suffix(name) in IMAGE_SUFFIXES:
                entries.append(ImageFile(name, source, info.filename, info.file_size))
            else:
                other.append(name)
    elif source.exists():
        raise UserError(f"{source}: not a folder or a .zip file of images")
    else:
        raise UserError(f"{source}: folder not found")
    files: dict[str, list[ImageFile]] = {}
    for entry in entries:
        files.setdefault(image_id(entry.name, id_style), []).append(entry)
    return Folder(str(source), files, sorted(other))


def _ambiguous(folder: Folder, key: str) -> str:
    names = sorted(f.member or f.name for f in folder.files[key])
    return f"{folder.where}: id {key!r} twice: {' and '.join(names[:3])} (one image per id)"


def _one_per_id(folder: Folder) -> None:
    """One line for the first id that two images share."""
    for key, found in folder.files.items():
        if len(found) > 1:
            raise UserError(_ambiguous(folder, key))


# --------------------------------------------------------------------------- the competition

def read_labels(spec: ImageSpec, path: Path, say=None) -> tuple[np.ndarray, Target]:
    frame = read_table(path, spec.id, [spec.target], "target", say=say)
    return frame[spec.id].to_numpy(dtype=object), encode_target(frame, spec, path)


def label_plugin(spec: ImageSpec):
    """The spec's plugin when it reads the labels (labels(names)), else None; a spec with both a labels
    file and that hook is one line."""
    if spec.plugin is None:
        return None
    module = plugins.load(spec.plugin, spec.where("plugin"), kind="images")
    if spec.labels is not None:
        raise UserError(f"{spec.where('labels')}: {spec.labels} and {Path(spec.plugin).name}'s labels(names) both "
                        f"give the labels; keep one")
    return module


def read_named(spec: ImageSpec, base: Path, module) -> tuple[np.ndarray, Target, Folder]:
    """The training images' ids and labels from the plugin's labels(names): every image file of
    train_images, its name sorted; the ones it labels None left out."""
    source = locate(base, spec.train_images)
    if source is None:
        raise UserError(f"{base / spec.train_images}: training images folder not found (spec key train_images)")
    folder = list_folder(source, "stem")
    if not folder.files:
        raise UserError(f"{folder.where}: no image files (.png, .jpg, ...) found")
    _one_per_id(folder)
    names = sorted(found[0].name for found in folder.files.values())
    classes = plugins.labels(module, names, folder.where)
    kept = [(image_id(name, "stem"), label) for name, label in zip(names, classes) if label is not None]
    if not kept:
        raise UserError(f"{spec.plugin}: labels() left out every one of the {len(names)} images of {folder.where}")
    frame = pd.DataFrame({spec.id: [k for k, _ in kept], spec.target: [label for _, label in kept]}, dtype=object)
    return frame[spec.id].to_numpy(dtype=object), encode_target(frame, spec, Path(spec.plugin)), folder


def read_train(spec: ImageSpec, base: Path, say=None, module=None) -> tuple[TrainSet, str]:
    """module: the spec's label plugin when the caller has it (label_plugin), else found here."""
    module = module if module is not None else label_plugin(spec)
    if module is not None:
        labels_path = Path(spec.plugin)
        ids, target, folder = read_named(spec, base, module)
        style = "stem"
    else:
        labels_path = base / spec.labels
        ids, target = read_labels(spec, labels_path, say)
        style = id_style_of(ids)
        source = locate(base, spec.train_images)
        if source is None:
            raise UserError(f"{base / spec.train_images}: training images folder not found (spec key "
                            f"train_images)")
        folder = list_folder(source, style)
        if not folder.files:
            raise UserError(f"{folder.where}: no image files (.png, .jpg, ...) found")
    files = []
    for row, key in enumerate(ids):
        found = folder.files.get(str(key))
        if not found:
            raise UserError(f"{labels_path}: row {row + 2}: {spec.id} {key!r} has no image in {folder.where} "
                            f"(expected a file named {key if style == 'name' else f'{key}.png, {key}.jpg, ...'})")
        if len(found) > 1:
            raise UserError(_ambiguous(folder, str(key)))
        files.append(found[0])
    unlabelled = len(set(folder.files) - {str(i) for i in ids})
    return TrainSet(ids, target, files, labels_path, folder, unlabelled), style


def read_test(folder: Folder) -> TestSet:
    """Every image of a test folder, one per id (an id twice is an error), in id order."""
    _one_per_id(folder)
    if not folder.files:
        raise UserError(f"{folder.where}: no image files (.png, .jpg, ...) found")
    ids = sort_ids(folder.files)
    return TestSet(ids, [folder.files[str(i)][0] for i in ids], folder)


def read_sample_ids(spec: ImageSpec, path: Path) -> np.ndarray:
    return read_table(path, spec.id)[spec.id].to_numpy(dtype=object)


def check_template(sample_path: Path, sample_ids: np.ndarray, test: TestSet | None, spec: ImageSpec) -> None:
    if test is None:
        return
    expected, present = {str(i) for i in sample_ids}, {str(i) for i in test.ids}
    if expected - present:
        missing = sort_ids(expected - present)
        raise UserError(f"{sample_path}: {len(missing)} {spec.id}(s) with no image in {test.folder.where}, e.g. "
                        f"{missing[0]}")
    if present - expected:
        extra = sort_ids(present - expected)
        raise UserError(f"{test.folder.where}: {len(extra)} image(s) whose id is not in {sample_path.name}, e.g. "
                        f"{extra[0]}")


def load(spec: ImageSpec, base: str | Path, say=print) -> CompetitionData:
    """The spec's files in `base`, checked against the spec and each other (module docstring);
    `say` is told about a labels column without a name, left out (tabular.data.read_table)."""
    base = Path(base)
    if not base.is_dir():
        raise UserError(f"{base}: data folder not found")
    module = label_plugin(spec)
    if module is None and not (base / spec.labels).exists():
        raise UserError(f"{base}: no {spec.labels} there (expected {spec.name}'s files in Kaggle's layout: "
                        f"{spec.labels}, {spec.train_images}/, {spec.test_images}/)")
    train, style = read_train(spec, base, say, module)
    source = locate(base, spec.test_images)
    test = read_test(list_folder(source, style)) if source is not None else None
    sample_path = base / spec.sample_submission
    sample_ids = None
    if sample_path.is_file():
        sample_ids = read_sample_ids(spec, sample_path)
        check_template(sample_path, sample_ids, test, spec)
    else:
        sample_path = None
    return CompetitionData(spec, base, style, train, test, sample_path, sample_ids)


# --------------------------------------------------------------------------- caches

def _entries(files: list[ImageFile], where: str, split: str) -> images.ScanResult:
    """Dogs vs. Cats' cache entries: no label (TEST_LABEL), the position as the id."""
    entries = [images.ImageEntry(f.member or f.name, images.TEST_LABEL, i, f.path, f.member, f.nbytes)
               for i, f in enumerate(files)]
    return images.ScanResult(entries, where, split, [])


def cache_root(spec: ImageSpec, size: int) -> Path:
    return paths.data_dir(spec.name) / "cache" / str(size)


@dataclass
class Cached:
    """A split's cache and which of its files it holds."""
    images: np.ndarray         # (n, size, size, 3) uint8, read-only memmap
    rows: np.ndarray           # the positions (in the split's file list) of the cached images
    fingerprint: str
    skipped: list[dict]        # [{"key", "reason"}] of images that did not decode
    rebuilt: bool
    path: Path


def ensure_cache(spec: ImageSpec, files: list[ImageFile], where: str, split: str, size: int,
                 workers: int = 2, progress: bool = True) -> Cached:
    cache = images.ensure_cache(_entries(files, where, split), cache_root(spec, size) / split, size, workers,
                                progress)
    manifest = cache.manifest
    return Cached(cache.images, np.asarray(cache.ids, dtype=np.int64), manifest["fingerprint"],
                  list(manifest["skipped"]), cache.rebuilt, cache.path)


def caches(comp: CompetitionData, size: int, workers: int = 2, progress: bool = True) -> tuple[Cached, Cached | None]:
    """The train (and test) caches at `size`, built or reused; a test image that does not decode is
    an error naming the files."""
    train = ensure_cache(comp.spec, comp.train.files, comp.train.folder.where, "train", size, workers, progress)
    test = None
    if comp.test is not None:
        test = ensure_cache(comp.spec, comp.test.files, comp.test.folder.where, "test", size, workers, progress)
        if test.skipped:
            raise UserError(f"{comp.test.folder.where}: {len(test.skipped)} test image(s) cannot be read, so no "
                            f"submission could cover every id: "
                            + "; ".join(f"{s['key']} ({s['reason']})" for s in test.skipped[:5]))
    return train, test


def decode_folder(test: TestSet, size: int, desc: str = "decode test images") -> np.ndarray:
    """Every image of a test set decoded as the caches are, in memory (prediction on a new folder);
    any image that does not decode stops it, naming every bad file."""
    out = np.empty((len(test.files), size, size, 3), np.uint8)
    bad = []
    try:
        for i, entry in enumerate(progress_bar(_entries(test.files, test.folder.where, "test"), desc=desc,
                                               unit="img")):
            try:
                if entry.nbytes > images.MAX_FILE_BYTES:
                    raise images.BadImage(f"file of {entry.nbytes:,} bytes is over the "
                                          f"{images.MAX_FILE_BYTES:,} limit")
                out[i] = images.decode(entry.read_bytes(), size)
            except images.BadImage as exc:
                bad.append(f"{entry.key} ({exc.reason})")
            except OSError as exc:
                bad.append(f"{entry.key} (cannot read: {exc})")
    finally:
        images.close_archives()
    if bad:
        raise UserError(f"{test.folder.where}: {len(bad)} test image(s) cannot be read: {'; '.join(bad[:10])}"
                        + (" ..." if len(bad) > 10 else ""))
    return out


def summary(comp: CompetitionData) -> list[str]:
    """A few lines for prepare and train: images, classes, test, template."""
    train, spec = comp.train, comp.spec
    counts = pd.Series(train.target.values).value_counts().reindex(range(len(train.target.classes)), fill_value=0)
    classes = train.target.classes
    shown = ", ".join(f"{c} {int(counts[i])}" for i, c in enumerate(classes[:12]))
    lines = [f"{spec.label_source}: {len(train.ids)} labelled images in {train.folder.where}; {len(classes)} classes "
             f"({shown}{' ...' if len(classes) > 12 else ''})"]
    if train.unlabelled:
        lines.append(f"  {train.unlabelled} image(s) in {train.folder.where} have "
                     f"{'no row in ' + spec.labels if spec.labels else 'no label from labels(names)'}: left out")
    if comp.test is None:
        lines.append(f"{spec.test_images}: no test images folder: training will not predict a test set")
    else:
        lines.append(f"{spec.test_images}: {len(comp.test.ids)} test images in {comp.test.folder.where}")
    if comp.sample_path is not None:
        lines.append(f"{comp.sample_path.name}: {len(comp.sample_ids)} ids (the submission follows its columns "
                     f"and rows)")
    elif comp.test is not None:
        lines.append(no_template_note(spec, comp.folder, classes))
    return lines


def no_template_note(spec: ImageSpec, folder: Path, classes: list[str] | None, rows: str | None = None) -> str:
    """The one line said when a data folder has no template: what the submission follows instead."""
    return (f"note: no {spec.sample_submission} in {folder}: the submission has the columns "
            f"{', '.join(default_header(spec, classes))} and the rows of {rows or 'the test images, by id'}")
