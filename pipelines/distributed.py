"""Data-parallel training with PyTorch's own engine: torchrun starts the processes, this module
finds them.

Under `torchrun` each process has RANK, LOCAL_RANK and WORLD_SIZE in its environment (as
nanoGPT reads them). `setup()` then joins the process group (NCCL on GPUs, gloo on the CPU) and
gives the process its device (cuda:LOCAL_RANK, or the CPU); training.fit wraps the model in
DistributedDataParallel. Everything else here is a helper for the few places where ranks must
agree or exchange data: a rank's share of a batch or of the rows to predict, all-reduced sums,
gathered predictions in the original row order, and "rank 0 decides, the others follow".

Without torchrun (or with one process) every helper is a no-op: rank 0 of a world of 1.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

import numpy as np

from .errors import UserError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
TIMEOUT_ENV = "PIPELINES_DIST_TIMEOUT_MIN"   # minutes a collective may wait (rank 0 building a cache, ...)
_device = None                               # torch.device where collectives put their tensors (NCCL: the GPU)


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def launched() -> bool:
    """Started by torchrun (or Slurm + torchrun) with more than one process."""
    return _env_int("WORLD_SIZE", 1) > 1


def refuse_launched(why: str) -> None:
    """Stop with one line when started by torchrun with several processes where data parallelism
    does not apply (each process would train the same folds and write the same files)."""
    if launched():
        raise UserError(f"several torchrun processes (WORLD_SIZE={os.environ.get('WORLD_SIZE')}): {why}; "
                        f"data-parallel training is for image configs with recipe: train, in any image "
                        f"competition. Run one process, or folds in parallel: one process per --folds set, "
                        f"all with the same --name")


def active() -> bool:
    """A process group of more than one process is up."""
    if sys.modules.get("torch") is None:
        return False
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    if not active():
        return 0
    import torch.distributed as dist
    return dist.get_rank()


def world_size() -> int:
    if not active():
        return 1
    import torch.distributed as dist
    return dist.get_world_size()


def local_rank() -> int:
    return _env_int("LOCAL_RANK", 0) if active() else 0


def is_main() -> bool:
    """Rank 0: the only process that writes files and prints."""
    return rank() == 0


def device_for(spec: str) -> torch.device:
    """The device of this process under torchrun: cuda:LOCAL_RANK (--device auto or cuda with GPUs),
    or the CPU (--device cpu, or no GPU)."""
    import torch
    from .device import num_gpus

    spec = (spec or "auto").strip().lower()
    local = _env_int("LOCAL_RANK", 0)
    if spec == "cpu" or (spec == "auto" and not num_gpus()):
        return torch.device("cpu")
    if spec in ("auto", "cuda"):
        if local >= num_gpus():
            raise UserError(f"torchrun process LOCAL_RANK={local} has no GPU of its own (this node has "
                            f"{num_gpus()}): use --nproc_per_node <= {num_gpus()} (NPROC=...), or --device cpu")
        return torch.device(f"cuda:{local}")
    raise UserError(f"--device {spec} under torchrun: each process takes cuda:LOCAL_RANK; pass --device cuda "
                    f"(or auto), or --device cpu for gloo on the CPU")


def setup(spec: str = "auto") -> torch.device:
    """Join the process group when started by torchrun with several processes, and return this
    process's device; otherwise just resolve --device."""
    global _device
    from .device import resolve

    if not launched():
        return resolve(spec)
    import torch
    import torch.distributed as dist

    device = device_for(spec)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        minutes = _env_int(TIMEOUT_ENV, 120)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=minutes))
    _device = device
    return device


def backend() -> str | None:
    import torch.distributed as dist
    return dist.get_backend() if active() else None


def describe(device) -> str:
    """The device as a run records it: "cpu", or under torchrun "cuda:0 x4 (nccl)" (rank 0's device,
    the number of processes and the backend)."""
    return str(device) + (f" x{world_size()} ({backend()})" if active() else "")


def cleanup() -> None:
    """Leave the process group (the end of a command)."""
    global _device
    if sys.modules.get("torch") is None:  # a command that never used torch (leaderboard, ...)
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _device = None


def barrier() -> None:
    import torch
    import torch.distributed as dist
    if active():
        if backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


@contextlib.contextmanager
def main_first(local: bool = True) -> Iterator[None]:
    """The block runs on the (node-local) rank 0 first, then on the others: e.g. building a cache
    once per node, which the others then reuse."""
    first = (local_rank() if local else rank()) == 0
    if not first:
        barrier()
    yield
    if first:
        barrier()


def _collective_device() -> torch.device:
    import torch
    return _device if (_device is not None and backend() == "nccl") else torch.device("cpu")


def all_reduce_sum(values) -> np.ndarray:
    """Element-wise sum over the ranks of a float vector (float64)."""
    import torch
    import torch.distributed as dist

    array = np.asarray(values, dtype=np.float64)
    if not active():
        return array
    tensor = torch.from_numpy(array.copy()).to(_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy()


def all_gather_object(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order (in memory between the processes; nothing is unpickled
    from a file)."""
    import torch.distributed as dist

    if not active():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: T) -> T:
    """Rank 0's `obj` on every rank."""
    import torch.distributed as dist

    if not active():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0, device=_collective_device() if backend() == "nccl" else None)
    return box[0]


def from_main(fn: Callable[[], T]) -> T:
    """fn() run on rank 0 only, its result (or its UserError) on every rank: decisions that must
    agree (is this fold finished? which run folder?) and files only rank 0's node may have."""
    if not active():
        return fn()
    value, error = None, None
    if is_main():
        try:
            value = fn()
        except UserError as exc:
            error = (str(exc), exc.exit_code)
    value, error = broadcast_object((value, error))
    if error is not None:
        exc = UserError(error[0])
        exc.exit_code = error[1]
        exc.from_main = True  # the CLI prints it once, on rank 0
        raise exc
    return value


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (batch-norm statistics) on every rank, so all ranks evaluate and keep the
    same model. DDP keeps the parameters equal; plain BatchNorm's running statistics drift apart
    because each rank sees its own part of the batch."""
    import torch.distributed as dist

    if not active():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


# --------------------------------------------------------------------------- sharding

def rank_slice(n: int) -> slice:
    """This rank's contiguous part of n rows (np.array_split boundaries): concatenating the ranks'
    parts in rank order gives the rows back in their original order."""
    world, r = world_size(), rank()
    return slice(n * r // world, n * (r + 1) // world)


def gather_rows(local: np.ndarray) -> np.ndarray:
    """The ranks' `rank_slice` parts of an array, put back together in the original row order,
    on every rank."""
    if not active():
        return np.asarray(local)
    parts = all_gather_object(np.asarray(local))
    return np.concatenate(parts) if parts else np.asarray(local)


def per_rank_batch(batch_size: int) -> int:
    """The batch each rank trains on, so that the global batch (all ranks together, one optimizer
    step) stays `batch_size` and runs on any number of processes compare."""
    world = world_size()
    if batch_size % world:
        raise UserError(f"batch_size={batch_size} does not divide among {world} processes; use a multiple of "
                        f"{world} (the global batch stays batch_size: each process takes batch_size / {world})")
    return batch_size // world


def shard_order(order: np.ndarray, batch_size: int) -> np.ndarray:
    """This rank's part of one epoch: the epoch's order is cut into global batches of batch_size
    (as on one process), and each global batch into world_size consecutive equal parts, this rank
    taking part `rank`; consecutive slices of per_rank_batch(batch_size) of the result are this
    rank's batches. Every rank computes the same epoch order (a function of seed and epoch), so the
    ranks' parts are disjoint and together are the single-process epoch, step by step. A last
    global batch with fewer rows than processes is filled up from the epoch's start (as torch's
    DistributedSampler pads), so no rank ever has an empty step."""
    world = world_size()
    order = np.asarray(order)
    if world == 1:
        return order
    per = per_rank_batch(batch_size)
    parts = []
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        if len(batch) < world:
            batch = np.concatenate([batch, order[:world - len(batch)]])
        if len(batch) == batch_size:
            parts.append(batch[rank() * per:(rank() + 1) * per])
        else:
            parts.append(np.array_split(batch, world)[rank()])
    return np.concatenate(parts) if parts else order[:0]


def rank_seed(seed: int) -> int:
    """A random seed for this rank's own draws (augmentation): `seed` itself on rank 0 (so one
    process is unchanged), a different, reproducible one on every other rank."""
    r = rank()
    if r == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), r]).generate_state(1)[0] & 0x7FFFFFFF)


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of n_rows: the same on every rank and on one process."""
    return (n_rows + batch_size - 1) // batch_size
