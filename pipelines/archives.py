"""Archives other than zips: 7z, as Kaggle ships CIFAR-10's images (train.7z, test.7z), read with py7zr.

Members follow the rules of Kaggle's zips (safe_member): a member with an absolute path or a '..'
stops the extraction before anything is written; __MACOSX/ and hidden files are skipped, and so are
directory entries (made as their files need them) and links (only regular files are written).

A 7z archive is usually solid (one compressed stream for every member), so reading it member by
member means decompressing it again each time: it is extracted once, whole, into a folder.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from .errors import DiskFull, UserError
from .progress import bar

SEVEN_ZIP = ".7z"


class Unreadable(Exception):
    """The archive cannot be read (damaged, truncated, encrypted, or a method py7zr lacks); its
    message is the reason, on one line."""


def is_7z(path: str | Path) -> bool:
    return Path(path).suffix.lower() == SEVEN_ZIP


def safe_member(archive: str | Path, member: str) -> PurePosixPath | None:
    """The member's relative path, None for what is skipped, UserError for a path escaping the folder."""
    path = PurePosixPath(member.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", member):
        raise UserError(f"{archive}: refusing member {member!r} (absolute path or '..')")
    if "__MACOSX" in path.parts or path.name.startswith("."):
        return None
    return path


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _write_error(exc: OSError) -> bool:
    """Whether an OSError is the system refusing a write (no space, read-only, permission), not
    the archive's fault."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def extract(archive: str | Path, into: str | Path) -> int:
    """Write the archive's regular files (safe_member) under `into`, at their paths in the archive;
    returns how many. Raises UserError for an unsafe member (before writing anything), Unreadable
    for an archive py7zr cannot read, DiskFull when the disk fills, OSError when `into` refuses
    the write."""
    import py7zr
    from py7zr.callbacks import ExtractCallback

    archive, into = Path(archive), Path(into).resolve()
    progress = None

    class Progress(ExtractCallback):
        def report_start_preparation(self):
            pass

        def report_start(self, processing_file_path, processing_bytes):
            pass

        def report_update(self, decompressed_bytes):
            pass

        def report_end(self, processing_file_path, wrote_bytes):
            progress.update(1)

        def report_warning(self, message):
            pass

        def report_postprocess(self):
            pass

    try:
        with py7zr.SevenZipFile(archive, "r") as seven:
            infos = seven.list()
            targets = []
            for info in infos:
                relative = safe_member(archive, info.filename)
                if relative is not None and info.is_file:
                    targets.append(info.filename)
            if targets:
                progress = bar(desc=f"unpacking {archive.name}", total=len(infos), unit="file")
                try:
                    seven.extract(path=into, targets=targets, callback=Progress())
                finally:
                    progress.close()
    except UserError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(into, exc) from None
        if _write_error(exc):
            raise
        raise Unreadable(_reason(exc)) from None
    except Exception as exc:  # py7zr's own errors, lzma's, and what a damaged header makes it raise
        raise Unreadable(_reason(exc)) from None
    return len(targets)


def unpack_beside(archive: str | Path, folder: str | Path) -> int:
    """Extract `archive` once into `folder`, which does not exist yet; returns the number of files.

    Everything lands in a hidden temporary folder beside `folder` first, renamed into place only
    once complete, so an interrupted unpack never leaves a `folder` that looks complete. When the
    archive holds a single folder of `folder`'s name (train.7z holding train/1.png ...), that
    folder becomes `folder`; otherwise the archive's top level does. When another process made
    `folder` meanwhile, its copy is kept. Errors are extract's; OSError when the parent folder
    cannot be written (read-only)."""
    archive, folder = Path(archive), Path(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.unpacking-", dir=folder.parent))
    try:
        count = extract(archive, tmp)
        inner = tmp / folder.name
        source = inner if [p.name for p in tmp.iterdir()] == [folder.name] and inner.is_dir() else tmp
        if source == tmp:  # mkdtemp's folder is private (0700): give it the usual permissions
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)
        try:
            os.rename(source, folder)
        except OSError:
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return count
