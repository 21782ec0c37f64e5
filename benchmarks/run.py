"""make bench: measured figures, written to benchmarks/RESULTS.md.

Each benchmark is a function returning Markdown; run one alone with
`python -m benchmarks.run house_prices`.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    import numpy
    import pandas
    import sklearn
    import torch

    return (f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n"
            f"- torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {numpy.__version__}, "
            f"pandas {pandas.__version__}, scikit-learn {sklearn.__version__}\n")


def house_prices() -> str:
    """Ours vs the d2l recipe, both 5-fold on Kaggle's train.csv: CV and wall time."""
    from pipelines.competitions.house_prices import task

    data = SHARED / "house-prices"
    lines = ["## House Prices: ours vs the d2l recipe (5-fold CV on Kaggle's train.csv, 1,460 rows scored)\n",
             "| config | CV log-RMSE | fold mean +- std | wall s (train + predict test) |",
             "| --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as home:
        os.environ["PIPELINES_HOME"] = home
        os.environ["PIPELINES_QUIET"] = "1"
        for name in ("d2l-linear", "mlp"):
            cfg = task.load_config(name)
            started = time.perf_counter()
            out = task.train(cfg, data, f"bench-{name}", "cpu")
            wall = time.perf_counter() - started
            cv = out["result"].cv
            lines.append(f"| {name} | {cv['rmse_log']:.5f} | {cv['rmse_log_fold_mean']:.5f} +- "
                         f"{cv['rmse_log_fold_std']:.5f} | {wall:.1f} |")
    return "\n".join(lines) + "\n"


BENCHMARKS = {"house_prices": house_prices}


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHMARKS)
    sections = [f"# Benchmarks\n\nWritten by `make bench` on {time.strftime('%Y-%m-%d %H:%M')}.\n\n{machine()}"]
    for name in chosen:
        if name not in BENCHMARKS:
            print(f"error: unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        print(f"running {name} ...", flush=True)
        section = BENCHMARKS[name]()
        print(section)
        sections.append(section)
    RESULTS.write_text("\n".join(sections))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
