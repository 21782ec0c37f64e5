"""Memory: peak resident memory while preparing and training on a data set the size of Kaggle's
full Dogs vs. Cats download (25,000 train + 12,500 test images) at 224 px.

The set is made by resampling the shared images: symbolic links named cat.N.jpg / dog.N.jpg
(train) and N.jpg (test) in a temporary folder under /tmp, which is deleted afterwards, as is
the PIPELINES_HOME holding the caches.  `python -m pipelines prepare` and `python -m pipelines
train` (fold 0, one epoch of a from-scratch cnn-small) run as child processes; their memory
is sampled from /proc every second (proportional set size, summed over the process and its
workers, split into anonymous memory and file-backed pages), and the peak RSS of each child
comes from os.wait4.  Pages of the memory-mapped cache that a process has read count in its
RSS as file-backed pages: the kernel can drop them at any time, they are not memory the
process holds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import DOGS, ROOT, Sampler, gib, label_of, shared_train_files, table

TRAIN, TEST = 25_000, 12_500
SIZE = 224


def make_set(folder: Path, n_train: int, n_test: int) -> None:
    """n_train + n_test links to the shared 200 px images, cats and dogs alternating, cycled."""
    shared = shared_train_files()
    cats, dogs = [f for f in shared if not label_of(f)], [f for f in shared if label_of(f)]
    files = [f for pair in zip(cats, dogs) for f in pair]
    (folder / "train").mkdir(parents=True)
    (folder / "test1").mkdir()
    for i in range(n_train):
        src = files[i % len(files)]
        (folder / "train" / f"{'dog' if label_of(src) else 'cat'}.{i + 1}.jpg").symlink_to(src)
    tests = sorted((DOGS / "test1").glob("*.jpg")) + files
    for i in range(n_test):
        (folder / "test1" / f"{i + 1}.jpg").symlink_to(tests[i % len(tests)])


def run_child(argv: list[str], env: dict) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with Sampler(proc.pid) as sampler:
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[2:])} failed ({proc.returncode}):\n{output[-3000:]}")
    return {"seconds": seconds, "maxrss": usage.ru_maxrss * 1024, "peak": dict(sampler.peak),
            "samples": sampler.samples, "output": output}


def run(quick: bool = False) -> str:
    n_train, n_test = (400, 200) if quick else (TRAIN, TEST)
    size = 64 if quick else SIZE
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-", dir="/tmp"))
    try:
        source, home = tmp / "dogs", tmp / "home"
        make_set(source, n_train, n_test)
        env = {**os.environ, "PIPELINES_HOME": str(home), "PIPELINES_QUIET": "1", "OMP_NUM_THREADS": "1"}
        common = ["--data", str(source), "--config", "cnn-small", "--set", f"image_size={size}"]
        baseline = run_child([sys.executable, "-c", "import pipelines.cli, time; "
                              "from pipelines.competitions.dogs_vs_cats import task; time.sleep(1)"], env)
        prepare = run_child([sys.executable, "-m", "pipelines", "prepare", "dogs-vs-cats", *common], env)
        caches = home / "data" / "dogs-vs-cats" / "cache" / str(size)
        on_disk = {split: (caches / split / "images.npy").stat().st_size for split in ("train", "test")}
        train = run_child([sys.executable, "-m", "pipelines", "train", "dogs-vs-cats", *common,
                           "--set", "epochs=1", "--set", "width=4", "--set", "tta_flip=false",
                           "--folds", "0", "--name", "memory", "--device", "cpu"], env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = sum(on_disk.values())
    rows = []
    for name, r in (("prepare (2 decoding workers)", prepare), ("train fold 0, 1 epoch, predict valid + test", train)):
        p = r["peak"]
        rows.append([name, f"{r['seconds']:.0f}", gib(r["maxrss"]), gib(p["Pss"]), gib(p["Pss_Anon"]),
                     gib(p["Pss_File"]), f"{100 * p['Pss_Anon'] / total:.0f}%"])
    n = n_train + n_test
    return (f"## Memory: a Kaggle-size data set ({n_train:,} train + {n_test:,} test images) at {size} px\n\n"
            f"Images: the shared 200 px JPEGs resampled (links, cycled) into a temporary folder. Caches on disk: "
            f"train {gib(on_disk['train'])} + test {gib(on_disk['test'])} = **{gib(total)}** (uint8 memmaps). "
            f"Prepare decoded and cached {n:,} images in {prepare['seconds']:.0f} s ({n / prepare['seconds']:,.0f} "
            f"images/s at {size} px, process start and source scan included). Training: config `cnn-small` with "
            f"`image_size={size} width=4 epochs=1 tta_flip=false`, fold 0 ({n_train * 4 // 5:,} training images), "
            "`OMP_NUM_THREADS=1`.\n\n"
            + table(["step", "wall s", "peak RSS of the largest process", "peak PSS, all processes",
                     "of it anonymous (held)", "of it file-backed (cache pages, reclaimable)",
                     "anonymous peak / cache size"], rows)
            + "\nThe cache is memory-mapped, never loaded whole: what the processes hold (anonymous memory) "
              "stays a fraction of the cache, and the file-backed part is page cache the kernel reclaims "
              "under pressure. Of the anonymous memory, "
              f"{gib(baseline['peak']['Pss_Anon'])} per process is the interpreter with torch and the other "
              "libraries loaded (a process that only imports the package); training also copies the fold's "
              "validation images into memory (`images[valid_index]` in `train` and `fitting.train_network`: "
              f"{n_train // 5:,} x {size}x{size}x3 bytes = {gib(n_train // 5 * size * size * 3)}).\n")
