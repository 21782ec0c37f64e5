"""House Prices: ours vs the d2l recipe, both 5-fold on Kaggle's train.csv: CV log-RMSE and
wall time side by side."""

from __future__ import annotations

import time

from .common import HOUSE, table, temp_home


THREADS = 1  # networks this small gain nothing from a second thread; under other jobs' load it costs a lot


def run(quick: bool = False) -> str:
    import torch

    from pipelines.competitions.house_prices import task

    overrides = {"folds": 2, "epochs": 3} if quick else None
    rows = []
    saved = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        with temp_home("bench-house-"):
            for name in ("d2l-linear", "mlp"):
                cfg = task.load_config(name, overrides)
                started, cpu0 = time.perf_counter(), time.process_time()
                out = task.train(cfg, HOUSE, f"bench-{name}", "cpu")
                wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
                cv = out["result"].cv
                rows.append([f"`{name}`" + (" (the d2l recipe)" if name == "d2l-linear" else " (ours, the default)"),
                             f"{cv['rmse_log']:.5f}",
                             f"{cv['rmse_log_fold_mean']:.5f} +- {cv['rmse_log_fold_std']:.5f}",
                             f"{wall:.1f}", f"{cpu:.1f}"])
    finally:
        torch.set_num_threads(saved)
    folds = "2-fold, 3 epochs (quick)" if quick else "5-fold"
    return (f"## House Prices: ours vs the d2l recipe ({folds} CV on Kaggle's train.csv, all 1,460 rows scored)\n\n"
            + table(["config", "CV log-RMSE", "fold mean +- std", "wall s (train + predict test)", "CPU s"], rows)
            + f"\nWall time: `task.train` on the CPU with {THREADS} torch thread, data loading, every fold, "
              "out-of-fold and test predictions and the run record included; CPU seconds of the process beside it "
              "(the wall time grows with other jobs' load, the CPU time much less).\n")
