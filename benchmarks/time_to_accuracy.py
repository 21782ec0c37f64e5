"""Time to accuracy for Dogs vs. Cats: wall time from raw JPEGs to fold 0's validation accuracy
of 97% (the pretrained recipe, config effnet-lite0-mlp) and 85% (the best from-scratch CNN,
config cnn-small), and test-prediction images/second with flip TTA.

Each recipe runs `task.train` for fold 0 in a fresh temporary PIPELINES_HOME, so the clock
covers scanning and decoding the JPEGs into the cache, the frozen-feature stage (pretrained)
and training.  `training.fit` is wrapped to timestamp every epoch; the from-scratch run is
stopped at the end of the first epoch that reaches the threshold (its config would go on to 30
epochs).  The pretrained recipe runs on a stratified subset of the shared training images so
that the benchmark stays short (the feature extraction at 288 px is the slow part).
"""

from __future__ import annotations

import contextlib
import time

import torch

from . import datapath, flops
from .common import DOGS, link_files, shared_train_files, stratified, table, temp_home

PRETRAINED, SCRATCH = "effnet-lite0-mlp", "cnn-small"
SCRATCH_CAP_S = 900  # stop the from-scratch run here if the threshold is still out of reach


class Reached(Exception):
    """The threshold was reached: stop training here."""


@contextlib.contextmanager
def timed_fit(task_module, threshold: float, stop: bool, cap_s: float | None = None):
    """Patch task_module.fit: every epoch's record gets a timestamp in `log`; with stop, the
    first epoch with valid_accuracy >= threshold raises Reached, and so does the first epoch
    that ends cap_s seconds after the patch (a bound on the benchmark's time when other jobs
    slow it down).  Yields (log, models)."""
    log: list[tuple[float, dict]] = []
    nets: list = []
    real = task_module.fit
    started = time.perf_counter()

    def fit(model, *args, **kwargs):
        nets.append(model)
        theirs = kwargs.get("on_epoch")

        def on_epoch(record):
            log.append((time.perf_counter(), dict(record)))
            if theirs is not None:
                theirs(record)
            if stop and (record.get("valid_accuracy", 0.0) >= threshold
                         or (cap_s is not None and time.perf_counter() - started > cap_s)):
                raise Reached()

        kwargs["on_epoch"] = on_epoch
        return real(model, *args, **kwargs)

    task_module.fit = fit
    try:
        yield log, nets
    finally:
        task_module.fit = real


def _first(log, started: float, threshold: float):
    for stamp, record in log:
        if record.get("valid_accuracy", 0.0) >= threshold:
            return stamp - started, record
    return None, None


def _best_threads(arch: str, size: int, width: int, batch: int = 64, steps: int = 3) -> dict[int, float]:
    """Training images/s of the model on random tensors with 1 and 2 torch threads."""
    from pipelines.images import networks as models

    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        model = models.build(arch, size, width=width)
        opt = torch.optim.AdamW(model.parameters())
        x, y = torch.randn(batch, 3, size, size), torch.randint(0, 2, (batch,))
        for i in range(steps + 1):
            if i == 1:
                t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        out[threads] = steps * batch / (time.perf_counter() - t0)
    return out


def pretrained(quick: bool) -> tuple[list, str]:
    from pipelines.competitions.dogs_vs_cats import task

    cfg = task.load_config(PRETRAINED)
    n = 100 if quick else 2_000
    n_test = 16 if quick else 200
    threshold = 0.97
    with temp_home("bench-tta-") as home:
        src = home / "src"
        link_files(stratified(shared_train_files(), n), src / "train")
        tests = link_files(sorted((DOGS / "test1").glob("*.jpg"), key=lambda p: int(p.stem))[:n_test],
                           home / "test1")
        started = time.perf_counter()
        with timed_fit(task, threshold, stop=False) as (log, _):
            out = task.train(cfg, src, "tta-pretrained", "cpu", only_folds=[0])
        done = time.perf_counter() - started
        reached, record = _first(log, started, threshold)
        manifest = task.data.load_cache(task.cache_root(cfg.image_size) / "train").manifest
        fold = out["result"].fold_scores[0]
        t0 = time.perf_counter()
        task.predict_folder(out["run_dir"], tests, "cpu")
        predict_s = time.perf_counter() - t0
        stage_s = float(out["row"].get("feature_stage_s", 0.0))
        from pipelines.images import backbones

        backbone = backbones.make_backbone(cfg.arch, cfg.pretrained)
        fwd = flops.forward_flops(backbone, cfg.image_size)
    peak = flops.matmul_peak(torch.get_num_threads(), seconds=0.3 if quick else 1.0)
    views = 2 if cfg.tta_flip else 1
    mfu = fwd * views * n / max(stage_s, 1e-9) / peak
    row = [f"`{PRETRAINED}` (frozen EfficientNet-Lite0 features by ONNX Runtime + MLP head), {cfg.image_size} px",
           f"stratified subset of {n:,} shared images; fold 0 trains on {n * 4 // 5:,}, validates {n // 5:,}",
           f"{threshold:.0%}",
           f"**{reached:.0f} s** (epoch {record['epoch']}, {record['valid_accuracy']:.2%})" if reached is not None
           else f"not reached (best {max((r.get('valid_accuracy', 0) for _, r in log), default=0):.2%})",
           f"{fold['accuracy']:.2%} after {len(log)} epochs, {done:.0f} s",
           f"{n_test / predict_s:.1f} ({n_test} images, {predict_s:.0f} s)"]
    note = (f"Pretrained: decoding {n:,} JPEGs into the {cfg.image_size} px cache took {manifest['seconds']:.1f} s, the "
            f"feature stage (ONNX export, then {views} views of every image) {stage_s:.0f} s = "
            f"{n * views / max(stage_s, 1e-9):.1f} forward passes/s, {fwd / 1e9:.2f} GFLOP each: "
            f"{100 * mfu:.1f}% of the {peak / 1e9:.0f} GFLOP/s fp32 matmul peak at {torch.get_num_threads()} threads "
            "(ONNX Runtime uses as many); the head's epochs take about a second each. Test prediction: "
            "`predict_folder` from the fold checkpoint on a folder of JPEGs (decode, ONNX export, features with flip "
            "TTA, head).")
    return row, note


def scratch(quick: bool) -> tuple[list, str]:
    from pipelines.competitions.dogs_vs_cats import task
    from pipelines.images import networks as models

    threshold = 0.0 if quick else 0.85
    overrides = {"epochs": 2} if quick else None
    cfg = task.load_config(SCRATCH, overrides)
    saved = torch.get_num_threads()
    probe = _best_threads(cfg.arch, cfg.image_size, cfg.width)
    threads = datapath.THREADS
    torch.set_num_threads(threads)
    try:
        with temp_home("bench-tta-") as home:
            if quick:
                data = home / "src"
                link_files(stratified(shared_train_files(), 200), data / "train")
                link_files(sorted((DOGS / "test1").glob("*.jpg"))[:16], data / "test1")
            else:
                data = DOGS
            n = len(list((data / "train").glob("*.jpg")))
            started = time.perf_counter()
            with timed_fit(task, threshold, stop=True, cap_s=SCRATCH_CAP_S) as (log, nets):
                try:
                    task.train(cfg, data, "tta-scratch", "cpu", only_folds=[0])
                except Reached:
                    pass
            reached, record = _first(log, started, threshold)
            manifest = task.data.load_cache(task.cache_root(cfg.image_size) / "train").manifest
            model = nets[-1]
            norm = models.normalization(model, cfg.arch)
            t0 = time.perf_counter()
            _, images = task.read_test_folder(data / "test1", cfg.image_size)
            task.predict_images(model, images, norm, torch.device("cpu"), cfg.eval_batch_size, tta_flip=True)
            predict_s = time.perf_counter() - t0
            n_test = len(images)
    finally:
        torch.set_num_threads(saved)
    epoch_s = [r["seconds"] for _, r in log]
    row = [f"`{SCRATCH}` (compact ResNet from scratch), {cfg.image_size} px",
           f"{n:,} shared images; fold 0 trains on {n * 4 // 5:,}, validates {n // 5:,}",
           f"{threshold:.0%}",
           f"**{reached:.0f} s** (epoch {record['epoch']}, {record['valid_accuracy']:.2%})" if reached is not None
           else f"not reached in {len(log)} epochs ({SCRATCH_CAP_S} s cap; best "
                f"{max((r.get('valid_accuracy', 0) for _, r in log), default=0):.2%})",
           f"stopped there (the config runs up to {cfg.epochs} epochs)",
           f"{n_test / predict_s:,.0f} ({n_test:,} images, {predict_s:.1f} s)"]
    note = (f"From scratch: decoding {n:,} JPEGs into the {cfg.image_size} px cache took {manifest['seconds']:.1f} s; "
            f"an epoch (train + validation) took {min(epoch_s):.1f}-{max(epoch_s):.1f} s with {threads} torch "
            f"thread, as in the data-path benchmark (training images/s on random tensors at the start, 1 / 2 threads: "
            f"{probe[1]:.0f} / {probe[2]:.0f}). Test prediction: decoding the test JPEGs and P(dog) with flip TTA "
            "from the model.")
    return row, note


def run(quick: bool = False) -> str:
    rows, notes = [], []
    for part in (pretrained, scratch):
        row, note = part(quick)
        rows.append(row)
        notes.append(note)
    return ("## Time to accuracy (Dogs vs. Cats, fold 0 of the 5-fold split), and test prediction with flip TTA\n\n"
            "Wall time from the raw JPEGs (empty cache) to the end of the first epoch whose validation accuracy "
            "reaches the threshold, on the CPU.\n\n"
            + table(["recipe", "data", "threshold", "time to threshold", "fold 0 at the end",
                     "test prediction images/s (flip TTA)"], rows)
            + "\n" + "\n\n".join(notes) + "\n")

