"""Dogs vs. Cats recipes from raw JPEGs: wall time per stage, CV log loss and accuracy.

Each config runs the user's command, `python -m pipelines train dogs-vs-cats --config NAME
--data DIR`, in a fresh temporary PIPELINES_HOME, so the clock covers everything: scanning and
decoding the JPEGs into the image cache, the frozen-feature stage (INT8 calibration included),
the heads on 5 folds with their test predictions, and the run's files. The per-stage seconds
come from the run's run.json (`stages`); the load average (1/5/15 min) at each run's start and
end says how much else shared the CPU.

* `recipes`: the default config and the fast variant on the 20,000 shared photos and 1,000
  test photos (about 15 minutes on 2 idle cores).
* `recipe_strongest`: the strongest config, the same way (about half an hour).

--quick: 200 photos and 10 test photos, for tests of the harness only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .common import DOGS, ROOT, fmt, link_files, loadavg, shared_train_files, stratified, table, temp_home

DEFAULT, FAST, STRONGEST = "effnet-lite2-int8", "effnet-lite0-fast", "effnet-lite12-joined"
STAGES = (("prepare_s", "decode + cache"), ("quantize_s", "INT8 calibration"),
          ("features_train_s", "features (train)"), ("features_test_s", "features (test)"),
          ("folds_s", "5 folds of heads + test"))


def _source(home: Path, quick: bool) -> Path:
    if not quick:
        return DOGS
    src = home / "src"
    files = stratified(shared_train_files(), 200)
    originals = sorted((DOGS / "originals").glob("*.jpg"))
    names = {f.name for f in originals}
    copies = [f for f in shared_train_files() if f.name in names and f not in files][:20]  # the originals check
    # photos without a 200 px copy among the training photos train as they are (their own copies)
    taken = {f.name for f in files}
    files += copies or [f for f in originals if f.name not in taken][:20]
    link_files(files, src / "train")
    link_files(sorted((DOGS / "test1").glob("*.jpg"), key=lambda p: int(p.stem))[:10], src / "test1")
    return src


def measure(config: str, quick: bool, originals: bool = False) -> dict:
    """Train `config` from raw JPEGs in a fresh home: its run.json plus wall time and load averages;
    with originals, the originals check on its run (after the clock stops)."""
    with temp_home(f"bench-{config}-") as home:
        source = _source(home, quick)
        load0, started = loadavg(), time.perf_counter()
        command = [sys.executable, "-m", "pipelines", "train", "dogs-vs-cats", "--config", config,
                   "--data", str(source), "--name", "bench", "--quiet"]
        done = subprocess.run(command, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
        run_dir = home / "runs" / "dogs-vs-cats" / "bench"
        run = json.loads((run_dir / "run.json").read_text())
        load1 = loadavg()
        check = originals_check(run_dir, DOGS / "originals") if originals else None
    return {"config": config, "wall_s": wall, "load": (load0, load1), "run": run, "originals": check}


def section(title: str, results: list[dict], quick: bool) -> str:
    rows = []
    for r in results:
        stages = r["run"].get("stages", {})
        rows.append([f"`{r['config']}`", f"{r['run']['cv']:.5f}", f"{100 * r['run']['accuracy']:.2f}%",
                     *(fmt(stages[k]) if k in stages else "-" for k, _ in STAGES),
                     f"**{fmt(r['wall_s'])}**", f"{r['load'][0]} / {r['load'][1]}"])
    data = ("200 photos and 10 test photos (quick mode: not for quoting)" if quick else
            "the 20,000 shared training photos (5-fold CV, fold seed 42) and 1,000 test photos")
    return (f"## {title}\n\nFrom raw JPEGs in a fresh `PIPELINES_HOME` (`python -m pipelines train dogs-vs-cats "
            f"--config NAME --data DIR`) on {data}; seconds per stage from the run's run.json.\n\n"
            + table(["config", "CV log loss", "accuracy", *(name for _, name in STAGES), "wall (s)",
                     "load average start / end"], rows))


def run(quick: bool) -> str:
    default = measure(DEFAULT, quick, originals=True)
    text = section("Dogs vs. Cats recipes from raw JPEGs: the default and the fast variant",
                   [default, measure(FAST, quick)], quick)
    check = default["originals"]
    rows = [[name, f"{100 * check[key]['accuracy']:.2f}%", f"{check[key]['log_loss']:.4f}"]
            for name, key in (("full-size originals", "originals"), ("their 200 px copies", "copies_200px"))]
    return (text + f"\n**Full-size photos.** The default run's fold models on the {check['photos']} `originals` "
            f"(sides {check['sizes'][0]} to {check['sizes'][1]} px) that are training photos, each predicted by "
            "the fold model that did not train on its 200 px copy, decoded as `predict` decodes a test folder; "
            "beside them the same photos' out-of-fold scores on the 200 px copies:\n\n"
            + table(["photos", "accuracy", "log loss"], rows))


def run_strongest(quick: bool) -> str:
    return section("Dogs vs. Cats from raw JPEGs: the strongest config", [measure(STRONGEST, quick)], quick)


def originals_check(run_dir: Path, originals: Path) -> dict:
    """Out-of-fold P(dog) for the full-size originals (mixed sizes) of training photos: each photo is
    predicted by the fold model that did not train on its 200 px copy, decoded straight from the
    original JPEG to the config's size and through the run's networks (its INT8 file included) as
    `predict` does for a test folder. Beside it, the same
    photos' out-of-fold scores on the 200 px copies (oof.csv)."""
    import numpy as np
    import pandas as pd

    from pipelines import config as configs
    from pipelines.competitions.dogs_vs_cats import data, task
    from pipelines.metrics import log_loss

    oof = pd.read_csv(run_dir / "oof.csv").set_index("key")
    files = sorted(f for f in originals.glob("*.jpg") if f.name in oof.index)
    loaded = task._load_folds(run_dir)
    cfg = configs.build(task.DogsConfig, loaded[0][1]["config"], str(run_dir))
    images = np.stack([data.decode(f.read_bytes(), cfg.image_size) for f in files])
    fold_of = oof.loc[[f.name for f in files], "fold"].to_numpy()
    prob = np.full(len(files), np.nan)
    per_fold = task.fold_head_probabilities(run_dir, cfg, loaded, images, "originals")
    for (_, meta), fold_prob in zip(loaded, per_fold):
        rows = fold_of == meta["fold"]
        prob[rows] = fold_prob[rows]
    labels = oof.loc[[f.name for f in files], "label"].to_numpy()
    copies = oof.loc[[f.name for f in files], "oof_p_dog"].to_numpy()
    sizes = [data.Image.open(f).size for f in files]

    def score(p):
        return {"log_loss": log_loss(labels, task.clipped(p, cfg.clip)), "accuracy": float(((p > 0.5) == labels).mean())}

    return {"photos": len(files), "sizes": (min(min(s) for s in sizes), max(max(s) for s in sizes)),
            "originals": score(prob), "copies_200px": score(copies)}
