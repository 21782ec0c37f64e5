"""Device helpers in the spirit of d2l: try_gpu, try_all_gpus, and resolving "auto"."""

from __future__ import annotations

import contextlib
import os
import re

try:
    import torch
except ImportError:  # the smallest install (docs/kaggle.md): tabular families that are not networks, on the CPU
    torch = None

from .errors import UserError

NEEDS_TORCH = "pip install 'pipelines[nn]'"


def num_gpus() -> int:
    if torch is None:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def try_gpu(i: int = 0) -> torch.device:
    """GPU i if it exists, else the CPU."""
    if num_gpus() >= i + 1:
        return torch.device(f"cuda:{i}")
    return torch.device("cpu")


def try_all_gpus() -> list[torch.device]:
    """Every GPU, or [cpu] when there are none."""
    devices = [torch.device(f"cuda:{i}") for i in range(num_gpus())]
    return devices if devices else [torch.device("cpu")]


def _mps_available() -> bool:
    if torch is None:
        return False
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def resolve(spec: str = "auto") -> torch.device:
    """Turn a --device string into a torch.device: auto picks CUDA, then Apple MPS, then CPU. Without
    torch installed, "cpu" (a string) for auto and cpu, the only device there is."""
    spec = (spec or "auto").strip().lower()
    if not _DEVICE_PATTERN.match(spec):
        raise UserError(f"--device {spec!r} is not one of auto, cpu, mps, cuda, cuda:N")
    if torch is None:
        if spec in ("auto", "cpu"):
            return "cpu"
        raise UserError(f"--device {spec} needs torch, which is not installed: {NEEDS_TORCH}")
    if spec == "auto":
        if num_gpus():
            return torch.device("cuda:0")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise UserError("--device mps: Apple MPS is not available on this machine")
        return torch.device("mps")
    index = int(spec.split(":")[1]) if ":" in spec else 0
    if index >= num_gpus():
        raise UserError(f"--device {spec}: this machine has {num_gpus()} CUDA device(s)")
    return torch.device(f"cuda:{index}")


def use_deterministic() -> None:
    """Deterministic algorithms only, on every device (`--deterministic`, PIPELINES_DETERMINISTIC=1).

    On the CPU the pipelines are deterministic anyway; on GPUs this trades speed for runs
    that repeat bit for bit: cuDNN picks deterministic kernels and no benchmarking, cuBLAS
    gets a fixed workspace, and an operation with no deterministic version raises an error
    naming it instead of silently varying.
    """
    if torch is None:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def deterministic(on: bool = True):
    """use_deterministic inside the block (with on); torch's flags and the environment as they were
    after it (the Python API leaves no global state behind)."""
    if not on or torch is None:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    use_deterministic()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1], before[2]
        if before[3] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = before[3]


@contextlib.contextmanager
def cpu_threads(n: int):
    """torch's intra-op CPU threads set to n inside the block, restored after it.

    On the CPU the thread count is an input to the numbers: a matrix product split over two
    threads sums in another order than one thread, so the same fold trained by a process with
    OMP_NUM_THREADS=1 and one with two threads differs in the last bits, and folds trained in
    parallel processes would not match a one-process run. Pinning the count where it costs
    nothing (small networks) makes the result independent of the machine and the launcher.
    """
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
