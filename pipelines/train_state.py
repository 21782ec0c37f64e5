"""The `last/` training state that lets training.fit() resume where it stopped.

At the end of every epoch fit() writes, into a fold's `last/` folder, everything the next
epoch depends on: the model, the optimizer (moments, momentum buffers, step counts), the
position in the learning-rate schedule, the AMP scaler, the EMA weights, the best weights
so far with their score and epoch (early stopping counts from it), the history, and every
random state (python, numpy, torch CPU and CUDA). Resuming from it and training on gives
the same weights, bit for bit on the CPU, as never stopping.

No pickle: tensors go to `state-EEEEE.safetensors`, everything else to `state-EEEEE.json`
(python's random state as a JSON list, numpy's bit generator state as JSON). The JSON is
written second and names a token stored in the tensors' header, so a pair is complete only
when both agree; the two newest pairs are kept, so a kill or a power cut at any moment
leaves a readable state. Only one pair in SYNC_EVERY_S seconds is fsynced: a killed process
loses nothing (the page cache survives it), a power cut at most that long of training.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from safetensors import safe_open

from . import atomic, checkpoint
from .errors import UserError

if TYPE_CHECKING:
    import torch

KEEP = 2
SYNC_EVERY_S = 30.0
KILL_ENV = "PIPELINES_TEST_KILL_AT"
_PAIR = re.compile(r"^state-(\d{5})\.json$")
_last_sync: dict[str, float] = {}


@dataclass
class Resume:
    """Where fit() keeps its training state, and whose state it is.

    tag names the training (e.g. "fold 1 member 0 seed 143"); a state saved under another
    tag is ignored and replaced. labels ({"fold": 1, "member": 0}) are what the test hook
    PIPELINES_TEST_KILL_AT matches.
    """
    folder: Path
    tag: str
    labels: dict = field(default_factory=dict)

    def clear(self) -> None:
        clear(self.folder)


def clear(folder: str | os.PathLike) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _pairs(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted((int(m.group(1)) for m in map(_PAIR.match, os.listdir(folder)) if m), reverse=True)


def _names(epoch: int) -> tuple[str, str]:
    return f"state-{epoch:05d}.safetensors", f"state-{epoch:05d}.json"


def save(resume: Resume, epoch: int, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write the state after `epoch` completed epochs; keep the KEEP newest pairs."""
    from safetensors.torch import save_file

    folder = Path(resume.folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = time.monotonic()
    sync = now - _last_sync.get(str(folder), -math.inf) >= SYNC_EVERY_S
    token = secrets.token_hex(8)
    weights_name, meta_name = _names(epoch)
    tensors = _unshared(tensors)
    atomic.write_with(folder / weights_name, lambda tmp: save_file(tensors, str(tmp), metadata={"token": token}),
                      sync=sync)
    atomic.write_text(folder / meta_name, json.dumps({**meta, "tag": resume.tag, "token": token}) + "\n",
                      sync=sync)
    if sync:
        _last_sync[str(folder)] = now
    for old in _pairs(folder)[KEEP:]:
        for name in _names(old):
            (folder / name).unlink(missing_ok=True)


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, and no two sharing memory (safetensors refuses that): a copy only where needed."""
    out, seen = {}, set()
    for key, value in tensors.items():
        value = value.detach().to("cpu").contiguous()
        if value.numel() and value.untyped_storage().data_ptr() in seen:
            value = value.clone()
        if value.numel():
            seen.add(value.untyped_storage().data_ptr())
        out[key] = value
    return out


def load(resume: Resume) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The newest complete state of this tag, or None."""
    from safetensors.torch import load_file

    folder = Path(resume.folder)
    for epoch in _pairs(folder):
        weights_name, meta_name = _names(epoch)
        try:
            meta = json.loads((folder / meta_name).read_text())
            if meta.get("tag") != resume.tag:
                continue
            with safe_open(str(folder / weights_name), framework="pt") as handle:
                if (handle.metadata() or {}).get("token") != meta.get("token"):
                    continue
            return load_file(str(folder / weights_name)), meta
        except Exception:  # a torn or missing file (safetensors has its own errors): try the older pair
            continue
    return None


# --------------------------------------------------------------------------- random states

def rng_state() -> tuple[dict, dict]:
    """(tensors, JSON) of every global random state fit() depends on."""
    import torch

    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    np_state = {**np_state, "state": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                      for k, v in np_state["state"].items()}}
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    return tensors, {"python": [version, list(internal), gauss], "numpy": np_state}


def set_rng_state(tensors: dict, meta: dict) -> None:
    import torch

    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = meta["numpy"]
    key = np_state["state"].get("key")
    if isinstance(key, list):
        np_state = {**np_state, "state": {**np_state["state"], "key": np.array(key, dtype=np.uint32)}}
    np.random.set_state(np_state)
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(len(tensors)) if f"rng.cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# --------------------------------------------------------------------------- optimizer

def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    import torch

    state = optimizer.state_dict()
    tensors, other = {}, {}
    for pid, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                other.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "other": other}


def set_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    per_param: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            per_param.setdefault(int(pid), {})[key] = value
    for pid, values in meta["other"].items():
        per_param.setdefault(int(pid), {}).update(values)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in group.items()} for group in meta["param_groups"]]
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})


def prefixed(prefix: str, tensors: dict) -> dict:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict) -> dict:
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load_weights(module: torch.nn.Module, state: dict, where: str) -> None:
    """load_state_dict, with a mismatch turned into one line naming the first tensor at fault."""
    problem = checkpoint.mismatch(module, state)
    if problem is not None:
        raise UserError(f"{where}: the saved training state belongs to another model ({problem}); "
                        f"rerun with --restart to start over")
    module.load_state_dict(state)


# --------------------------------------------------------------------------- test hook

def kill_point() -> dict | None:
    """PIPELINES_TEST_KILL_AT="fold=1,epoch=3,step=5": SIGKILL this process after step 5 of
    epoch 3 (both counted from 1) of the training whose labels match; for the resume tests."""
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return None
    return {k.strip(): int(v) for k, v in (part.split("=", 1) for part in spec.split(",") if part.strip())}


def maybe_kill(point: dict | None, labels: dict, epoch: int, step: int) -> None:
    if point is None:
        return
    where = {**labels, "epoch": epoch, "step": step}
    if all(where.get(k) == v for k, v in point.items()):
        os.kill(os.getpid(), signal.SIGKILL)
