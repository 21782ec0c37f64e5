"""Model FLOP utilisation: FLOPs of a training step (torch.utils.flop_counter) and the
machine's measured fp32 matmul FLOP/s, the denominator of every MFU figure.

`python -m benchmarks.run flops` prints the counts and the matmul peak at 1 and 2 threads;
the data-path benchmark measures the peak again in its own run and writes each model's
MFU beside its throughput.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .common import table


def train_step_flops(model: nn.Module, size: int, batch: int = 8) -> float:
    """FLOPs of one training step (forward + backward) per image, counted on a batch.

    FlopCounterMode counts matrix multiplies and convolutions (2 FLOPs per multiply-add),
    not element-wise work (activations, norms, pooling, the optimizer), as MFU figures do."""
    was = model.training
    model.train()
    x = torch.randn(batch, 3, size, size)
    y = torch.zeros(batch, dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter:
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    model.train(was)
    return counter.get_total_flops() / batch


def forward_flops(model: nn.Module, size: int, batch: int = 2) -> float:
    """FLOPs of one inference forward pass per image."""
    was = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(batch, 3, size, size))
    model.train(was)
    return counter.get_total_flops() / batch


def matmul_peak(threads: int, n: int = 2048, seconds: float = 1.0) -> float:
    """fp32 FLOP/s of an n x n matmul with `threads` torch threads (best of repeated timings)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        torch.mm(a, b, out=out)  # warm-up
        best, spent = float("inf"), 0.0
        while spent < seconds or best == float("inf"):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            dt = time.perf_counter() - t0
            best, spent = min(best, dt), spent + dt
        return 2.0 * n ** 3 / best
    finally:
        torch.set_num_threads(saved)


def run(quick: bool = False) -> str:
    from . import datapath

    seconds = 0.2 if quick else 1.5
    peaks = {t: matmul_peak(t, n=1024 if quick else 2048, seconds=seconds) for t in (1, 2)}
    rows, seen = [], set()
    for spec in datapath.specs(quick):
        if (spec.arch, spec.size) in seen:
            continue
        seen.add((spec.arch, spec.size))
        model = datapath.build_model(spec)
        rows.append([spec.label, f"{spec.size} px", f"{train_step_flops(model, spec.size) / 1e9:.3f}",
                     f"{forward_flops(model, spec.size) / 1e9:.3f}"])
    n = 1024 if quick else 2048
    return ("## Model FLOPs and the machine's matmul peak\n\n"
            f"fp32 {n}x{n} matmul (`torch.mm`, best of repeats for {seconds} s): "
            f"**{peaks[1] / 1e9:.1f} GFLOP/s with 1 thread, {peaks[2] / 1e9:.1f} GFLOP/s with 2 threads**. "
            "FLOPs counted by `torch.utils.flop_counter.FlopCounterMode` (matmuls and convolutions, "
            "2 FLOPs per multiply-add; element-wise work not counted).\n\n"
            + table(["model", "input", "GFLOP per training image (fwd + bwd)", "GFLOP per inference image"], rows))
