"""Decoding images once and caching them, for every image competition: the entries to cache
(`ImageEntry`, a `ScanResult` of them) come from the competition's own listing (Dogs vs. Cats'
file names, an images spec's labels file: pipelines/images/data.py).

Decoding (`decode`)
    By content, never by extension (a PNG or GIF named .jpg works).  JPEGs use PIL's
    draft mode (DCT scaling by 1/2, 1/4 or 1/8 while both sides stay >= size).  Every
    mode becomes 8-bit RGB: alpha is composited over white, 16-bit grey is scaled by
    1/257 (never clipped to white), CMYK/P/L/1 via PIL's converters.  EXIF orientation is
    ignored (same as the shared 200x200 images were made).  The image is then squashed to
    size x size (aspect not kept, like the shared images) with Pillow's antialiased
    bilinear filter, reducing_gap=3.0.  Deterministic.  Refused with `BadImage`: empty,
    truncated or corrupt files, non-images, formats outside `IMAGE_FORMATS`, and images
    over `MAX_PIXELS` pixels (checked from the header, before decoding).

Cache (`build_cache`, `load_cache`, `ensure_cache`)
    ``images.npy`` uint8 (N, size, size, 3), one row per image that decoded, in the
    order of the entries; ``labels.npy`` / ``ids.npy`` (int64) and ``keys.json`` for the
    same rows; ``manifest.json`` written last.  Building first deletes the manifest, so a
    half-built cache never has one and is rebuilt, never read.

    Fingerprint of the sources: the SHA-256 of every file's *contents* (not mtimes: copies
    and re-downloads keep a cache valid, edits in place invalidate it), combined with
    the key and byte count of each entry, in entry order (= row order).  Hashing the
    190 MB of shared train JPEGs costs ~0.1 s of SHA-256 plus reading them; during a
    build the digests are computed by the workers from the bytes they decode anyway.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipelines.atomic import atomic_path, write_json, write_with
from pipelines.errors import UserError

TEST_LABEL = -1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "PPM")
MAX_PIXELS = 50_000_000          # refuse larger images before decoding them
MAX_FILE_BYTES = 256 * 2**20     # refuse larger files before reading them
# Caches are reused only when both match: change one whenever decode() or the file layout
# changes, or old caches keep the old pixels.
FORMAT_VERSION = 1
RESIZE_POLICY = ("squash; jpeg draft; bilinear antialiased, reducing_gap=3.0; "
                 "alpha over white; 16-bit /257; exif orientation ignored")

MANIFEST = "manifest.json"
IMAGES = "images.npy"
LABELS = "labels.npy"
IDS = "ids.npy"
KEYS = "keys.json"

_REPORT_MAX = 20


# --------------------------------------------------------------------------- scan

@dataclasses.dataclass(frozen=True)
class ImageEntry:
    """One source image: `path` is the file, or the zip holding `member`."""

    key: str                  # file name, e.g. "cat.12.jpg"; unique within a scan
    label: int                # the class index, TEST_LABEL (-1) for a test image
    id: int                   # the image's id (N of cat.N.jpg / N.jpg)
    path: Path
    member: str | None = None
    nbytes: int = 0

    @property
    def where(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)

    def read_bytes(self) -> bytes:
        if self.member is None:
            return self.path.read_bytes()
        return _open_zip(self.path).read(self.member)


class ScanResult(list):
    """The entries (a list), plus where they came from and what was passed over."""

    def __init__(self, entries: Sequence[ImageEntry], folder: str, split: str,
                 ignored: Sequence[str], class_names: Sequence[str] | None = None):
        super().__init__(entries)
        self.folder = folder
        self.split = split
        self.ignored = list(ignored)
        self.class_names = tuple(class_names) if class_names else None   # label -> name, for the manifest


def _few(names: Sequence[Any], n: int = 5) -> str:
    shown = ", ".join(str(x) for x in list(names)[:n])
    return shown + (f" ... ({len(names)} in all)" if len(names) > n else "")


_ZIPS: dict[Path, zipfile.ZipFile] = {}
_ZIPS_PID = os.getpid()


def _open_zip(path: Path) -> zipfile.ZipFile:
    """One open ZipFile per archive and process (a forked child never shares the parent's)."""
    global _ZIPS, _ZIPS_PID
    if _ZIPS_PID != os.getpid():
        _ZIPS, _ZIPS_PID = {}, os.getpid()
    zf = _ZIPS.get(path)
    if zf is None:
        zf = _ZIPS[path] = zipfile.ZipFile(path)
    return zf


def close_archives() -> None:
    """Close the zips this process opened to read entries."""
    if _ZIPS_PID == os.getpid():
        for zf in _ZIPS.values():
            zf.close()
    _ZIPS.clear()


# --------------------------------------------------------------------------- decode

class BadImage(Exception):
    """A file that cannot be used as an image; `reason` is one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def decode(data: bytes, size: int, *, draft: bool = True, fast: bool = True) -> np.ndarray:
    """Decode image bytes to a (size, size, 3) uint8 RGB array, or raise BadImage.

    draft=False skips JPEG DCT scaling (slower; only for comparisons: caches use draft).
    fast=False decodes colour JPEGs with PIL too (the same pixels, slower; for benchmarks).
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if not data:
        raise BadImage("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise BadImage(f"{w}x{h} pixels is over the {MAX_PIXELS:,} limit "
                               "(decompression bomb?)")
            decoded = _jpeg_fast(data, img, size) if draft and fast else None
            if decoded is not None:
                img = decoded
            elif draft and img.format in ("JPEG", "MPO"):
                img.draft("RGB", (size, size))
            img.load()                              # detects truncation
            img = _to_rgb(img)
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
            arr = np.asarray(img, dtype=np.uint8)
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage("not an image (format not recognised)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"decompression bomb: {_one_line(e)}") from None
    except Exception as e:                          # corrupt data makes decoders raise anything
        raise BadImage(f"corrupt or truncated: {_one_line(e)}") from None
    if arr.shape != (size, size, 3):                # pragma: no cover - defensive
        raise BadImage(f"decoded to shape {arr.shape}")
    return arr


def _jpeg_fast(data: bytes, img: Image.Image, size: int) -> Image.Image | None:
    """A colour baseline/progressive JPEG decoded by simplejpeg at PIL's draft scale, or None.

    Both are libjpeg-turbo with the same settings (accurate integer IDCT, fancy upsampling)
    and the same DCT scale, 1/8, 1/4 or 1/2 as PIL's draft() picks (both sides stay >= size),
    so the pixels are identical (benchmarks/prepare.py checks every shared image); it skips
    PIL's chunked decoding: 1.1-1.4x faster at 32-64 px, about the same at 224 px and up.
    Anything else (grey, CMYK, MPO, any libjpeg warning: strict) returns None and PIL
    decodes it as before.
    """
    if img.format != "JPEG" or img.mode != "RGB":
        return None
    try:
        import simplejpeg
    except ImportError:  # pragma: no cover - a dependency; PIL alone gives the same pixels
        return None
    w, h = img.size
    scale = min(w // size, h // size)
    factor = next((f for f in (8, 4, 2) if scale >= f), 1)
    want = (-(-h // factor), -(-w // factor))
    try:
        arr = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=want[0], min_width=want[1])
    except Exception:  # strict: warnings too; PIL decides what the file is
        return None
    if arr.shape != (*want, 3):  # pragma: no cover - defensive
        return None
    return Image.fromarray(arr)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"[:200]


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(img)
        if mode == "F":                             # float: [0, 1] if it fits, else [0, 255]
            a = np.nan_to_num(a.astype(np.float64))
            a = a * 255.0 if a.max(initial=0.0) <= 1.0 else a
            a8 = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        else:                                       # 16-bit range -> 8 bits, rounded
            a = np.clip(a.astype(np.int64), 0, 65535)
            a8 = ((a * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(a8).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


# --------------------------------------------------------------------------- cache

@dataclasses.dataclass
class CacheInfo:
    """What build_cache wrote."""

    path: Path
    count: int                  # images in the cache
    size: int
    skipped: list[dict]         # [{"key", "reason"}]
    manifest: dict
    seconds: float


@dataclasses.dataclass
class Cache:
    """An opened cache; `images` is a read-only memmap (N, size, size, 3) uint8."""

    path: Path
    images: np.ndarray
    labels: np.ndarray          # int64, -1 for test
    ids: np.ndarray             # int64
    keys: list[str]
    manifest: dict
    rebuilt: bool = False       # set by ensure_cache
    reason: str | None = None   # why ensure_cache rebuilt it


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _combine(records: Sequence[tuple[str, int, str]]) -> str:
    h = hashlib.sha256(b"dogs-vs-cats sources v1\n")
    for key, nbytes, digest in records:
        h.update(f"{key}\t{nbytes}\t{digest}\n".encode())
    return "sha256:" + h.hexdigest()


def _read_checked(entry: ImageEntry) -> bytes:
    if entry.nbytes > MAX_FILE_BYTES:
        raise BadImage(f"file of {entry.nbytes:,} bytes is over the {MAX_FILE_BYTES:,} limit")
    return entry.read_bytes()


def _source_record(entry: ImageEntry) -> tuple[str, int, str]:
    try:
        data = _read_checked(entry)
    except (OSError, zipfile.BadZipFile, BadImage) as e:
        return entry.key, -1, "unreadable: " + _one_line(e)
    return entry.key, len(data), _digest(data)


def fingerprint(entries: Sequence[ImageEntry], progress: bool = False) -> str:
    """SHA-256 over (key, byte count, SHA-256 of contents) of every entry, in order."""
    from ..progress import bar

    try:
        return _combine([_source_record(e) for e in bar(entries, desc="check sources", unit="img",
                                                          disable=not _progress_enabled(progress))])
    finally:
        close_archives()


_WORKER: dict[str, Any] = {}


def _init_worker(images_path: str, entries: Sequence[ImageEntry], size: int) -> None:
    _WORKER["images"] = np.load(images_path, mmap_mode="r+")
    _WORKER["entries"] = entries
    _WORKER["size"] = size


def _work(bounds: tuple[int, int]) -> list[tuple[int, str | None, tuple[str, int, str]]]:
    """Decode entries[start:stop] straight into their rows of the memmap."""
    images, entries, size = _WORKER["images"], _WORKER["entries"], _WORKER["size"]
    out = []
    for i in range(*bounds):
        entry = entries[i]
        try:
            data = _read_checked(entry)
        except (OSError, zipfile.BadZipFile, BadImage) as e:
            reason = e.reason if isinstance(e, BadImage) else "cannot read: " + _one_line(e)
            out.append((i, reason, (entry.key, -1, "unreadable: " + _one_line(e))))
            continue
        record = (entry.key, len(data), _digest(data))
        try:
            images[i] = decode(data, size)
        except BadImage as e:
            out.append((i, e.reason, record))
            continue
        out.append((i, None, record))
    return out


def _progress_enabled(progress: bool) -> bool:
    return progress and not os.environ.get("CI")


def _decode_all(tmp: Path, entries: Sequence[ImageEntry], size: int, workers: int,
                progress: bool) -> list:
    from ..progress import bar as progress_bar

    n = len(entries)
    chunk = max(1, min(64, n // (max(workers, 1) * 8)))
    tasks = [(s, min(s + chunk, n)) for s in range(0, n, chunk)]
    results: list = [None] * n
    bar = progress_bar(total=n, unit="img", desc=f"decode {size}px", disable=not _progress_enabled(progress))
    try:
        if workers <= 1:
            _init_worker(str(tmp), entries, size)
            try:
                for t in tasks:
                    for r in _work(t):
                        results[r[0]] = r
                    bar.update(t[1] - t[0])
                _WORKER["images"].flush()
            finally:
                _WORKER.clear()
                close_archives()
        else:
            pool = multiprocessing.Pool(workers, _init_worker, (str(tmp), list(entries), size))
            try:
                for out in pool.imap_unordered(_work, tasks):
                    for r in out:
                        results[r[0]] = r
                    bar.update(len(out))
                pool.close()
                pool.join()
            finally:
                pool.terminate()
    finally:
        bar.close()
    return results


def _compact(tmp: Path, keep: list[int], size: int) -> None:
    """Drop the rows of skipped images: move kept rows up, rewrite the header, truncate."""
    images = np.load(tmp, mmap_mode="r+")
    for dst, src in enumerate(keep):
        if dst != src:
            images[dst] = images[src]
    images.flush()
    offset = images.offset
    del images
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (len(keep), size, size, 3)})
    if len(header.getvalue()) != offset:            # pragma: no cover - numpy pads headers
        raise RuntimeError(f"{tmp}: unexpected .npy header length")
    with open(tmp, "r+b") as fh:
        fh.write(header.getvalue())
        fh.truncate(offset + len(keep) * size * size * 3)


def build_cache(entries: Sequence[ImageEntry], cache_dir: str | os.PathLike, size: int,
                workers: int = 2, progress: bool = True) -> CacheInfo:
    """Decode every entry into cache_dir (see the module doc); bad files are skipped.

    Runs `workers` processes (<= 1: in this process), each writing its rows straight
    into the memmapped array.  Raises UserError when no image at all decodes.
    """
    if not entries:
        raise UserError(f"{cache_dir}: no images to cache")
    if size < 1:
        raise UserError(f"image size must be a positive number of pixels, got {size}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / MANIFEST).unlink(missing_ok=True)   # from now on the cache is invalid
    for stale in cache_dir.glob(f".{IMAGES}.*"):     # temp arrays of killed builds
        stale.unlink(missing_ok=True)
    start = time.monotonic()
    n = len(entries)
    with atomic_path(cache_dir / IMAGES) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
        del arr
        results = _decode_all(tmp, entries, size, workers, progress)
        keep = [i for i, reason, _ in results if reason is None]
        skipped = [{"key": entries[i].key, "reason": reason}
                   for i, reason, _ in results if reason is not None]
        if not keep:
            raise UserError(f"{getattr(entries, 'folder', cache_dir)}: none of the {n} images "
                            f"could be decoded (e.g. {skipped[0]['key']}: {skipped[0]['reason']})")
        if len(keep) < n:
            _compact(tmp, keep, size)
    kept = [entries[i] for i in keep]
    labels = np.array([e.label for e in kept], dtype=np.int64)
    ids = np.array([e.id for e in kept], dtype=np.int64)
    write_with(cache_dir / LABELS, lambda p: np.save(p, labels))
    write_with(cache_dir / IDS, lambda p: np.save(p, ids))
    write_json(cache_dir / KEYS, [e.key for e in kept])
    split = getattr(entries, "split", "test" if all(e.label == TEST_LABEL for e in kept)
                    else "train")
    ignored = list(getattr(entries, "ignored", []))
    seconds = time.monotonic() - start
    manifest = {
        "format_version": FORMAT_VERSION,
        "size": size,
        "resize_policy": RESIZE_POLICY,
        "fingerprint": _combine([r[2] for r in results]),
        "fingerprint_method": "sha256 of (key, bytes, sha256 of contents) per entry, in order",
        "split": split,
        "source": getattr(entries, "folder", None),
        "shape": [len(kept), size, size, 3],
        "counts": {"entries": n, "images": len(kept), "skipped": len(skipped),
                   "ignored": len(ignored),
                   "labels": _label_counts(labels, getattr(entries, "class_names", None))},
        "skipped": skipped,
        "ignored": ignored[:100],
        "files": {"images": IMAGES, "labels": LABELS, "ids": IDS, "keys": KEYS},
        "seconds": round(seconds, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(cache_dir / MANIFEST, manifest)       # last: the cache is now valid
    return CacheInfo(cache_dir, len(kept), size, skipped, manifest, seconds)


def _label_counts(labels: np.ndarray, class_names: Sequence[str] | None) -> dict[str, int]:
    """Images per label, by class name where the entries name their classes, else by index."""
    counts = {}
    for value, count in zip(*np.unique(labels, return_counts=True)):
        if value == TEST_LABEL:
            name = "unlabelled"
        else:
            name = class_names[value] if class_names and 0 <= value < len(class_names) else str(int(value))
        counts[name] = int(count)
    return counts


def _read_manifest(cache_dir: Path) -> dict | None:
    try:
        manifest = json.loads((cache_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _npy_shape(path: Path) -> tuple | None:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return tuple(arr.shape) + (str(arr.dtype),)


def _files_problem(cache_dir: Path, manifest: dict) -> str | None:
    """Why the files on disk do not match the manifest, or None."""
    try:
        count, size = int(manifest["counts"]["images"]), int(manifest["size"])
    except (KeyError, TypeError, ValueError):
        return "manifest.json is incomplete"
    shape = _npy_shape(cache_dir / IMAGES)
    if shape != (count, size, size, 3, "uint8"):
        return f"{IMAGES} is {shape}, manifest says ({count}, {size}, {size}, 3) uint8"
    for name in (LABELS, IDS):
        if _npy_shape(cache_dir / name) != (count, "int64"):
            return f"{name} does not hold {count} int64 values"
    try:
        keys = json.loads((cache_dir / KEYS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{KEYS} is missing or unreadable"
    if not isinstance(keys, list) or len(keys) != count:
        return f"{KEYS} does not hold {count} names"
    return None


def cache_status(entries: Sequence[ImageEntry], cache_dir: str | os.PathLike,
                 size: int, progress: bool = False) -> str | None:
    """None when cache_dir holds a finished cache of exactly these sources at this size,
    else the reason it must be (re)built.  Cheap checks first; hashes the sources last."""
    cache_dir = Path(cache_dir)
    manifest = _read_manifest(cache_dir)
    if manifest is None:
        return "no finished cache (manifest.json missing or unreadable)"
    if manifest.get("format_version") != FORMAT_VERSION:
        return f"cache format {manifest.get('format_version')} != {FORMAT_VERSION}"
    if manifest.get("size") != size:
        return f"image size {manifest.get('size')} != {size}"
    if manifest.get("resize_policy") != RESIZE_POLICY:
        return "resize policy changed"
    problem = _files_problem(cache_dir, manifest)
    if problem:
        return problem
    if manifest.get("counts", {}).get("entries") != len(entries):
        return "sources changed (number of files)"
    if manifest.get("fingerprint") != fingerprint(entries, progress):
        return "sources changed (contents)"
    return None


def load_cache(cache_dir: str | os.PathLike) -> Cache:
    """Open a finished cache; the images stay on disk (read-only memmap)."""
    cache_dir = Path(cache_dir)
    manifest = _read_manifest(cache_dir)
    if manifest is None:
        raise UserError(f"{cache_dir / MANIFEST}: no finished image cache here; "
                        "run the prepare stage")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{cache_dir / MANIFEST}: cache format "
                        f"{manifest.get('format_version')}, expected {FORMAT_VERSION}; "
                        "run the prepare stage again")
    problem = _files_problem(cache_dir, manifest)
    if problem:
        raise UserError(f"{cache_dir}: {problem}; run the prepare stage again")
    return Cache(
        path=cache_dir,
        images=np.load(cache_dir / IMAGES, mmap_mode="r"),
        labels=np.load(cache_dir / LABELS),
        ids=np.load(cache_dir / IDS),
        keys=json.loads((cache_dir / KEYS).read_text(encoding="utf-8")),
        manifest=manifest,
    )


def ensure_cache(entries: Sequence[ImageEntry], cache_dir: str | os.PathLike, size: int,
                 workers: int = 2, progress: bool = True) -> Cache:
    """Open the cache in cache_dir if it matches these sources and size; else rebuild it."""
    reason = cache_status(entries, cache_dir, size, progress)
    if reason is None:
        return load_cache(cache_dir)
    build_cache(entries, cache_dir, size, workers=workers, progress=progress)
    cache = load_cache(cache_dir)
    cache.rebuilt, cache.reason = True, reason
    return cache


# --------------------------------------------------------------------------- report

def summary(cache: Cache | CacheInfo | dict) -> str:
    """A few lines for the CLI: counts per label, skipped files with reasons, ignored names."""
    m = cache if isinstance(cache, dict) else cache.manifest
    counts = m["counts"]
    labels = ", ".join(f"{k} {v}" for k, v in counts["labels"].items())
    lines = [f"{m['split']}: {counts['images']} of {counts['entries']} images cached at "
             f"{m['size']}x{m['size']} ({labels})"
             + (f" from {m['source']}" if m.get("source") else "")]
    skipped = m["skipped"]
    if skipped:
        lines.append(f"skipped {len(skipped)} bad file(s):")
        lines += [f"  {s['key']}: {s['reason']}" for s in skipped[:_REPORT_MAX]]
        if len(skipped) > _REPORT_MAX:
            lines.append(f"  ... and {len(skipped) - _REPORT_MAX} more (see manifest.json)")
    if counts["ignored"]:
        lines.append(f"ignored {counts['ignored']} file(s) with other names: "
                     f"{_few(m['ignored'])}")
    return "\n".join(lines)
