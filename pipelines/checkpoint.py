"""Fold checkpoints: weights in safetensors, everything else in JSON.

Nothing is unpickled on load, so a checkpoint from a stranger cannot run code. Tensors are torch's
where torch is installed, else numpy arrays (the tabular families that are not networks need only
numpy: docs/kaggle.md, the smallest install).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import atomic
from .errors import UserError

if TYPE_CHECKING:
    import torch

WEIGHTS = "model.safetensors"
META = "meta.json"


def save(folder: str | Path, state_dict: dict[str, torch.Tensor], meta: dict) -> None:
    """Write the weights, then the metadata; meta.json marks a complete checkpoint."""
    folder = Path(folder)
    if all(isinstance(v, np.ndarray) for v in state_dict.values()):
        from safetensors.numpy import save_file

        tensors = {k: np.ascontiguousarray(v) for k, v in state_dict.items()}
    else:
        from safetensors.torch import save_file

        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    atomic.write_with(folder / WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
    atomic.write_json(folder / META, meta)


def load(folder: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    folder = Path(folder)
    meta_path, weights_path = folder / META, folder / WEIGHTS
    if not meta_path.exists() or not weights_path.exists():
        raise UserError(f"{folder}: no complete checkpoint ({WEIGHTS} and {META} expected)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{meta_path}: not valid JSON") from None
    try:
        from safetensors.torch import load_file
        options = {"device": str(device)}
    except ImportError:   # no torch here: numpy arrays
        from safetensors.numpy import load_file
        options = {}
    try:
        state = load_file(str(weights_path), **options)
    except Exception as exc:  # safetensors raises its own error types
        raise UserError(f"{weights_path}: cannot read weights ({exc})") from None
    return state, meta


def as_numpy(tensor) -> np.ndarray:
    """A loaded tensor as a numpy array (torch's or already numpy's)."""
    return tensor if isinstance(tensor, np.ndarray) else tensor.detach().cpu().numpy()


def load_meta(folder: str | Path) -> dict:
    path = Path(folder) / META
    if not path.exists():
        raise UserError(f"{path}: checkpoint metadata not found")
    return json.loads(path.read_text())


def mismatch(module: torch.nn.Module, state: dict, strict: bool = True) -> str | None:
    """What stops `state` from loading into `module`, naming the first tensor at fault; None if it fits."""
    own = module.state_dict()
    for key, value in own.items():
        if key not in state:
            if strict:
                return f"{key} is missing"
            continue
        if tuple(state[key].shape) != tuple(value.shape):
            return f"{key} has shape {tuple(state[key].shape)} there, {tuple(value.shape)} in the model"
    extra = sorted(set(state) - set(own))
    return f"{extra[0]} is not in the model" if extra else None
