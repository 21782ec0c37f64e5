"""One training loop for every torch model.

AdamW/Adam/SGD, warm-up then cosine decay, EMA of weights, early stopping on a
validation score, gradient clipping, mixed precision (bf16, else fp16 with a gradient scaler),
channels_last, cudnn.benchmark and optional torch.compile on GPUs, DistributedDataParallel
under torchrun (distributed.py), and progress output (progress.py) that stays quiet under CI.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from . import budget, distributed, progress, train_state
from .errors import UserError
from .train_state import Resume


@dataclass
class TrainSettings:
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"          # adam | adamw | sgd
    momentum: float = 0.9
    schedule: str = "cosine"          # cosine | constant
    warmup_epochs: float = 0.0
    patience: int = 0                 # epochs without improvement before stopping; 0 = never stop early
    ema: float = 0.0                  # EMA decay per step; 0 = off
    grad_clip: float = 0.0
    amp: bool = True                  # mixed precision, used only on CUDA (precision auto)
    channels_last: bool = False       # used on CUDA (CHANNELS_LAST_DEVICES)
    precision: str = "auto"           # auto: bf16 where supported, else fp16 + GradScaler, on CUDA; fp32 elsewhere.
                                      # bf16 (any device, the CPU too) | fp16 (CUDA) | fp32
    compile: bool = False             # torch.compile the training forward (the model, DDP-wrapped when distributed)
    sync_bn: bool = True              # DDP on GPUs: batch norm over the global batch (SyncBatchNorm; GPUs only)
    monitor: str = "loss"             # key of evaluate()'s dict; lower is better
    keep: str = "best"                # best: the weights of the best epoch; last: those of the last epoch


@dataclass
class FitResult:
    best_state: dict
    best_score: float
    best_epoch: int
    epochs_run: int
    history: list[dict] = field(default_factory=list)


CHANNELS_LAST_DEVICES = {"cuda"}  # where channels_last is used when asked for (tests add "cpu")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_NOT_CHECKED = {"compile"}         # settings a resumed training may change: they do not change the result


quiet = progress.quiet  # progress bars and heartbeats off under CI or when PIPELINES_QUIET is set


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    # No weight decay on biases and norm parameters, as timm and nanoGPT do.
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": settings.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if settings.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum, nesterov=settings.momentum > 0)
    if settings.optimizer == "adam":
        # Plain Adam adds weight decay to the gradient (L2), as d2l's recipe does.
        return torch.optim.Adam(groups, lr=settings.lr)
    return torch.optim.AdamW(groups, lr=settings.lr)


def amp_dtype(settings: TrainSettings, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the training forward, or None for fp32 (see TrainSettings.precision)."""
    precision = settings.precision
    if precision not in PRECISIONS:
        raise UserError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "fp32" or (precision == "auto" and not settings.amp):
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise UserError(f"precision=fp16 needs a CUDA device (it trains with a gradient scaler); on {device.type} "
                            f"use bf16 or fp32")
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def configure_backends(device: torch.device) -> None:
    """CUDA speed switches: cudnn.benchmark (autotuned convolutions for fixed shapes) and TF32
    matmuls, both off while deterministic algorithms are on (--deterministic)."""
    if device.type != "cuda":
        return
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cuda.matmul.allow_tf32 = not deterministic
    torch.backends.cudnn.allow_tf32 = not deterministic


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class EMA:
    """Exponential moving average of a model's weights (and a copy of its buffers)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        # Warm-up of the decay, (1 + n) / (10 + n), as TensorFlow's and timm's EMAs do: without it
        # the average keeps the random initial weights for ~1/(1 - decay) steps, while the
        # batch-norm statistics (copied) already belong to the trained weights.
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for ema_value, value in zip(self.module.state_dict().values(), model.state_dict().values()):
            if ema_value.dtype.is_floating_point:
                ema_value.lerp_(value.detach(), 1.0 - decay)
            else:
                ema_value.copy_(value)


def fit(model: nn.Module,
        train_batches: Callable[[int], Iterable],
        steps_per_epoch: int,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        evaluate: Callable[[nn.Module], dict],
        settings: TrainSettings,
        device: torch.device,
        desc: str = "train",
        on_epoch: Callable[[dict], None] | None = None,
        resume: Resume | None = None) -> FitResult:
    """Train `model`; keep the weights of the best epoch by evaluate()[monitor].

    train_batches(epoch) yields (inputs, targets) on any device; evaluate(model)
    returns a dict of validation figures, computed in eval mode. train_batches must
    depend only on the epoch (and fixed seeds), so that a resumed run sees the same data.

    With `resume`, the full training state is saved to resume.folder after every epoch
    (train_state.py), and a state saved there under the same tag is picked up first: the
    run continues after its last completed epoch as if it had never stopped.

    Under torchrun (distributed.active()) every rank calls fit with its own shard of each global
    batch from train_batches (distributed.shard_order) and the same steps_per_epoch; the model is
    wrapped in DistributedDataParallel (SyncBatchNorm on GPUs with sync_bn), the epoch's training
    loss is all-reduced, evaluate() must return the same figures on every rank (the dogs task
    all-reduces them), and only rank 0 writes the resume state, with every rank's random states
    in it: a run resumes on the same number of processes.
    """
    model.to(device)
    use_cuda = device.type == "cuda"
    configure_backends(device)
    memory_format = torch.channels_last if (settings.channels_last and device.type in CHANNELS_LAST_DEVICES) else None
    if memory_format is not None:
        model.to(memory_format=memory_format)
    world = distributed.world_size()
    if world > 1 and use_cuda and settings.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the BN children in place
    dtype = amp_dtype(settings, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    optimizer = make_optimizer(model, settings)
    total_steps = settings.epochs * steps_per_epoch
    warmup_steps = int(settings.warmup_epochs * steps_per_epoch)
    ema = EMA(model, settings.ema) if settings.ema > 0 else None

    best_score, best_epoch, best_state, history = math.inf, -1, None, []
    step, start_epoch, stopped = 0, 0, False
    settings_values = dataclasses.asdict(settings)
    if resume is not None:
        loaded = distributed.from_main(lambda: train_state.load(resume))  # rank 0 reads, every rank gets it
        if loaded is None:
            if distributed.is_main():
                resume.clear()  # nothing of this training: drop any other training's state
        else:
            tensors, meta = loaded
            _check_settings(resume, meta["settings"], settings_values)
            saved_world = int(meta.get("world_size", 1))
            if saved_world != world:
                raise UserError(f"{resume.folder}: this training state was saved by a run on {saved_world} "
                                f"process(es), this one has {world}; resume it with the same number of processes "
                                f"(torchrun --nproc_per_node, make NPROC=...) or rerun with --restart")
            where = str(resume.folder)
            train_state.load_weights(model, train_state.unprefixed("model", tensors), where)
            train_state.set_optimizer_state(optimizer, tensors, meta["optimizer"])
            if meta.get("scaler"):
                scaler.load_state_dict(meta["scaler"])
            if ema is not None:
                train_state.load_weights(ema.module, train_state.unprefixed("ema", tensors), where)
                ema.updates = int(meta["ema_updates"])
            if meta["best_epoch"] > 0:
                best_state = {k: v.to(device) for k, v in train_state.unprefixed("best", tensors).items()}
            best_score, best_epoch = float(meta["best_score"]), int(meta["best_epoch"])
            history, step, start_epoch = meta["history"], int(meta["step"]), int(meta["epoch"])
            stopped = bool(meta["stopped"])
            r = distributed.rank()
            if r == 0:
                train_state.set_rng_state(tensors, meta["rng"])
            else:  # each rank goes on with its own random states
                train_state.set_rng_state(train_state.unprefixed(f"rank{r}", tensors), meta["rng_ranks"][r - 1])
    net = model  # what the training step calls: DDP-wrapped and/or compiled
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[device.index] if use_cuda else None)
    if settings.compile:
        net = torch.compile(net)
    kill_at = train_state.kill_point() if resume is not None else None
    bar = progress.bar(range(start_epoch, settings.epochs if not stopped else start_epoch), desc=desc,
                       initial=start_epoch, total=settings.epochs, unit="epoch", disable=not distributed.is_main())
    for epoch in bar:
        if world == 1:  # a time budget (budget.py) holds for one process; ranks never stop apart
            budget.before_epoch(epoch, settings.epochs, [h["seconds"] for h in history], desc or "training")
        model.train()
        started, loss_sum, seen = time.perf_counter(), 0.0, 0
        for batch, (inputs, targets) in enumerate(train_batches(epoch), 1):
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            if memory_format is not None and inputs.ndim == 4:
                inputs = inputs.contiguous(memory_format=memory_format)
            factor = lr_factor(step, total_steps, warmup_steps, settings.schedule)
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * factor
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = loss_fn(net(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if settings.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update(model)
            loss_sum += float(loss.detach()) * len(targets)
            seen += len(targets)
            step += 1
            if kill_at is not None:
                train_state.maybe_kill(kill_at, resume.labels, epoch + 1, batch)
            progress.poke(bar, f"batch {batch}/{steps_per_epoch}")  # a heartbeat in a long epoch (logs only)
        if world > 1:
            loss_sum, seen = distributed.all_reduce_sum([loss_sum, seen])
        scored_model = ema.module if ema is not None else model
        scored_model.eval()
        distributed.broadcast_buffers(scored_model)  # every rank scores and keeps rank 0's BN statistics
        with torch.no_grad():
            figures = evaluate(scored_model)
        figures = distributed.broadcast_object(figures)  # one decision (best epoch, early stop) for all ranks
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(1, seen),
                  "seconds": time.perf_counter() - started,
                  **{f"valid_{k}": float(v) for k, v in figures.items()}}
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        score = float(figures[settings.monitor])
        if score < best_score or settings.keep == "last":
            best_score, best_epoch = score, epoch + 1
            best_state = {k: v.detach().clone() for k, v in scored_model.state_dict().items()}
        bar.set_postfix(train=f"{record['train_loss']:.4f}", valid=f"{score:.4f}", best=f"{best_score:.4f}")
        stop = bool(settings.patience and epoch + 1 - best_epoch >= settings.patience)
        if resume is not None:
            _save_state(resume, epoch + 1, step, stop, model, optimizer, scaler, ema, best_state,
                        best_score, best_epoch, history, settings_values)
        if stop:
            break
    bar.close()
    return FitResult(best_state=best_state, best_score=best_score, best_epoch=best_epoch,
                     epochs_run=len(history), history=history)


def _check_settings(resume: Resume, saved: dict, current: dict) -> None:
    defaults = dataclasses.asdict(TrainSettings())
    for key in sorted(set(saved) | set(current)):
        if key in _NOT_CHECKED or (key not in saved and current.get(key) == defaults.get(key)):
            continue  # a speed switch, or a setting added since the state was saved, at its default
        if saved.get(key) != current.get(key):
            raise UserError(f"{resume.folder}: the saved training state has {key}={saved.get(key)!r}, this run has "
                            f"{key}={current.get(key)!r}; rerun with --restart to start over")


def _save_state(resume: Resume, epoch: int, step: int, stopped: bool, model: nn.Module, optimizer, scaler,
                ema: EMA | None, best_state: dict | None, best_score: float, best_epoch: int,
                history: list[dict], settings_values: dict) -> None:
    """Everything the next epoch depends on, after `epoch` completed epochs (train_state.py).
    Distributed: every rank's random states, written by rank 0 alone."""
    rng_tensors, rng_meta = train_state.rng_state()
    everyone = distributed.all_gather_object((rng_tensors, rng_meta)) if distributed.active() else []
    if not distributed.is_main():
        return
    rng_ranks = []
    for r, (other_tensors, other_meta) in enumerate(everyone[1:], 1):
        rng_tensors.update(train_state.prefixed(f"rank{r}", other_tensors))
        rng_ranks.append(other_meta)
    optim_tensors, optim_meta = train_state.optimizer_state(optimizer)
    tensors = {**train_state.prefixed("model", model.state_dict()), **optim_tensors, **rng_tensors}
    if ema is not None:
        tensors.update(train_state.prefixed("ema", ema.module.state_dict()))
    if best_state is not None:
        tensors.update(train_state.prefixed("best", best_state))
    meta = {"epoch": epoch, "step": step, "stopped": stopped, "best_score": best_score, "best_epoch": best_epoch,
            "history": history, "settings": settings_values, "optimizer": optim_meta, "scaler": scaler.state_dict(),
            "ema_updates": ema.updates if ema is not None else 0, "rng": rng_meta}
    if everyone:
        meta.update({"world_size": len(everyone), "rng_ranks": rng_ranks})
    train_state.save(resume, epoch, tensors, meta)
