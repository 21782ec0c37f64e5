"""Data path vs compute ceiling vs naive loop: training images/second of

  (a)  our pipeline: batches of the prepared uint8 cache (a read-only memmap), augmented with
       albumentations and converted in a background thread (augment.batches, what
       images/fitting.train_network uses), trained by training.fit;
  (a0) the same with the augmentation in the training thread (prefetch=0: the data path
       before the background thread);
  (b)  the same model and step on random tensors already in memory (the ceiling);
  (c)  the naive loop of most tutorials: torchvision ImageFolder decoding the JPEGs with PIL
       every epoch, torchvision transforms, DataLoader with worker processes;

measured round-robin in one process (each round runs every kind once, in a rotated order),
with the same model, optimizer step and torch threads.  Beside each throughput: the model
FLOP utilisation (counted FLOPs of a training step x images/s / measured fp32 matmul FLOP/s).
"""

from __future__ import annotations

import copy
import itertools
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from pipelines import training
from pipelines.competitions.dogs_vs_cats import data
from pipelines.images import augment, networks as models

from . import flops
from .common import DOGS, OUT, fmt, label_of, link_files, shared_train_files, stratified, table

NAIVE_WORKERS = 2
# Torch threads for every measurement. One: with two, a core taken by any other thread (ours
# making batches, or another job) stalls both OpenMP threads at every barrier; measured here
# under other jobs' load, 2-thread ceilings fell to a third of the 1-thread ones mid-run.
THREADS = 1
KINDS = ("a", "a0", "b", "c")


@dataclass
class Spec:
    label: str
    arch: str
    size: int
    batch: int
    hflip: bool
    crop_scale: float
    color_jitter: float
    steps: int          # training steps per measurement of a, a0 and b
    steps_c: int        # of c
    rounds: int
    c_every: int = 1    # c runs in every c_every-th round (it is slow and far from the others)
    width: int = 32

    @property
    def augmentation(self) -> str:
        parts = (["flip"] if self.hflip else []) + ([f"crop {self.crop_scale}"] if self.crop_scale < 1 else [])
        parts += [f"jitter {self.color_jitter}"] if self.color_jitter else []
        return " + ".join(parts) or "none"


def models_full() -> list[Spec]:
    return [Spec("lenet", "lenet", 32, 128, True, 1.0, 0.0, steps=20, steps_c=8, rounds=16, c_every=3),
            Spec("lenet", "lenet", 32, 128, True, 0.7, 0.0, steps=20, steps_c=8, rounds=16, c_every=3),
            Spec("cnn-small", "cnn-small", 64, 128, True, 0.5, 0.2, steps=5, steps_c=5, rounds=10, c_every=3,
                 width=16),
            Spec("resnet18 (timm)", "resnet18", 64, 64, True, 0.5, 0.2, steps=3, steps_c=3, rounds=6, c_every=2)]


def specs(quick: bool = False) -> list[Spec]:
    if quick:
        return [Spec("lenet", "lenet", 32, 32, True, 0.7, 0.0, steps=4, steps_c=2, rounds=2)]
    return models_full()


def build_model(spec: Spec) -> nn.Module:
    return models.build(spec.arch, spec.size, width=spec.width)


# --------------------------------------------------------------------------- batch sources

def ours(images, targets, spec: Spec, transform, norm: dict, prefetch: int, seed: int) -> Iterator:
    """Epoch after epoch of augment.batches, as images/fitting.train_network's train_batches makes them."""
    for epoch in itertools.count():
        order = np.random.default_rng(seed * 1000 + epoch).permutation(len(images))
        yield from augment.batches(images, targets, order, spec.batch, transform, norm["mean"], norm["std"],
                                   prefetch=prefetch)


def ceiling(spec: Spec, norm: dict) -> Iterator:
    """Four batches of random images (uniform uint8 pixels, normalised as the model expects:
    the value range of real inputs; N(0, 1) tensors slowed LeNet's sigmoids down by up to 5x
    at times, a ceiling too low) with random labels, made once and cycled."""
    rng = np.random.default_rng(0)
    made = [(augment.to_tensor(rng.integers(0, 256, (spec.batch, spec.size, spec.size, 3), dtype=np.uint8),
                               norm["mean"], norm["std"]),
             torch.from_numpy(rng.integers(0, 2, spec.batch))) for _ in range(4)]
    yield from itertools.cycle(made)


def naive_loader(folder: Path, spec: Spec, norm: dict):
    """What most tutorials write: ImageFolder + torchvision transforms + DataLoader."""
    from torchvision import datasets, transforms as T

    steps = [T.Resize((spec.size, spec.size))]
    if spec.crop_scale < 1:
        steps.append(T.RandomResizedCrop(spec.size, scale=(spec.crop_scale, 1.0), ratio=(3 / 4, 4 / 3)))
    if spec.hflip:
        steps.append(T.RandomHorizontalFlip())
    if spec.color_jitter:
        cj = spec.color_jitter
        steps.append(T.RandomApply([T.ColorJitter(cj, cj, cj, min(0.5, cj / 4))], p=0.8))
    steps += [T.ToTensor(), T.Normalize(norm["mean"], norm["std"])]
    dataset = datasets.ImageFolder(str(folder), transform=T.Compose(steps))
    return torch.utils.data.DataLoader(dataset, batch_size=spec.batch, shuffle=True, num_workers=NAIVE_WORKERS,
                                       generator=torch.Generator().manual_seed(0))


class Naive:
    """One DataLoader epoch per measurement: the batches made while its workers started (and
    the prefetched ones) are taken before the clock starts, so the timed batches are made at
    the loop's steady rate; the workers are shut down after it, so their leftover work does
    not slow the next measurement."""

    def __init__(self, loader):
        self.loader = loader
        self.it = None

    def start(self) -> Iterator:
        self.it = iter(self.loader)
        for _ in range(1 + NAIVE_WORKERS * (self.loader.prefetch_factor or 2)):
            next(self.it)
        return self.it

    def stop(self) -> None:
        if self.it is not None and hasattr(self.it, "_shutdown_workers"):
            self.it._shutdown_workers()
        self.it = None


def waited(source: Iterator, steps: int, box: list) -> Iterator:
    """The first `steps` items of source; adds the time spent waiting for them to box[0]."""
    for _ in range(steps):
        t0 = time.perf_counter()
        item = next(source)
        box[0] += time.perf_counter() - t0
        yield item


# --------------------------------------------------------------------------- measurement

SETTINGS = training.TrainSettings(epochs=1, lr=1e-3, weight_decay=0.05, optimizer="adamw", schedule="constant",
                                  monitor="loss")


def train_for(model: nn.Module, source: Iterator, steps: int) -> tuple[float, float, float]:
    """(wall seconds, seconds waiting for batches, CPU seconds of this process: every thread,
    not DataLoader workers) of `steps` training steps of training.fit."""
    box = [0.0]
    batches = waited(source, steps, box)
    loss_fn = nn.CrossEntropyLoss()
    t0, c0 = time.perf_counter(), time.process_time()
    training.fit(model, lambda epoch: batches, steps, loss_fn, lambda m: {"loss": 0.0}, SETTINGS,
                 torch.device("cpu"), desc="bench")
    return time.perf_counter() - t0, box[0], time.process_time() - c0


def profile_ours(model: nn.Module, source: Iterator, steps: int, rows: int = 8) -> str:
    """torch.profiler over `steps` steps of (a): the ops with the most self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        seconds, wait, _ = train_for(model, source, steps)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    out = [[f"`{e.key}`", e.count, f"{e.self_cpu_time_total / 1e3:.1f}", f"{100 * e.self_cpu_time_total / total:.1f}%"]
           for e in events[:rows]]
    return (f"{steps} steps in {seconds:.2f} s under the profiler; the training thread waited for batches "
            f"{100 * wait / seconds:.1f}% of it.\n\n"
            + table(["op (both threads)", "calls", "self CPU ms", "share"], out))


def batch_costs(images: np.ndarray, spec: Spec, transform, norm: dict, batches: int = 10) -> dict:
    """CPU milliseconds (this thread) of making one batch, by part: the best of `batches`."""
    rng = np.random.default_rng(7)
    best = {"gather": np.inf, "augment": np.inf, "to_tensor": np.inf}
    for _ in range(batches):
        index = np.sort(rng.choice(len(images), spec.batch, replace=False))
        t0 = time.thread_time()
        batch = images[index]
        t1 = time.thread_time()
        batch = augment.apply(transform, batch)
        t2 = time.thread_time()
        augment.to_tensor(batch, norm["mean"], norm["std"])
        t3 = time.thread_time()
        for part, dt in (("gather", t1 - t0), ("augment", t2 - t1), ("to_tensor", t3 - t2)):
            best[part] = min(best[part], 1000 * dt)
    return best


def profile_batches(images: np.ndarray, spec: Spec, transform, norm: dict, batches: int = 8, rows: int = 8) -> str:
    """cProfile of making `batches` batches in this thread (gather, augment, to_tensor): the
    functions with the most own time."""
    import cProfile
    import pstats

    rng = np.random.default_rng(11)
    order = rng.permutation(len(images))[:batches * spec.batch]
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in augment.batches(images, torch.zeros(len(images), dtype=torch.long), order, spec.batch, transform,
                             norm["mean"], norm["std"], prefetch=0):
        pass
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values()) or 1.0
    top = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:rows]
    out = []
    for (path, line, func), (_, calls, own, _, _) in top:
        where = f"{Path(path).parent.name}/{Path(path).name}:{line}" if path != "~" else "built-in"
        out.append([f"`{func}` ({where})", calls, f"{1000 * own / batches:.2f}", f"{100 * own / total:.1f}%"])
    return table(["function", "calls", "own ms per batch (under cProfile)", "share"], out)


def measure_model(spec: Spec, cache: data.Cache, naive_folder: Path, peak_samples: list[float]) -> dict:
    model = build_model(spec)
    norm = models.normalization(model, spec.arch)
    images = np.asarray(cache.images)
    targets = torch.from_numpy(cache.labels.astype(np.int64))
    transform = augment.build(spec.size, spec.hflip, spec.crop_scale, spec.color_jitter, seed=0)
    per_image = flops.train_step_flops(copy.deepcopy(model), spec.size)
    costs = batch_costs(images, spec, transform, norm, 4 if spec.steps < 10 else 10)
    data_profile = profile_batches(images, spec, transform, norm, 4 if spec.steps < 10 else 8)

    # the 2-thread ceiling, for the record; everything below runs with THREADS
    probe = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        train_for(model, ceiling(spec, norm), 2)
        steps = max(2, spec.steps // 2)
        seconds, _, _ = train_for(model, ceiling(spec, norm), steps)
        probe[threads] = steps * spec.batch / seconds
    threads = THREADS
    torch.set_num_threads(threads)

    naive = Naive(naive_loader(naive_folder, spec, norm))
    fresh = itertools.count()

    def source(kind: str) -> Iterator:
        """A new source for each measurement, so no batch made before it starts is counted."""
        if kind == "b":
            return ceiling(spec, norm)
        if kind == "c":
            return naive.start()
        return ours(images, targets, spec, transform, norm, augment.PREFETCH if kind == "a" else 0, next(fresh))

    def measure(kind: str, steps: int) -> tuple[float, float, float]:
        src = source(kind)
        try:
            return train_for(model, src, steps)
        finally:
            if kind == "c":
                naive.stop()
            elif kind != "b":
                src.close()  # stops the prefetch thread

    for kind in KINDS:  # warm-up: workers started, allocator and caches warm
        measure(kind, 2)
    per_round: list[dict] = []
    for r in range(spec.rounds):
        rates, waits, cpu = {}, {}, {}
        kinds = KINDS if r % spec.c_every == 0 else tuple(k for k in KINDS if k != "c")
        for kind in kinds[r % len(kinds):] + kinds[:r % len(kinds)]:
            steps = spec.steps_c if kind == "c" else spec.steps
            seconds, wait, cpu_s = measure(kind, steps)
            rates[kind], waits[kind] = steps * spec.batch / seconds, wait / seconds
            cpu[kind] = 1000 * cpu_s / (steps * spec.batch)      # CPU seconds per 1,000 images
        per_round.append({"rate": rates, "wait": waits, "cpu": cpu})
        peak_samples.append(flops.matmul_peak(threads, seconds=0.0))  # the peak, sampled through the run
    profile = None
    if spec.arch == "lenet" and spec.crop_scale < 1:
        src = source("a")
        try:
            profile = profile_ours(model, src, 40)
        finally:
            src.close()
    def median(key: str, kind: str) -> float:
        return statistics.median(r[key][kind] for r in per_round if kind in r[key])

    rate = {k: median("rate", k) for k in KINDS}
    wait = {k: median("wait", k) for k in KINDS}
    cpu = {k: median("cpu", k) for k in KINDS}
    ratio = {k: [r["rate"][k] / r["rate"]["b"] for r in per_round] for k in ("a", "a0")}
    ratio["ac"] = [r["rate"]["a"] / r["rate"]["c"] for r in per_round if "c" in r["rate"]]
    return {"spec": spec, "threads": threads, "probe": probe, "rate": rate, "wait": wait, "cpu": cpu, "costs": costs, "data_profile": data_profile, "ratio": ratio,
            "rounds": per_round, "flops": per_image, "profile": profile}


def _span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def run(quick: bool = False) -> str:
    import tempfile

    chosen = specs(quick)
    peak_s = 0.2 if quick else 1.0
    saved_threads = torch.get_num_threads()
    peaks2 = [flops.matmul_peak(2, seconds=peak_s)]
    samples = [flops.matmul_peak(THREADS, seconds=peak_s)]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-datapath-") as tmp:
        files = shared_train_files()
        if quick:
            files = stratified(files, 640)  # 20 batches: enough for the naive loop's warm-up and steps
        naive_folder = Path(tmp) / "imagefolder"
        for label, name in ((0, "cat"), (1, "dog")):
            link_files([f for f in files if label_of(f) == label], naive_folder / name)
        if quick:
            entries = data.scan(link_files(files, Path(tmp) / "flat"), "train")
            cache_root = Path(tmp) / "cache"
        else:
            entries, cache_root = data.scan(DOGS, "train"), OUT / "cache"
        caches: dict[int, data.Cache] = {}
        try:
            for spec in chosen:
                if spec.size not in caches:
                    caches[spec.size] = data.ensure_cache(entries, cache_root / f"train-{spec.size}", spec.size,
                                                          workers=2, progress=False)
                results.append(measure_model(spec, caches[spec.size], naive_folder, samples))
        finally:
            torch.set_num_threads(saved_threads)
    samples.append(flops.matmul_peak(THREADS, seconds=peak_s))
    peaks2.append(flops.matmul_peak(2, seconds=peak_s))
    return _report(add_mfu(results, max(samples)), samples, peaks2, quick)


def add_mfu(results: list[dict], peak: float) -> list[dict]:
    """MFU of every kind against the best matmul FLOP/s seen in this run at THREADS."""
    for res in results:
        res["peak"] = peak
        res["mfu"] = {k: res["flops"] * res["rate"][k] / peak for k in KINDS}
    return results


def _report(results: list[dict], samples: list[float], peaks2: list[float], quick: bool) -> str:
    rows = []
    for res in results:
        s, rate, mfu, ratio = res["spec"], res["rate"], res["mfu"], res["ratio"]
        rows.append([
            s.label, f"{s.size} px, batch {s.batch}", s.augmentation, res["threads"],
            f"{fmt(rate['b'])} ({100 * mfu['b']:.1f}%)",
            f"{fmt(rate['a'])} ({100 * mfu['a']:.1f}%)",
            f"**{statistics.median(ratio['a']):.2f}** ({_span(ratio['a'])})",
            f"{fmt(rate['a0'])} ({statistics.median(ratio['a0']):.2f})",
            f"{fmt(rate['c'])} ({100 * mfu['c']:.1f}%)",
            f"**{statistics.median(ratio['ac']):.1f}**",
            f"{res['flops'] / 1e9:.4f}",
        ])
    lenets = [r for r in results if r["spec"].arch == "lenet"]
    lenet = lenets[-1] if lenets else None
    goal_ab = all(statistics.median(r["ratio"]["a"]) >= 0.90 for r in results)
    goal_ac = bool(lenets) and all(statistics.median(r["ratio"]["ac"]) >= 3 for r in lenets)
    out = ["## Data path vs compute ceiling vs naive loop (training images/second)\n",
           "(a) ours: prepared uint8 cache (memmap) -> albumentations + `to_tensor` in a background thread "
           f"(`augment.batches`, {augment.PREFETCH} batches ahead) -> `training.fit`; (a0) the same with the "
           "augmentation in the training thread (the data path before the background thread); (b) the same "
           "model and optimizer step (AdamW) on random images already in memory as normalised float tensors (the "
           "ceiling); (c) torchvision "
           "`ImageFolder` (PIL decodes each 200 px JPEG every epoch) + torchvision transforms + `DataLoader` "
           f"with {NAIVE_WORKERS} worker processes (their start-up and the batches made during it not counted). All four run round-robin in "
           "one process (each round runs a, a0, b and, every few rounds, c, in a rotated order), with the same "
           f"model and {THREADS} torch thread (see THREADS in benchmarks/datapath.py; the 2-thread ceilings are in "
           "the second table). Throughputs are medians over the rounds; ratios are medians of the per-round ratios "
           "(range over rounds in brackets), so a load spike from other jobs hits both sides of a ratio. In brackets "
           "after a throughput: model FLOP utilisation (FLOPs of a training step x images/s / fp32 matmul FLOP/s "
           "with the same threads).\n",
           table(["model", "input", "augmentation", "torch threads", "(b) ceiling (MFU)", "(a) ours (MFU)",
                  "(a)/(b)", "(a0) in line ((a0)/(b))", "(c) naive (MFU)", "(a)/(c)",
                  "GFLOP per image (fwd + bwd)"], rows),
           f"fp32 2048x2048 matmul with {THREADS} thread: best {max(samples) / 1e9:.1f} GFLOP/s of {len(samples)} "
           f"samples taken through this benchmark (median {statistics.median(samples) / 1e9:.1f}; other jobs' load "
           f"lowers single samples), the MFU denominator. With 2 threads: {max(peaks2) / 1e9:.1f} GFLOP/s.\n"]
    detail = []
    for res in results:
        s, cpu = res["spec"], res["cpu"]
        detail.append([s.label, s.augmentation, f"{fmt(res['probe'][1])} / {fmt(res['probe'][2])}",
                       f"{100 * res['wait']['a']:.1f}%", f"{100 * res['wait']['a0']:.1f}%",
                       f"{100 * res['wait']['c']:.1f}%",
                       f"{cpu['b']:.3f} / {cpu['a']:.3f} / {cpu['a0']:.3f}", f"{cpu['b'] / cpu['a']:.2f}",
                       f"{cpu['b'] * res['rate']['b'] / 1000:.2f} / {cpu['a'] * res['rate']['a'] / 1000:.2f}",
                       f"{s.rounds} x {s.steps} steps of a, a0, b; {-(-s.rounds // s.c_every)} x {s.steps_c} of c"])
    out.append(table(["model", "augmentation", "ceiling img/s, 1 / 2 threads (probe)",
                      "(a) training thread waiting for batches",
                      "(a0) time spent making batches", "(c) waiting for the DataLoader",
                      "CPU s per 1,000 images (b) / (a) / (a0)", "(b)/(a) CPU", "cores used (b) / (a)", "rounds"],
                     detail))
    costs = []
    for res in results:
        s, c = res["spec"], res["costs"]
        step = res["cpu"]["b"] * s.batch
        total = c["gather"] + c["augment"] + c["to_tensor"]
        costs.append([s.label, s.augmentation, f"{c['gather']:.2f}", f"{c['augment']:.2f}", f"{c['to_tensor']:.2f}",
                      f"{step:.1f}", f"{100 * total / (total + step):.1f}%"])
    out.append("Making one batch, CPU ms by part (one thread, best of several), against the training step's CPU "
               "ms (from (b)):\n\n" + table(["model", "augmentation", "gather from the memmap",
                                               "augmentation", "to_tensor", "training step",
                                               "batch share of the CPU"], costs))
    out.append("CPU seconds count every thread of the process (the background thread too; not the DataLoader's "
               "worker processes). They do not depend on the load: (a)'s extra CPU over (b) is what making the "
               "batches costs. With a core to spare the background thread hides it and (a)/(b) is near 1; when "
               "other jobs take every core (Linux shares the CPU between sessions, so a second thread of ours gets "
               "no extra share: see cores used), (a)/(b) falls to about the CPU ratio (b)/(a).\n")
    missed = [f"{r['spec'].label} with {r['spec'].augmentation} ({statistics.median(r['ratio']['a']):.2f}; "
              f"CPU ratio {r['cpu']['b'] / r['cpu']['a']:.2f}, cores used {r['cpu']['a'] * r['rate']['a'] / 1000:.2f})"
              for r in results if statistics.median(r["ratio"]["a"]) < 0.90]
    lowest = min(statistics.median(r["ratio"]["a"]) for r in results)
    out.append(f"Goals: (a)/(b) >= 0.90 for every model: **{'met' if goal_ab else 'not met'}** "
               + (f"(lowest {lowest:.2f})" if goal_ab else f"for {'; '.join(missed)}")
               + f"; (a)/(c) >= 3 for LeNet: **{'met' if goal_ac else 'not met'}**.\n")
    worst = min(results, key=lambda r: statistics.median(r["ratio"]["a"]))
    out.append(f"Where making a batch goes for {worst['spec'].label} with {worst['spec'].augmentation} (the lowest "
               f"(a)/(b) here; cProfile of the batch path in one thread, gather + augmentation + to_tensor):\n\n"
               + worst["data_profile"])
    if lenet is not None and lenet["profile"]:
        out.append(f"Profile of (a) for LeNet with {lenet['spec'].augmentation} (torch.profiler, CPU; the "
                   "smallest network, so the largest data-path share):\n\n" + lenet["profile"])
    return "\n".join(out)
