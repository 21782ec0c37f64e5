"""Shared helpers of the benchmarks: paths, load averages, Markdown tables, temporary homes,
subsets of the shared images as folders of links."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent
# The real competition files in Kaggle's layout (house-prices/, dogs-vs-cats/ with train/, test1/,
# originals/): PIPELINES_BENCH_DATA, by default ../shared/data beside the repository.
SHARED = Path(os.environ.get("PIPELINES_BENCH_DATA") or ROOT.parent / "shared" / "data")
DOGS = SHARED / "dogs-vs-cats"
HOUSE = SHARED / "house-prices"
OUT = Path(__file__).resolve().parent / "out"      # git-ignored: caches reused between runs


def loadavg() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on Linux/macOS
        return "n/a"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def fmt(x: float, digits: int = 0) -> str:
    """1234.5 -> '1,234' (digits=0), 0.1234 -> '0.12' (digits=2)."""
    return f"{x:,.{digits}f}"


@contextlib.contextmanager
def temp_home(prefix: str = "bench-") -> Iterator[Path]:
    """A temporary PIPELINES_HOME (data/, runs/ go there), quiet progress bars; restored after."""
    saved = {k: os.environ.get(k) for k in ("PIPELINES_HOME", "PIPELINES_QUIET")}
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["PIPELINES_HOME"] = str(folder)
    os.environ["PIPELINES_QUIET"] = "1"
    try:
        yield folder
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(folder, ignore_errors=True)


def shared_train_files() -> list[Path]:
    """The shared 200 px training JPEGs, sorted by name."""
    return sorted((DOGS / "train").glob("*.jpg"))


def label_of(path: Path) -> int:
    return 1 if path.name.startswith("dog.") else 0


def stratified(files: Sequence[Path], n: int, seed: int = 0) -> list[Path]:
    """n files, half cats and half dogs, drawn at random (fixed seed); sorted by name."""
    import numpy as np

    rng = np.random.default_rng(seed)
    picked: list[Path] = []
    for label, take in ((0, n // 2), (1, n - n // 2)):
        group = [f for f in files if label_of(f) == label]
        picked += [group[i] for i in sorted(rng.choice(len(group), size=min(take, len(group)), replace=False))]
    return sorted(picked, key=lambda p: p.name)


def link_files(files: Sequence[Path], folder: Path, names: Sequence[str] | None = None) -> Path:
    """Symbolic links to `files` in `folder` (under their own names, or `names`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        (folder / (names[i] if names is not None else f.name)).symlink_to(f)
    return folder


def warm_files(files: Sequence[Path]) -> int:
    total = 0
    for f in files:
        total += len(f.read_bytes())
    return total


class Sampler:
    """Samples the memory of a process and its descendants every `every` seconds (Linux
    /proc/PID/smaps_rollup): peaks of the summed PSS, anonymous PSS and file-backed PSS.
    Reading smaps_rollup walks the page tables (a large memmap: milliseconds of CPU), hence
    one sample a second."""

    FIELDS = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Pss_Shmem")

    def __init__(self, pid: int, every: float = 1.0):
        self.pid, self.every = pid, every
        self.peak = {f: 0 for f in self.FIELDS}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _tree(self) -> list[int]:
        pids, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as fh:
                        todo += [int(c) for c in fh.read().split()]
            except OSError:
                continue
        return pids

    def _run(self) -> None:
        while not self._stop.is_set():
            total = {f: 0 for f in self.FIELDS}
            for pid in self._tree():
                try:
                    with open(f"/proc/{pid}/smaps_rollup") as fh:
                        for line in fh:
                            key, _, rest = line.partition(":")
                            if key in total:
                                total[key] += int(rest.split()[0]) * 1024
                except (OSError, ValueError, IndexError):
                    continue
            for f in self.FIELDS:
                self.peak[f] = max(self.peak[f], total[f])
            self.samples += 1
            self._stop.wait(self.every)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"
